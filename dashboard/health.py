"""The integration's health in plain words, for the operator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from integrations.health import INVALID_AFTER
from integrations.models import AuditEvent, Integration, IntegrationState, ScopeConfig
from integrations.scopes import default_scope_configs, effective_scope_config, reads_a_model

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


def describe_health(integration: Integration, syncs_nothing: str = "") -> dict[str, str]:
    """{"level": ok|warning|error|off, "text": "..."} — what is wrong, in one sentence.

    With `syncs_nothing` (the reason from `syncs_nothing()`), an integration that would read
    "Healthy" or "Not checked yet" is an error instead, with that reason and "kind": "syncs_nothing"
    (its authentication problems, if any, come first: they pause syncs anyway).
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
        pause_at = integration.auth_failing_since + INVALID_AFTER
        return {
            "level": "warning",
            "text": f"Authentication failing since {local_minute(integration.auth_failing_since)} — syncs pause at "
            f"{local_minute(pause_at)} unless a check succeeds{error}",
        }
    if syncs_nothing:
        return {"level": "error", "text": syncs_nothing, "kind": "syncs_nothing"}
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
            return f"Created {link} {connection} link" + (" to a new scope config" if d.get("scope_config_id") else "")
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
            return (
                f"{connection.capitalize()} attempt rejected: "
                + _code_words(d.get("error_code") or "error")
                + (f" (missing: {', '.join(missing)})" if missing else "")
            )
    return event.action
