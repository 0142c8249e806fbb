"""The operator pages the domain links to (a `sync-finished` webhook's `log_url`).

The domain does not know the dashboard's URLs: the app that serves the page registers a function
at start-up (`DashboardConfig.ready`), so imports keep pointing one way. Without one, links fall
back to the deployment's BASE_URL.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from .models import Integration

IntegrationPage = Callable[[Integration], str]  # the page's path, e.g. "/env/acme/integrations/…/"
_integration_page: IntegrationPage | None = None


def register_integration_page(page: IntegrationPage) -> None:
    global _integration_page
    _integration_page = page


def integration_url(integration: Integration) -> str:
    """The absolute URL of the operator's page for `integration`."""
    path = _integration_page(integration) if _integration_page else "/"
    return f"{settings.BASE_URL}{path}"
