"""The integration's health in plain words, for the operator."""

from __future__ import annotations

from typing import Any

from integrations.health import INVALID_AFTER
from integrations.models import AuditEvent, Integration, IntegrationState

from .formats import local_minute


def describe_health(integration: Integration) -> dict[str, str]:
    """{"level": ok|warning|error|off, "text": "..."} — what is wrong, in one sentence."""
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
    if integration.last_auth_check_at:
        return {
            "level": "ok",
            "text": f"Healthy — last authentication check OK at {local_minute(integration.last_auth_check_at)}.",
        }
    return {"level": "ok", "text": "Not checked yet."}


# --- The audit trail ---------------------------------------------------------------------------

LINK_TYPES = {"EMBEDDED": "an embedded", "MAGIC_LINK": "a magic"}
STATE_LABELS = dict(IntegrationState.choices)


def describe_event(event: AuditEvent) -> str:
    """One line of an integration's audit trail in plain words (the actor is shown beside it)."""
    d: dict[str, Any] = event.details or {}
    link = LINK_TYPES.get(d.get("link_type", ""), "a")
    match event.action:
        case "integration.state_changed":
            before = STATE_LABELS.get(d.get("from"), d.get("from") or "?")
            after = STATE_LABELS.get(d.get("to"), d.get("to") or "?")
            change = f"{before} → {after}"
            return f"State {change}" + (f" ({d['reason']})" if d.get("reason") else "")
        case "integration.enabled":
            return "Enabled the integration"
        case "integration.disabled":
            return "Disabled the integration"
        case "sync.forced":
            return "Forced a sync" + (" (full)" if d.get("type") == "FULL" else "")
        case "auth_check.requested":
            return "Asked for an authentication check"
        case "link.created":
            return f"Created {link} reconnection link" + (" to a new scope config" if d.get("scope_config_id") else "")
        case "link.opened":
            return f"Opened {link} reconnection link"
        case "link.completed":
            return "Completed the reconnection with new credentials"
        case "link.revoked":
            return f"Revoked {link} reconnection link"
        case "link.expired":
            return f"{link.capitalize()} reconnection link expired unused"
        case "link.attempt_failed":
            missing = d.get("missing_permissions") or []
            return (
                "Reconnection attempt rejected: "
                + (d.get("error_code") or "error")
                + (f" (missing: {', '.join(missing)})" if missing else "")
            )
    return event.action
