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


def not_found(request, exception=None):
    """404 for a URL no pattern matches: JSON under an API prefix (what the OpenAPI schema documents),
    the HTML page elsewhere."""
    if request.path.startswith("/api/") or "/api/" in request.path:
        from django.http import JsonResponse

        return JsonResponse({"detail": "Not found."}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)
