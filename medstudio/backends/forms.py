from django import forms

from .models import ModelBackend


class BackendForm(forms.ModelForm):
    class Meta:
        model = ModelBackend
        fields = ["name", "base_url", "model", "api_key_env", "timeout", "max_retries", "is_default", "enabled", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 2})}

    def clean_timeout(self):
        t = self.cleaned_data["timeout"]
        if not 1 <= t <= 3600:
            raise forms.ValidationError("Between 1 and 3600 seconds.")
        return t
