from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    label = "training"
    verbose_name = "Training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Job handlers register themselves on import; they import no heavy library at module level.
        from importlib import import_module
        from importlib.util import find_spec

        if find_spec(f"{self.name}.handlers"):
            import_module(f"{self.name}.handlers")
        from . import lineage  # noqa: F401  (model and run nodes in lineage graphs)
        from . import board  # noqa: F401  (pipeline board steps)
        # A run shows its Job's status (medstudio/jobs/mirrors.py).
        from medstudio.jobs.mirrors import register_status_mirror

        from .models import RunStatus, TrainingRun

        finished = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
        register_status_mirror(TrainingRun, words={s: s for s in finished}, terminal=finished)
