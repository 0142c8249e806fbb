"""The headers every connect-flow response carries, and the decorator that applies them.

`Referrer-Policy: no-referrer` and `Cache-Control: no-store` on every page (the URL holds the link
token); a strict CSP whose `frame-ancestors` lets only the environment's allowed origins frame an
EMBEDDED page, and `X-Frame-Options: DENY` on everything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from .models import ConnectionLink, LinkType

# Everything the pages load comes from this origin; no inline script or style, so a strict policy
# costs nothing. No form-action: the OAuth "Continue" POST redirects to the provider's origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors {ancestors}"
)
_HOST_RE = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def allowed_frame_origins(raw: Any) -> list[str]:
    """The well-formed http(s) origins of an environment's `allowed_origins`.

    Anything else is dropped: a stored value with a space or `;` must not add a CSP directive.
    """
    origins: list[str] = []
    for value in raw if isinstance(raw, list) else []:
        if not isinstance(value, str):
            continue
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or parts.path.strip("/") or parts.query or parts.fragment:
            continue
        if not _HOST_RE.fullmatch(parts.netloc):
            continue
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if origin not in origins:
            origins.append(origin)
    return origins


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
    """

    def decorator(view: Callable[..., ViewResult]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return protect(HttpResponseNotAllowed(methods), None)
            response, link = view(request, *args, **kwargs)
            return protect(response, link)

        return csrf_exempt(xframe_options_exempt(wrapper))

    return decorator
