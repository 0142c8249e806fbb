"""The headers every connect-flow response carries, and the decorator that applies them.

`Referrer-Policy: no-referrer` and `Cache-Control: no-store` on every page (the URL holds the link
token); a strict CSP whose `frame-ancestors` lets only the environment's allowed origins frame an
EMBEDDED page, and `X-Frame-Options: DENY` on everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.gzip import gzip_page

from integrations.lib.origins import valid_origins

from .models import ConnectionLink, LinkType

# Everything the pages load comes from this origin; no inline script or style, so a strict policy
# costs nothing. No form-action: the OAuth "Continue" POST redirects to the provider's origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors {ancestors}"
)


def allowed_frame_origins(raw: Any) -> list[str]:
    """The well-formed http(s) origins of an environment's `allowed_origins` (`lib.origins`).

    Anything else is dropped: a stored value with a space or `;` must not add a CSP directive.
    """
    return valid_origins(raw)


def frame_origins(link: ConnectionLink | None) -> list[str]:
    if link is None or link.link_type != LinkType.EMBEDDED:
        return []
    return allowed_frame_origins(link.environment.allowed_origins)


def protect(response: HttpResponse, link: ConnectionLink | None) -> HttpResponse:
    """The headers every connect-flow response carries (see the module docstring above)."""
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    origins = frame_origins(link)
    if origins:
        ancestors = " ".join(origins)
    else:
        # The views are xframe_options_exempt so EMBEDDED pages can be framed; everything else
        # says DENY itself (the middleware leaves a response that already has the header alone).
        response["X-Frame-Options"] = "DENY"
        ancestors = "'none'"
    response["Content-Security-Policy"] = CSP.format(ancestors=ancestors)
    return response


ViewResult = tuple[HttpResponse, ConnectionLink | None]


def connect_view(methods: tuple[str, ...]) -> Callable:
    """Decorate a view returning (response, link): method check, no CSRF cookie, frame policy, headers.

    csrf_exempt: the cookie Django's CSRF check needs never reaches a cross-site iframe; the POST
    checks the signed form token instead (`signed.form_token_valid`).

    gzip_page: compressed for browsers that accept gzip (a page is ~3 KB, ~1.2 KB gzipped). Safe
    from BREACH (docs/PERFORMANCE.md, "Compression"): every response here that holds a secret (form
    token, activation token, signed OAuth state) answers a URL that holds the link token or a
    signed state, which an attacker would need to request it, and then they could read the page
    themselves; what answers without one (invalid, forbidden) holds no secret.
    """

    def decorator(view: Callable[..., ViewResult]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return protect(HttpResponseNotAllowed(methods), None)
            response, link = view(request, *args, **kwargs)
            return protect(response, link)

        return csrf_exempt(xframe_options_exempt(gzip_page(wrapper)))

    return decorator
