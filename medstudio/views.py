from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect


def home(request):
    """Send each role to where its day starts."""
    if not request.user.is_authenticated:
        return redirect_to_login("/")
    if request.user.role == "clinician":
        try:
            from django.urls import reverse

            return redirect(reverse("annotation:home"))
        except Exception:  # the annotation app may have no home page yet
            return redirect("datasets:list")
    return redirect("datasets:list")
