from django.apps import AppConfig


class BackendsConfig(AppConfig):
    name = "medstudio.backends"
    label = "backends"
    verbose_name = "Model backends"
    default_auto_field = "django.db.models.BigAutoField"
