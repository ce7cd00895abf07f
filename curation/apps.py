from django.apps import AppConfig


class CurationConfig(AppConfig):
    name = "curation"
    label = "curation"
    verbose_name = "Curation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Job handlers register themselves on import; they import no heavy library at module level.
        from importlib import import_module
        from importlib.util import find_spec

        if find_spec(f"{self.name}.handlers"):
            import_module(f"{self.name}.handlers")
        import_module(f"{self.name}.corpus.handlers")
        import_module(f"{self.name}.corpus.sources")  # the training data source `corpus_selection`
