"""The pipeline board page (admins and curators; clinicians are sent to their queues)."""
from __future__ import annotations

from django.shortcuts import redirect, render

from medstudio.accounts.permissions import Role, role_required

from . import board
from .models import Recipe


@role_required(Role.CLINICIAN)
def pipeline_board(request):
    if not request.user.has_role(Role.CURATOR):
        return redirect("annotation:home")
    recipes = list(Recipe.objects.order_by("name"))
    raw = request.GET.get("recipe", "")
    recipe = next((r for r in recipes if str(r.pk) == raw), None)
    rows = board.board(recipe_id=recipe.pk if recipe else None)
    template = "pipeline/board.html#board" if request.htmx else "pipeline/board.html"
    return render(request, template, {"rows": rows, "recipes": recipes, "recipe": recipe})
