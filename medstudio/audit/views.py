from django.core.paginator import Paginator
from django.shortcuts import render

from medstudio.accounts.permissions import Role, role_required

from .models import AuditEvent


@role_required(Role.ADMIN)
def audit_list(request):
    events = AuditEvent.objects.select_related("actor")
    if action := request.GET.get("action"):
        events = events.filter(action__startswith=action)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(request, "audit/list.html", {"page": page, "action": action or ""})
