"""`{% state_badge integration.state %}`: the one rendering of an integration's state.

INVALID carries the broken-chain icon (templates/icons/broken_chain.html, read once per process)
so it reads at a glance in any list; an unknown or empty state shows as "?".
"""

from __future__ import annotations

from functools import cache

from django import template
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from integrations.models import DeliveryStatus, IntegrationState

register = template.Library()


@cache
def _broken_chain_icon() -> str:
    return mark_safe(render_to_string("icons/broken_chain.html").strip())  # our own static SVG


@cache  # keyed by the three states only: unknown values are not cached
def _badge(state: str) -> str:
    label = IntegrationState(state).label
    if state == IntegrationState.INVALID:
        return format_html('<span class="badge state-invalid">{} {}</span>', _broken_chain_icon(), label)
    return format_html('<span class="badge state-{}">{}</span>', state.lower(), label)


@register.simple_tag
def state_badge(state: str | None) -> str:
    if state not in IntegrationState.values:
        return format_html('<span class="badge">{}</span>', state or "?")
    return _badge(state)


# Plain words for the codes the pages show (the codes themselves stay in logs and the API).
LABELS: dict[str, dict[str, str]] = {
    "availability": {"ENABLED": "Enabled", "OPTIONAL": "Optional", "DISABLED": "Disabled"},
    "link": {
        "NONE": "No link",
        "PENDING": "Sent, not opened",
        "OPENED": "Opened",
        "COMPLETED": "Completed",
        "EXPIRED": "Expired",
        "REVOKED": "Revoked",
    },
    "outcome": {"OK": "OK", "AUTH_FAILED": "Authentication failed", "UNAVAILABLE": "Provider unavailable"},
    "delivery": dict(DeliveryStatus.choices),  # webhook deliveries: Pending, Delivered, Failed
}


@register.filter
def label(code: str | None, kind: str) -> str:
    """`{{ link.status|label:"link" }}` → "Sent, not opened"; an unknown code shows as it is."""
    return LABELS.get(kind, {}).get(str(code or ""), str(code or ""))
