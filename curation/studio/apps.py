from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "curation.studio"
    label = "studio"
    verbose_name = "Threshold studio"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Job handlers register themselves on import; they import no heavy library at module level.
        from importlib import import_module
        from importlib.util import find_spec

        if find_spec(f"{self.name}.handlers"):
            import_module(f"{self.name}.handlers")
        # A selection export shows its Job's status (medstudio/jobs/mirrors.py).
        from medstudio.jobs.mirrors import register_status_mirror

        from .models import SelectionExport

        register_status_mirror(SelectionExport, words={"failed": "failed", "cancelled": "cancelled"},
                               terminal=("succeeded", "failed", "cancelled"))
