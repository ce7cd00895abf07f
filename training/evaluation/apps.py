from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "training.evaluation"
    label = "evaluation"
    verbose_name = "Evaluation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Job handlers register themselves on import; they import no heavy library at module level.
        from importlib import import_module
        from importlib.util import find_spec

        if find_spec(f"{self.name}.handlers"):
            import_module(f"{self.name}.handlers")
        # A run shows its Job's status (medstudio/jobs/mirrors.py).
        from medstudio.jobs.mirrors import register_status_mirror

        from .models import EvalRun, EvalStatus

        finished = (EvalStatus.SUCCEEDED, EvalStatus.FAILED, EvalStatus.CANCELLED)
        register_status_mirror(EvalRun, words={s: s for s in finished}, terminal=finished)
