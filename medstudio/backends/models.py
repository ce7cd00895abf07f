from django.conf import settings
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

ENV_NAME = RegexValidator(r"^[A-Z_][A-Z0-9_]*$", _("An environment variable name: capitals, digits and _."))


def validate_endpoint(value: str) -> None:
    # Not Django's URLValidator: it refuses single-label hosts (http://gpu1:8000/v1), which is
    # exactly how in-cluster inference servers are usually named.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(_("An http(s) URL with a host, e.g. http://gpu1:8000/v1."))
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValidationError(_("The port is not a number.")) from None


class ModelBackend(models.Model):
    """An OpenAI-compatible chat endpoint, registered by an admin and chosen by name in forms.

    The API key is never stored: `api_key_env` names the environment variable that holds it on the
    workers (and on the web process, for the connection check).
    """

    name = models.CharField(max_length=80, unique=True, help_text="What curators pick in forms, e.g. qwen72b-vllm.")
    base_url = models.CharField("base URL", max_length=500, validators=[validate_endpoint], help_text="OpenAI-compatible base URL, e.g. http://gpu1:8000/v1.")
    model = models.CharField(max_length=200, help_text="Model name the server expects, e.g. Qwen/Qwen2.5-72B-Instruct.")
    api_key_env = models.CharField("API key variable", max_length=100, blank=True, validators=[ENV_NAME],
                                   help_text="Environment variable holding the key; empty = MEDSTUDIO_CHAT_API_KEY.")
    timeout = models.FloatField(default=60.0, help_text="Seconds per request before a retry.")
    max_retries = models.PositiveSmallIntegerField(default=3, help_text="Retries on 429 / 5xx / timeouts.")
    concurrency = models.PositiveSmallIntegerField(default=8, help_text="Requests in flight at once per job "
                                                   "(a vLLM server takes dozens; a rate-limited API fewer).")
    is_default = models.BooleanField("default", default=False, help_text="Used when a form names no backend.")
    enabled = models.BooleanField(default=True, help_text="Disabled backends are not offered in forms.")
    notes = models.TextField(blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(null=True, blank=True)
    last_check_detail = models.TextField(blank=True)
    last_check_ms = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True),
                                               name="one_default_backend")]

    def __str__(self) -> str:
        return self.name
