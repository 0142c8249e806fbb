"""The operator pages the domain links to: an integration's (a `sync-finished` webhook's `log_url`)
and a request log's (a `connection-flow-failed` webhook's `log_url`).

The domain does not know the dashboard's URLs: the app that serves the pages registers a function
for each at start-up (`DashboardConfig.ready`), so imports keep pointing one way. Without one,
links fall back to the deployment's BASE_URL.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from .models import Integration

IntegrationPage = Callable[[Integration], str]  # the page's path, e.g. "/env/acme/integrations/…/"
RequestLogPage = Callable[[str, str], str]  # (environment slug, log id) -> "/env/acme/logs/<id>/"
_integration_page: IntegrationPage | None = None
_request_log_page: RequestLogPage | None = None


def register_integration_page(page: IntegrationPage) -> None:
    global _integration_page
    _integration_page = page


def register_request_log_page(page: RequestLogPage) -> None:
    global _request_log_page
    _request_log_page = page


def integration_url(integration: Integration) -> str:
    """The absolute URL of the operator's page for `integration`."""
    path = _integration_page(integration) if _integration_page else "/"
    return f"{settings.BASE_URL}{path}"


def request_log_url(environment_slug: str, log_id: str) -> str:
    """The absolute URL of the operator's page for the request log `log_id` (which need not be
    written yet: a caller may name the row before it writes it)."""
    path = _request_log_page(environment_slug, log_id) if _request_log_page else "/"
    return f"{settings.BASE_URL}{path}"
