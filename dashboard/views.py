from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers

from integrations.models import Integration, Membership

from .access import get_env_access

PAGE_SIZE = 50


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send the operator to their last-used environment, or their first one."""
    memberships = Membership.objects.filter(user=request.user).select_related("environment")
    last = request.session.get("environment_slug")
    slugs = [m.environment.slug for m in memberships]
    if last in slugs:
        return redirect("dashboard:integrations", env=last)
    if slugs:
        return redirect("dashboard:integrations", env=sorted(slugs)[0])
    return render(request, "dashboard/no_environment.html")


@login_required
def integrations(request: HttpRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env)
    request.session["environment_slug"] = access.environment.slug
    qs = (
        Integration.objects.filter(environment=access.environment)
        .select_related("scope_config")
        .defer("credentials_encrypted")
        .order_by("-created_at", "id")
    )
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    ctx = {"access": access, "env": access.environment, "page": page}
    # A history restore (back button after hx-push-url, cache miss) swaps the whole page.
    partial = request.htmx and not request.htmx.history_restore_request
    template = "dashboard/integrations.html#table" if partial else "dashboard/integrations.html"
    response = render(request, template, ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response
