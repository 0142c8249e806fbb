from django.conf import settings

from .access import user_memberships
from .htmx import DashboardRequest


def environments(request: DashboardRequest) -> dict:
    """The signed-in operator's environments, for the switcher in the navigation."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # A callable: evaluated only if a template renders the switcher (htmx fragments do not).
    return {"my_memberships": lambda: user_memberships(request), "sandbox_enabled": settings.SANDBOX_ENABLED}
