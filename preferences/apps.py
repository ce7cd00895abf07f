from django.apps import AppConfig


class PreferencesConfig(AppConfig):
    name = "preferences"
    label = "preferences"
    verbose_name = "Preferences"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Job handlers register themselves on import; they import no heavy library at module level.
        from importlib import import_module
        from importlib.util import find_spec

        if find_spec(f"{self.name}.handlers"):
            import_module(f"{self.name}.handlers")
        from . import sources  # noqa: F401  (the preference_set training data source)
        from . import board  # noqa: F401  (pipeline board steps)
        # Builds, votes and diversify runs show their Job's status in their own words
        # (medstudio/jobs/mirrors.py): a cancelled job leaves them paused (resumable).
        from medstudio.jobs.mirrors import register_status_mirror

        from .models import BuildRun, DiversifyRun, RunStatus, VoteRun

        for model in (BuildRun, VoteRun, DiversifyRun):
            register_status_mirror(model, words={"failed": RunStatus.FAILED, "cancelled": RunStatus.PAUSED},
                                   terminal=(RunStatus.DONE, RunStatus.FAILED, RunStatus.PAUSED))
