from django.apps import AppConfig


class ModelscorersConfig(AppConfig):
    name = "curation.modelscorers"
    label = "modelscorers"
    verbose_name = "Model scorers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Job handlers register themselves on import; they import no heavy library at module level.
        from importlib import import_module
        from importlib.util import find_spec

        if find_spec(f"{self.name}.handlers"):
            import_module(f"{self.name}.handlers")
        from . import lineage  # noqa: F401  (rater nodes in model lineage)
        # A trained model shows its Job's status in its own words (medstudio/jobs/mirrors.py).
        from medstudio.jobs.mirrors import register_status_mirror

        from .models import TrainedModel

        register_status_mirror(TrainedModel, words={"failed": "failed", "cancelled": "cancelled"},
                               terminal=("ready", "failed", "cancelled"), live={"queued": "queued", "running": "training"})
