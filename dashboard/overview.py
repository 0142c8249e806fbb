"""The environment overview: counts by state, what needs attention, recent state changes, and a
chart of authentication-check outcomes per day.

Every panel is one query, whatever the number of integrations or checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.decorators import login_required
from django.db.models import Count, JSONField, OuterRef, Q, Subquery
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone

from integrations.health import HealthPolicy
from integrations.models import (
    AuditEvent,
    AuthCheck,
    Environment,
    Integration,
    IntegrationState,
    Role,
    Sync,
    SyncStatus,
)
from integrations.scopes import reads_nothing_filter
from integrations.sync_warnings import VolumeDrop

from .access import get_env_access, remember_environment
from .charts import auth_check_chart
from .formats import local_minute
from .health import describe_warning, mark_syncs_nothing
from .htmx import DashboardRequest
from .linkstate import link_states

ATTENTION_LIMIT = 100
RECENT_CHANGES = 10


@login_required
def overview(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env)
    remember_environment(request, access.environment)
    now = timezone.now()
    attention = needs_attention(access.environment, now)
    by_id = link_states([row.integration for row in attention], now)
    for row in attention:
        row.integration.link_state = by_id.get(row.integration.pk)  # type: ignore[attr-defined]
    ctx = {
        "access": access,
        "env": access.environment,
        "can_edit": access.can(Role.EDITOR),
        "counts": state_counts(access.environment),
        "attention": attention,
        "syncs_nothing": syncs_nothing_panel(access.environment),
        "changes": recent_state_changes(access.environment),
        "chart": auth_check_chart(
            AuthCheck.objects.filter(integration__environment=access.environment), timezone.localdate(now)
        ),
    }
    return render(request, "dashboard/overview.html", ctx)


# --- Counts ---------------------------------------------------------------------------------------


def state_counts(environment: Environment) -> list[dict]:
    """[{"state": "ACTIVE", "label": "Active", "count": 3}, ...] for every state, zeros included."""
    rows = (
        Integration.objects.filter(environment=environment)
        .order_by()
        .values("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    found = dict(rows)
    return [{"state": s.value, "label": s.label, "count": found.get(s.value, 0)} for s in IntegrationState]


# --- Needs attention ------------------------------------------------------------------------------


@dataclass
class AttentionRow:
    integration: Integration
    reasons: list[dict] = field(default_factory=list)  # {"level": error|warning, "text": "..."}
    rank: tuple = ()


def _hours(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() // 3600))


def pause_text(failing_since: datetime, now: datetime, policy: HealthPolicy) -> str:
    """When the environment's auth-failure window pauses syncs, relative to `now`."""
    left = policy.pauses_at(failing_since) - now
    if left <= timedelta(0):
        return "syncs pause at the next failed check"
    hours = _hours(left)
    if hours == 0:
        return "syncs pause in less than an hour"
    return f"syncs pause in {hours} hour{'s' if hours != 1 else ''}"


def needs_attention(environment: Environment, now: datetime) -> list[AttentionRow]:
    """INVALID integrations, ACTIVE ones failing authentication now, and integrations (not disabled)
    whose latest sync partially failed (a volume drop among its warnings is named first, in words)
    — in one query, most urgent first."""
    policy = HealthPolicy.of(environment)
    latest = Sync.objects.filter(integration=OuterRef("pk")).order_by("-created_at", "-pk")
    qs = (
        Integration.objects.filter(environment=environment)
        .defer("credentials_encrypted", "opted_out_fields")
        .annotate(
            latest_sync_status=Subquery(latest.values("status")[:1]),
            latest_sync_warnings=Subquery(latest.values("warnings")[:1], output_field=JSONField()),
        )
        .filter(
            Q(state=IntegrationState.INVALID)
            | Q(state=IntegrationState.ACTIVE, auth_failing_since__isnull=False)
            | (~Q(state=IntegrationState.INACTIVE) & Q(latest_sync_status=SyncStatus.PARTIALLY_FAILED))
        )
        .order_by("invalid_since", "auth_failing_since", "id")[:ATTENTION_LIMIT]
    )
    rows = []
    for obj in qs:
        row = AttentionRow(obj)
        if obj.state == IntegrationState.INVALID:
            since = local_minute(obj.invalid_since) if obj.invalid_since else "—"
            row.reasons.append({"level": "error", "text": f"Invalid — syncs paused since {since}"})
            row.rank = (0, obj.invalid_since or now)
        elif obj.state == IntegrationState.ACTIVE and obj.auth_failing_since:
            since = local_minute(obj.auth_failing_since)
            row.reasons.append(
                {
                    "level": "warning",
                    "text": f"Authentication failing since {since} — {pause_text(obj.auth_failing_since, now, policy)}",
                }
            )
            row.rank = (1, obj.auth_failing_since)
        else:
            row.rank = (2, obj.created_at)
        if obj.latest_sync_status == SyncStatus.PARTIALLY_FAILED:
            warnings = obj.latest_sync_warnings or []
            n = len(warnings) if isinstance(warnings, list) else 1
            text = f"Latest sync partially failed with {n} warning{'s' if n != 1 else ''}"
            if isinstance(warnings, list) and warnings:
                # a volume drop first: the sync looks fine otherwise
                first = next((w for w in warnings if VolumeDrop.parse(w)), warnings[0])
                text += f": {describe_warning(obj, first)}"
            row.reasons.append({"level": "warning", "text": text})
        rows.append(row)
    rows.sort(key=lambda r: r.rank)
    return rows


# --- Syncs nothing ------------------------------------------------------------------------------

SYNCS_NOTHING_SHOWN = 20


@dataclass
class SyncsNothingPanel:
    count: int
    integrations: list[Integration]  # the first SYNCS_NOTHING_SHOWN, each with `.syncs_nothing`


def syncs_nothing_panel(environment: Environment) -> SyncsNothingPanel:
    """Enabled integrations whose syncs read no model (no scope config and no default for their
    category, or one that enables nothing): how many, and the first few with the reason.
    A few queries whatever the number of integrations."""
    qs = (
        Integration.objects.filter(environment=environment)
        .exclude(state=IntegrationState.INACTIVE)
        .filter(reads_nothing_filter(environment.pk))
    )
    rows = list(
        qs.select_related("scope_config")
        .defer("credentials_encrypted", "opted_out_fields")
        .order_by("end_user_organization_name", "id")[: SYNCS_NOTHING_SHOWN + 1]
    )
    count = len(rows) if len(rows) <= SYNCS_NOTHING_SHOWN else qs.count()
    rows = rows[:SYNCS_NOTHING_SHOWN]
    mark_syncs_nothing(rows, environment.pk)
    return SyncsNothingPanel(count, rows)


# --- Recent state changes ----------------------------------------------------------------------


def recent_state_changes(environment: Environment) -> list[dict]:
    events = list(
        AuditEvent.objects.filter(environment=environment, action="integration.state_changed")
        .select_related("actor_user", "actor_api_key")
        .order_by("-created_at", "-pk")[:RECENT_CHANGES]
    )
    ids = {e.integration_id for e in events if e.integration_id}
    names = (
        dict(
            Integration.objects.filter(environment=environment, pk__in=ids).values_list(
                "pk", "end_user_organization_name"
            )
        )
        if ids
        else {}
    )
    return [
        {
            "event": e,
            "from": (e.details or {}).get("from", ""),
            "to": (e.details or {}).get("to", ""),
            "reason": (e.details or {}).get("reason", ""),
            "organization": names.get(e.integration_id),
        }
        for e in events
    ]
