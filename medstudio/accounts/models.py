from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    CLINICIAN = "clinician", _("Clinician")
    CURATOR = "curator", _("Curator")
    ADMIN = "admin", _("Admin")


# Roles are ranked: a curator may do what a clinician may, an admin what a curator may.
ROLE_RANK = {Role.CLINICIAN: 1, Role.CURATOR: 2, Role.ADMIN: 3}


class User(AbstractUser):
    role = models.CharField(
        max_length=16, choices=Role.choices, default=Role.CLINICIAN,
        help_text="clinician: labels; curator: curates data; admin: people, models, training.",
    )

    def has_role(self, role: str) -> bool:
        """True when the user's role ranks at least as high as `role`."""
        if not self.is_active:
            return False
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[Role(role)]
