"""The request-level input guard: a 400 for characters no page can use, before any view runs.

PostgreSQL cannot store or even compare text holding NUL (U+0000), and no UTF-8 encoder accepts an
unpaired surrogate (U+D800–U+DFFF): a query, a lookup or a log row with one fails deep inside a view
with a 500. `InputGuardMiddleware` answers such requests 400 first, from the URL path, the query
string (names and values) and urlencoded/multipart form fields (names, values, file names), before
the session, the authentication or any view touches the database:

- under /v1/, in the API's error envelope (the shape and code of api.errors.input_invalid, which
  config may not import; tests/test_fuzz_inputs.py checks they stay the same);
- everywhere else (dashboard, admin, hosted connect pages) as an HTML page: templates/400.html if
  the project has one, else a short plain page. Never a stack trace.

Django's request logger prints the path of every 4xx response; these responses are marked as
logged so it does not print a path that holds the very characters that were refused. JSON bodies
are the API's to check (api.framework): it answers in its envelope and writes the request log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.template import TemplateDoesNotExist, loader

from .text import has_unusable

log = logging.getLogger(__name__)

API_PREFIX = "/v1/"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# As api.errors.input_invalid(...).envelope(None) builds it.
API_CODE = "PLATFORM.INPUT_INVALID"
API_TITLE = "The request's input is invalid."
PLAIN_PAGE = (
    "<!doctype html>\n"
    '<html lang="en"><head><meta charset="utf-8"><title>Bad request</title></head>\n'
    "<body><h1>Bad request (400)</h1><p>The request contains characters that are not allowed.</p></body></html>\n"
)


def _any_unusable(items: Iterable[tuple[str, list]]) -> bool:
    """Whether a name or one of its values (of a QueryDict's or MultiValueDict's `lists()`) holds one."""
    for name, values in items:
        if has_unusable(name):
            return True
        for value in values:
            text = value if isinstance(value, str) else getattr(value, "name", "") or ""  # an uploaded file
            if has_unusable(text):
                return True
    return False


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX) or request.path_info == API_PREFIX.rstrip("/")


def unusable_part(request: HttpRequest) -> str | None:
    """Which part of the request holds NUL or an unpaired surrogate ("URL path", …), else None."""
    if has_unusable(request.path) or has_unusable(request.path_info):
        return "URL path"
    try:
        if _any_unusable(request.GET.lists()):
            return "query string"
    except TooManyFieldsSent:
        pass  # Django answers 400 when the view reads request.GET
    if request.method != "POST" or request.content_type not in FORM_TYPES:
        return None  # Django parses no other body into request.POST
    try:
        if is_api(request):
            request.body  # noqa: B018  (read first, so the API can still read the raw body after the form)
        if _any_unusable(request.POST.lists()) or _any_unusable(request.FILES.lists()):
            return "form data"
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent, OSError):
        pass  # too large or unreadable: left to the view and Django's own 400, as without this guard
    except MultiPartParserError:
        return "form data"  # a multipart body that cannot be parsed has no usable form values either
    return None


def _api_response(part: str) -> HttpResponse:
    message = (
        f"The {part} contains a NUL character (U+0000) or an unpaired surrogate (U+D800 to U+DFFF); "
        "remove it and send the request again."
    )
    body = {"status": "error", "error": {"code": API_CODE, "title": API_TITLE, "message": message, "log_url": None}}
    response = JsonResponse(body, status=400)
    response["Cache-Control"] = "no-store"
    return response


def _page_response() -> HttpResponse:
    try:
        content = loader.get_template("400.html").render()  # no request: no context processor queries
    except TemplateDoesNotExist:
        content = PLAIN_PAGE
    except Exception:  # a broken template must not turn the 400 into a 500
        log.exception("could not render 400.html; answered with the plain page")
        content = PLAIN_PAGE
    response = HttpResponse(content, status=400, content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def rejection(request: HttpRequest, part: str) -> HttpResponse:
    response = _api_response(part) if is_api(request) else _page_response()
    # Keep Django's request logger from printing the path ("Bad Request: /…") of this response.
    response._has_been_logged = True  # type: ignore[attr-defined]
    log.warning("Bad request: NUL or an unpaired surrogate in the %s, answered 400", part)
    return response


class InputGuardMiddleware:
    """400 for a request whose path, query string or form fields hold NUL or an unpaired surrogate."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        part = unusable_part(request)
        if part is not None:
            return rejection(request, part)
        return self.get_response(request)
