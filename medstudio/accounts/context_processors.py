from .models import Role


def role(request) -> dict:
    user = getattr(request, "user", None)
    ok = bool(user and user.is_authenticated)
    return {
        "is_clinician": ok and user.has_role(Role.CLINICIAN),
        "is_curator": ok and user.has_role(Role.CURATOR),
        "is_admin": ok and user.has_role(Role.ADMIN),
    }
