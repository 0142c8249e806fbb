from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render

from connect_flow.models import LinkType
from integrations.models import Integration, IntegrationState, Role

from .access import SESSION_KEY, get_env_access, remember_environment, user_memberships
from .health import mark_syncs_nothing
from .htmx import DashboardRequest
from .linkstate import link_states
from .listing import ListFilters, render_list, tool_options
from .paginator import CachedCountPaginator
from .signals import integration_count_namespace

PAGE_SIZE = 50


@login_required
def home(request: DashboardRequest) -> HttpResponse:
    """Send the operator to their last-used environment, or their first one."""
    last = request.session.get(SESSION_KEY)
    slugs = [m.environment.slug for m in user_memberships(request)]
    if last in slugs:
        return redirect("dashboard:overview", env=last)
    if slugs:
        return redirect("dashboard:overview", env=sorted(slugs)[0])
    return render(request, "dashboard/no_environment.html")


@login_required
def integrations(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env)
    remember_environment(request, access.environment)
    filters = ListFilters.from_query(request.GET)
    qs = filters.apply(
        Integration.objects.filter(environment=access.environment)
        .select_related("scope_config")
        .defer("credentials_encrypted")
    )
    namespace = integration_count_namespace(access.environment.pk)
    page = CachedCountPaginator(qs, PAGE_SIZE, namespace=namespace).get_page(request.GET.get("page"))
    page.object_list = rows = list(page.object_list)
    by_id = link_states(rows)
    for row in rows:
        row.link_state = by_id.get(row.pk)  # for the template
    mark_syncs_nothing(rows, access.environment.pk)  # one query for the defaults, not one per row
    can_edit = access.can(Role.EDITOR)
    ctx = {
        "access": access,
        "env": access.environment,
        "page": page,
        "filters": filters,
        "states": IntegrationState.choices,
        "tools": tool_options(),
        "columns": filters.sort_columns(),
        "can_edit": can_edit,
        "bulk": can_edit and any(row.state == IntegrationState.INVALID for row in rows),
        "link_types": LinkType.choices,
        "languages": settings.LANGUAGES,
    }
    return render_list(request, "dashboard/integrations.html", ctx)
