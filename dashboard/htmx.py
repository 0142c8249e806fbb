"""htmx in the dashboard: the request type of its views (django-htmx's `request.htmx`, a signed-in
operator: every dashboard view is behind `login_required`), partial detection, rendering a page
or only its swapped region, and redirect-after-post for both kinds of request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from integrations.models import User


class DashboardRequest(HttpRequest):
    htmx: HtmxDetails
    user: User  # narrowed from AbstractBaseUser | AnonymousUser by login_required


def wants_partial(request: DashboardRequest) -> bool:
    """An htmx swap, not a history restore (Back after hx-push-url, which needs the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def render_region(
    request: DashboardRequest, template: str, region: str, ctx: dict, page_ctx: Callable[[], dict] | None = None
) -> HttpResponse:
    """Only the `region` partial of `template` for an htmx swap, else the whole page (rendered
    with `page_ctx()` when the page needs more than the region). The response varies on
    HX-Request so a cache never serves the fragment as the page."""
    if wants_partial(request):
        response = render(request, f"{template}#{region}", ctx)
    else:
        response = render(request, template, page_ctx() if page_ctx else ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


def redirect_after_post(request: DashboardRequest, url: str) -> HttpResponse:
    """After a POST: htmx follows HX-Redirect with a full page load, a plain form a 302."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
