from django import forms
from django.utils.translation import gettext_lazy as _

from .models import ModelBackend, validate_endpoint


class BackendForm(forms.ModelForm):
    class Meta:
        model = ModelBackend
        fields = ["name", "base_url", "model", "api_key_env", "timeout", "max_retries", "concurrency", "is_default", "enabled",
                  "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 2})}
        # UI words in the reader's language (the model's own verbose names stay English: no migration).
        labels = {"name": _("Name"), "base_url": _("Base URL"), "model": _("Model"), "api_key_env": _("API key variable"),
                  "timeout": _("Timeout"), "max_retries": _("Max retries"), "concurrency": _("Concurrency"),
                  "is_default": _("Default"), "enabled": _("Enabled"), "notes": _("Notes")}
        help_texts = {
            "name": _("What curators pick in forms, e.g. qwen72b-vllm."),
            "base_url": _("OpenAI-compatible base URL, e.g. http://gpu1:8000/v1."),
            "model": _("Model name the server expects, e.g. Qwen/Qwen2.5-72B-Instruct."),
            "api_key_env": _("Environment variable holding the key; empty = MEDSTUDIO_CHAT_API_KEY."),
            "timeout": _("Seconds per request before a retry."),
            "max_retries": _("Retries on 429 / 5xx / timeouts."),
            "concurrency": _("Requests in flight at once per job (a vLLM server takes dozens; a rate-limited API fewer)."),
            "is_default": _("Used when a form names no backend."),
            "enabled": _("Disabled backends are not offered in forms."),
        }

    def _get_validation_exclusions(self):
        # The single-default constraint is kept by services.backend_save, which moves the mark
        # from the old default; checked here, choosing a new default would be refused.
        return super()._get_validation_exclusions() | {"is_default"}

    def clean_concurrency(self):
        c = self.cleaned_data["concurrency"]
        if not 1 <= c <= 256:
            raise forms.ValidationError(_("Between 1 and 256 requests at once."))
        return c

    def clean_timeout(self):
        t = self.cleaned_data["timeout"]
        if not 1 <= t <= 3600:
            raise forms.ValidationError(_("Between 1 and 3600 seconds."))
        return t


# Shared by every form that sends chat calls (preferences, evaluation): one wording, one rule.
BLANK = _("— none: use the URL below or the settings —")
INVALID = _("No enabled model backend named %(value)s: pick one from the list (an admin registers them under Backends).")


def backend_choice_field(*, label: str = _("Model backend"), help_text: str = "") -> forms.ChoiceField:
    """An optional registry backend; fill its choices per form instance with `fill_backend_choices`."""
    return forms.ChoiceField(required=False, label=label, help_text=help_text,
                             error_messages={"invalid_choice": INVALID})


def fill_backend_choices(form: forms.Form, *names: str) -> None:
    """Read at every form build, not at import, so a backend an admin just added is offered at once."""
    from .selectors import backend_choices

    choices = backend_choices(blank=BLANK)
    for name in names:
        form.fields[name].choices = choices


class EndpointField(forms.CharField):
    """An OpenAI-compatible base URL; unlike URLField it takes in-cluster hosts (http://gpu1:8000/v1)."""

    default_validators = [validate_endpoint]
