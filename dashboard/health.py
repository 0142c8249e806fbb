"""The integration's health in plain words, for the operator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from integrations.health import HealthPolicy
from integrations.models import AuditEvent, Integration, IntegrationState, ScopeConfig
from integrations.providers import REGISTRY
from integrations.scopes import default_scope_configs, effective_scope_config, reads_a_model
from integrations.sync_warnings import VolumeDrop

from .formats import local_minute


def syncs_nothing(integration: Integration, defaults: Mapping[str, ScopeConfig] | None = None) -> str:
    """Why a sync of `integration` reads no model ("" when it reads some): no scope config of its
    own and no default for its category, or an effective scope config that enables no model.
    `defaults` (`integrations.scopes.default_scope_configs`) spares a query per integration."""
    scope = effective_scope_config(integration, defaults)
    if scope is None:
        return f"Syncs nothing — no scope config and no default for {integration.category}"
    if not reads_a_model(scope):
        return f"Syncs nothing — scope config {scope.name} enables no model"
    return ""


def mark_syncs_nothing(integrations: Iterable[Integration], environment_id: int) -> None:
    """Sets `.syncs_nothing` (the reason, or "") on each integration of a list page, with one query
    for the environment's defaults whatever the number of rows (their own scope configs must be
    loaded with them: `select_related("scope_config")`)."""
    rows = list(integrations)
    defaults = default_scope_configs(environment_id) if any(not r.scope_config_id for r in rows) else {}
    for row in rows:
        row.syncs_nothing = syncs_nothing(row, defaults)  # type: ignore[attr-defined]  # for the template


def model_label(tool: str, model: str) -> str:
    """ "hris_employees" → "Employees" (the tool's label for it; the name itself if unknown)."""
    provider = REGISTRY.get(tool)
    data_model = provider.get_model(model) if provider else None
    return data_model.label if data_model else model


def describe_volume_drop(integration: Integration, drop: VolumeDrop) -> str:
    """ "Employees: 12 records in the last sync, usually 240 — a permission may have been removed
    upstream" """
    records = "record" if drop.current == 1 else "records"
    return (
        f"{model_label(integration.tool, drop.model)}: {drop.current} {records} in the last sync, usually "
        f"{drop.previous} — a permission may have been removed upstream"
    )


def describe_warning(integration: Integration, warning: str) -> str:
    """A stored sync warning for the sync history: a volume drop in words, any other as it is."""
    drop = VolumeDrop.parse(warning)
    return describe_volume_drop(integration, drop) if drop else str(warning)


def describe_health(
    integration: Integration,
    policy: HealthPolicy,
    syncs_nothing: str = "",
    volume_drops: Sequence[VolumeDrop] = (),
) -> dict[str, str]:
    """{"level": ok|warning|error|off, "text": "..."} — what is wrong, in one sentence.

    `policy` is the integration's environment's (`HealthPolicy.of`): when a failing streak pauses
    syncs. With `syncs_nothing` (the reason from `syncs_nothing()`), an integration that would read
    "Healthy" or "Not checked yet" is an error instead, with that reason and "kind": "syncs_nothing"
    (its authentication problems, if any, come first: they pause syncs anyway). With
    `volume_drops` (those of its latest sync that read everything, `latest_volume_drops`) it is a
    warning, "kind": "volume_drop", until a sync reads the usual counts again.
    """
    error = f" — last error: {integration.last_auth_error}" if integration.last_auth_error else ""
    if integration.state == IntegrationState.INACTIVE:
        return {"level": "off", "text": "Disabled — no checks or syncs run until it is enabled again."}
    if integration.state == IntegrationState.INVALID:
        return {
            "level": "error",
            "text": f"Authentication failing since {local_minute(integration.auth_failing_since)} — syncs paused since "
            f"{local_minute(integration.invalid_since)}{error}",
        }
    if integration.auth_failing_since:
        pause_at = policy.pauses_at(integration.auth_failing_since)
        return {
            "level": "warning",
            "text": f"Authentication failing since {local_minute(integration.auth_failing_since)} — syncs pause at "
            f"{local_minute(pause_at)} unless a check succeeds{error}",
        }
    if syncs_nothing:
        return {"level": "error", "text": syncs_nothing, "kind": "syncs_nothing"}
    if volume_drops:
        text = ". ".join(describe_volume_drop(integration, drop) for drop in volume_drops) + "."
        return {"level": "warning", "text": text, "kind": "volume_drop"}
    if integration.last_auth_check_at:
        return {
            "level": "ok",
            "text": f"Healthy — last authentication check OK at {local_minute(integration.last_auth_check_at)}.",
        }
    return {"level": "ok", "text": "Not checked yet."}


# --- The audit trail ---------------------------------------------------------------------------

LINK_TYPES = {"EMBEDDED": "an embedded", "MAGIC_LINK": "a magic"}
STATE_LABELS = dict(IntegrationState.choices)
OUTCOME_WORDS = {
    "OK": "authentication check OK",
    "AUTH_FAILED": "authentication failed",
    "UNAVAILABLE": "provider unavailable",
}


def _reason(reason: str) -> str:
    """ "auth check AUTH_FAILED" → "authentication failed"; other reasons are words already."""
    if reason.startswith("auth check "):
        code = reason.removeprefix("auth check ")
        return OUTCOME_WORDS.get(code, reason)
    return reason


def _code_words(code: str) -> str:
    """ "MISSING_PERMISSIONS" → "missing permissions" (the code itself stays in the logs)."""
    return code.replace("_", " ").lower()


def _account_words(account_id: Any, label: Any) -> str:
    """An upstream account as people read it: "Initech HR (sbxco_4)", or its id alone."""
    if not account_id:
        return ""
    return f"{label} ({account_id})" if label and label != account_id else str(account_id)


def describe_event(event: AuditEvent) -> str:
    """One line of an integration's audit trail in plain words (the actor is shown beside it)."""
    d: dict[str, Any] = event.details or {}
    link = LINK_TYPES.get(d.get("link_type", ""), "a")
    connection = "connection" if d.get("kind") == "CONNECT" else "reconnection"
    match event.action:
        case "integration.state_changed":
            before = STATE_LABELS.get(d.get("from"), d.get("from") or "?")
            after = STATE_LABELS.get(d.get("to"), d.get("to") or "?")
            change = f"{before} → {after}"
            return f"State {change}" + (f" ({_reason(d['reason'])})" if d.get("reason") else "")
        case "integration.enabled":
            return "Enabled the integration"
        case "integration.disabled":
            return "Disabled the integration"
        case "sync.forced":
            return "Forced a sync" + (" (full)" if d.get("type") == "FULL" else "")
        case "auth_check.requested":
            return "Asked for an authentication check"
        case "link.created":
            return (
                f"Created {link} {connection} link"
                + (" to a new scope config" if d.get("scope_config_id") else "")
                + (", allowing a different company account" if d.get("allow_account_change") else "")
            )
        case "link.opened":
            return f"Opened {link} {connection} link"
        case "link.completed":
            if connection == "connection":
                return "Connected for the first time"
            return "Completed the reconnection with new credentials"
        case "link.revoked":
            return f"Revoked {link} {connection} link"
        case "link.expired":
            return f"{link.capitalize()} {connection} link expired unused"
        case "link.attempt_failed":
            missing = d.get("missing_permissions") or []
            reached = _account_words(d.get("account"), d.get("account_label"))
            return (
                f"{connection.capitalize()} attempt rejected: "
                + _code_words(d.get("error_code") or "error")
                + (f" (missing: {', '.join(missing)})" if missing else "")
                + (f" (the credentials reach {reached})" if reached else "")
            )
        case "integration.account_changed":
            before = _account_words(d.get("from"), d.get("from_label"))
            return f"Company account changed: {before} → {_account_words(d.get('to'), d.get('to_label'))}"
        case "integration.grant_revoked":
            return f"Revoked the OAuth grant {d.get('reason') or 'no longer used'}"
        case "integration.grant_forgotten":
            return f"Forgot the OAuth grant {d.get('reason') or 'no longer used'} (the tool could not revoke it)"
    return event.action
