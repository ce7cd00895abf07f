from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Role, User


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150, label=_("Username"))
    email = forms.EmailField(required=False, label=_("Email"))
    role = forms.ChoiceField(choices=Role.choices, label=_("Role"))
    password = forms.CharField(required=False, widget=forms.PasswordInput, label=_("Password"),
                               help_text=_("Leave empty to generate one (shown once)."))

    def clean_username(self) -> str:
        name = self.cleaned_data["username"]
        if User.objects.filter(username=name).exists():
            raise forms.ValidationError(_("A user with this name exists."))
        return name


class UserUpdateForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, label=_("Role"))
    is_active = forms.BooleanField(required=False, label=_("Active"))
