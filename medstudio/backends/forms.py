from django import forms

from .models import ModelBackend


class BackendForm(forms.ModelForm):
    class Meta:
        model = ModelBackend
        fields = ["name", "base_url", "model", "api_key_env", "timeout", "max_retries", "is_default", "enabled", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 2})}

    def _get_validation_exclusions(self):
        # The single-default constraint is kept by services.backend_save, which moves the mark
        # from the old default; checked here, choosing a new default would be refused.
        return super()._get_validation_exclusions() | {"is_default"}

    def clean_timeout(self):
        t = self.cleaned_data["timeout"]
        if not 1 <= t <= 3600:
            raise forms.ValidationError("Between 1 and 3600 seconds.")
        return t
