"""The integration page: health in plain words, auth-check chart, syncs, scope coverage, audit
trail and the actions (force sync, check now, enable/disable, delete). The Relink section's views
are in relink.py and render into this page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from connect_flow import notifications
from integrations import audit, health
from integrations.health import HealthPolicy, request_auth_check
from integrations.models import OPEN_SYNC_STATUSES, AuditEvent, Integration, Role
from integrations.providers import REGISTRY
from integrations.scopes import ModelCoverage, ScopeSpec
from integrations.sync_warnings import latest_volume_drops
from integrations.syncs import NotSyncable, queue_sync

from .access import EnvAccess, get_env_access
from .charts import auth_check_chart
from .health import describe_event, describe_health, describe_warning, syncs_nothing
from .htmx import DashboardRequest, redirect_after_post
from .linkstate import is_broken, link_states

CHECKS_SHOWN = 30
AUDIT_SHOWN = 30


def integration_path(integration: Integration) -> str:
    """The page's path; registered with the domain for the links it sends (a webhook's `log_url`)."""
    return reverse(
        "dashboard:integration", kwargs={"env": integration.environment.slug, "integration_id": integration.pk}
    )


def get_integration(access: EnvAccess, integration_id: str) -> Integration:
    """The integration if it belongs to the operator's environment, else 404."""
    return access.get_or_404(
        Integration.objects.select_related("scope_config", "environment").defer("credentials_encrypted"),
        pk=integration_id,
    )


def _syncs_context(integration: Integration) -> dict:
    recent = list(integration.syncs.select_related("scope_config").order_by("-created_at")[:20])
    for sync in recent:
        sync.shown_warnings = [describe_warning(integration, w) for w in sync.warnings or []]  # type: ignore[attr-defined]
    return {"syncs": recent, "sync_open": any(s.status in OPEN_SYNC_STATUSES for s in recent)}


def scope_coverage(integration: Integration) -> list[ModelCoverage] | None:
    """What the integration's scope config makes a sync read from its tool, with the customer's
    opt-outs; None when the stored scope config cannot be read (the page still renders)."""
    provider = REGISTRY.get(integration.tool)
    if provider is None:
        return []
    try:
        spec = ScopeSpec.parse(integration.scope_config.spec if integration.scope_config else None)
    except ValueError:
        return None
    return spec.coverage(provider, integration.opted_out_fields or ())


def audit_trail(integration: Integration) -> list[dict]:
    events = (
        AuditEvent.objects.filter(integration_id=integration.pk)
        .select_related("actor_user", "actor_api_key")
        .order_by("-created_at", "-pk")[:AUDIT_SHOWN]
    )
    return [{"event": e, "text": describe_event(e)} for e in events]


CHECK_POLL_LIMIT = timedelta(seconds=60)  # a check not finished by then: stop polling, say nothing


def health_context(access: EnvAccess, obj: Integration, check_after: datetime | None = None) -> dict:
    """The status card: health in words (under the environment's health policy, with the volume
    drops of the latest sync that read everything), the repair block of a broken integration, and
    while an operator's check runs (`check_after` = when it was asked for) the polling that shows
    its result."""
    finished = bool(check_after and obj.last_auth_check_at and obj.last_auth_check_at >= check_after)
    pending = bool(check_after) and not finished and timezone.now() - check_after < CHECK_POLL_LIMIT  # type: ignore[operator]
    return {
        "access": access,
        "env": access.environment,
        "integration": obj,
        "health": describe_health(
            obj,
            HealthPolicy.of(obj.environment),
            syncs_nothing=syncs_nothing(obj),
            volume_drops=latest_volume_drops(obj),
        ),
        "can_edit": access.can(Role.EDITOR),
        "broken": is_broken(obj),
        "link_state": link_states([obj]).get(obj.pk),
        "check_pending": pending,
        "check_done": finished,
        "check_after": f"{check_after.timestamp():.6f}" if check_after else "",
    }


