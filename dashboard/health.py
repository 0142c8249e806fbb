"""The integration's health in plain words, for the operator."""

from __future__ import annotations

from django.utils import timezone

from integrations.health import INVALID_AFTER
from integrations.models import Integration, IntegrationState

FMT = "%-d %b %H:%M"


def _when(value) -> str:
    return timezone.localtime(value).strftime(FMT)


def describe_health(integration: Integration) -> dict[str, str]:
    """{"level": ok|warning|error|off, "text": "..."} — what is wrong, in one sentence."""
    error = f" — last error: {integration.last_auth_error}" if integration.last_auth_error else ""
    if integration.state == IntegrationState.INACTIVE:
        return {"level": "off", "text": "Disabled — no checks or syncs run until it is enabled again."}
    if integration.state == IntegrationState.INVALID:
        return {
            "level": "error",
            "text": f"Authentication failing since {_when(integration.auth_failing_since)} — syncs paused since "
            f"{_when(integration.invalid_since)}{error}",
        }
    if integration.auth_failing_since:
        pause_at = integration.auth_failing_since + INVALID_AFTER
        return {
            "level": "warning",
            "text": f"Authentication failing since {_when(integration.auth_failing_since)} — syncs pause at "
            f"{_when(pause_at)} unless a check succeeds{error}",
        }
    if integration.last_auth_check_at:
        return {"level": "ok", "text": f"Healthy — last authentication check OK at {_when(integration.last_auth_check_at)}."}
    return {"level": "ok", "text": "Not checked yet."}
