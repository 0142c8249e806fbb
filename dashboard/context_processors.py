from django.conf import settings

from .access import user_memberships
from .htmx import DashboardRequest

# Which item of the main navigation a page belongs to (by URL name), to mark it as the current one.
NAV_SECTIONS = {
    "overview": "overview",
    "integrations": "integrations",
    "integration": "integrations",
    "integration_syncs": "integrations",
    "relink": "integrations",
    "delete": "integrations",
    "scope_configs": "scope_configs",
    "scope_config": "scope_configs",
    "scope_config_new": "scope_configs",
    "webhooks": "webhooks",
    "webhook": "webhooks",
    "webhook_new": "webhooks",
    "webhook_delete": "webhooks",
    "logs": "logs",
    "log": "logs",
    "api_keys": "api_keys",
    "members": "members",
    "environment_settings": "settings",
    "connect": "integrations",
    "reconnect": "integrations",
    "relink_bulk": "integrations",
}


def nav_section(request: DashboardRequest) -> dict:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return {}
    if match.app_name == "sandbox":
        return {"nav_section": "sandbox"}
    return {"nav_section": NAV_SECTIONS.get(match.url_name or "", "")} if match.app_name == "dashboard" else {}


def environments(request: DashboardRequest) -> dict:
    """The signed-in operator's environments, for the switcher in the navigation."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # A callable: evaluated only if a template renders the switcher (htmx fragments do not).
    return {"my_memberships": lambda: user_memberships(request), "sandbox_enabled": settings.SANDBOX_ENABLED}