def integration_page_context(access: EnvAccess, obj: Integration, **extra) -> dict:
    """Everything the integration page renders; the Relink section views reuse it."""
    from .relink import RelinkSection

    return {
        **health_context(access, obj),
        "chart": auth_check_chart(obj.auth_checks.all(), timezone.localdate()),
        "checks": obj.auth_checks.order_by("-checked_at")[:CHECKS_SHOWN],
        "coverage": scope_coverage(obj),
        "audit": audit_trail(obj),
        "relink": RelinkSection(access.environment, obj, {}),
        "reconnect_requests": notifications.requests_for(obj),
        **_syncs_context(obj),
        **extra,
    }


@login_required
def integration(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    access = get_env_access(request, env)
    obj = get_integration(access, integration_id)
    return render(request, "dashboard/integration.html", integration_page_context(access, obj))


@login_required
def integration_syncs(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """The sync history fragment, polled by htmx while a sync is queued or running."""
    access = get_env_access(request, env)
    obj = get_integration(access, integration_id)
    ctx = {"env": access.environment, "integration": obj, **_syncs_context(obj)}
    # Once no sync is open the fragment comes without its hx-trigger, which ends the polling.
    return render(request, "dashboard/integration.html#syncs", ctx)


@login_required
@require_POST
def force_sync(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    access = get_env_access(request, env, Role.EDITOR)
    obj = get_integration(access, integration_id)
    try:
        sync, already = queue_sync(obj.pk, actor_user=request.user)
    except NotSyncable:
        messages.error(request, f"Cannot sync: the integration is {obj.get_state_display().lower()}.")
    else:
        if already:
            messages.info(request, f"A sync is already {sync.get_status_display().lower()}.")
        else:
            messages.success(request, "Sync queued.")
    return redirect("dashboard:integration", env=env, integration_id=obj.pk)


@login_required
@require_POST
def check_now(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    access = get_env_access(request, env, Role.EDITOR)
    obj = get_integration(access, integration_id)
    asked_at = timezone.now()
    request_auth_check(obj, actor_user=request.user)
    if request.htmx:  # the status card, polling until the check's result is in
        return render(request, "dashboard/integration.html#health", health_context(access, obj, asked_at))
    messages.success(request, "Authentication check started; refresh in a few seconds.")
    return redirect("dashboard:integration", env=env, integration_id=obj.pk)


@login_required
@require_GET
def integration_health(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """The status card, polled by htmx after "Check authentication now" (`?after=` when it was asked)."""
    access = get_env_access(request, env)
    obj = get_integration(access, integration_id)
    try:
        after = datetime.fromtimestamp(float(request.GET.get("after", "")), tz=UTC)
    except (ValueError, OverflowError, OSError):
        after = None
    response = render(request, "dashboard/integration.html#health", health_context(access, obj, after))
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def set_enabled(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """Enable or disable (editor+). Credentials are kept; a disabled integration runs nothing."""
    access = get_env_access(request, env, Role.EDITOR)
    obj = get_integration(access, integration_id)
    enable = request.POST.get("enabled") == "true"
    updated = health.set_enabled(obj.pk, enable, actor_user=request.user)
    messages.success(
        request, f"Integration {'enabled' if enable else 'disabled'}: it is now {updated.get_state_display().lower()}."
    )
    # hx-post (for the Disable button's hx-confirm): a full page load, so the message shows.
    return redirect_after_post(request, integration_path(obj))


@login_required
@require_POST
def reconnect_requests(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """Turn the integration's reconnect requests off or on again (editor+), audited."""
    access = get_env_access(request, env, Role.EDITOR)
    obj = get_integration(access, integration_id)
    off = request.POST.get("off") == "1"
    if notifications.set_requests_off(obj, off, audit.Actor(user=request.user)):
        messages.success(request, f"Reconnect requests turned {'off' if off else 'on'} for this integration.")
    return redirect_after_post(request, integration_path(obj) + "#reconnect-requests")


@login_required
def delete(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """GET asks for confirmation; POST deletes (editor+), with the `integration-deleted` webhook."""
    access = get_env_access(request, env, Role.EDITOR)
    obj = get_integration(access, integration_id)
    if request.method == "POST":
        health.delete_integration(obj, actor_user=request.user)
        messages.success(request, f"Integration for {obj.end_user_organization_name} deleted.")
        return redirect("dashboard:integrations", env=env)
    return render(
        request, "dashboard/integration_delete.html", {"access": access, "env": access.environment, "integration": obj}
    )
