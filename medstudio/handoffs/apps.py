from django.apps import AppConfig


class HandoffsConfig(AppConfig):
    """What the pipeline stages hand each other: scorer runs and scores, recipes, selections,
    mixtures and preference sets; plus the registries that consume them (training data sources,
    lineage). Stages read and write these through this app's services and selectors and never
    import each other."""

    name = "medstudio.handoffs"
    label = "handoffs"
    verbose_name = "Hand-offs between stages"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the platform's own data sources and lineage resolvers (datasets, selections,
        # mixtures; recipe versions, scorer runs, queues). Stages register theirs in their ready().
        from . import board, lineage, sources  # noqa: F401
