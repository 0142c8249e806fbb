"""The one wrapper every /v1 endpoint goes through.

Per request: bearer-key authentication (scoped to the key's environment), the per-key rate limit
and, for requests without a valid key, the per-address one; method dispatch, the JSON body (no
string in it may hold NUL or an unpaired surrogate, which PostgreSQL cannot store), the error
envelope, `Cache-Control: no-store`, and one RequestLog row with redacted bodies — whatever the
outcome and whatever the body, including unknown paths and unexpected errors.
Handlers take an `ApiContext` and return the `data` of a success answer (or an HttpResponse).

Round trips of a read such as `GET /v1/integrations/{id}`: one query for the key, its environment
and the integration the request names (api/lookup.py; the URL's `integration_id` or the
`X-Integration-Id` header), one Redis call for the rate limit (api/ratelimit.py), one INSERT of
the request log in autocommit (integrations/requestlogs.py). tests/test_api_round_trips.py
counts them. A key's `last_used_at` costs one UPDATE more at most once a minute.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from config.text import has_unusable, replace_unusable
from integrations import requestlogs
from integrations.lib.redaction import REDACTED
from integrations.lib.tokens import random_id
from integrations.models import ApiKey, Environment, Integration, RequestLog

from . import errors, lookup, ratelimit
from .errors import ApiError
from .validation import Body

log = logging.getLogger("api")

LAST_USED_PRECISION = timedelta(minutes=1)  # last_used_at is written at most once a minute per key
MAX_LOGGED_BODY = 64 * 1024  # bodies above this size are not stored in the request log

Handler = Callable[..., Any]


class ApiContext:
    """What a handler needs: the request, the authenticated key and environment, the body."""

    def __init__(self, request: HttpRequest, log_id: str):
        self.request = request
        self.log_id = log_id
        self.api_key: ApiKey | None = None
        self.raw_key = ""
        self.integration_id = ""  # for the request log, when the request names one
        self.path_secrets: list[str] = []  # URL segments masked in the logged path (tokens)
        # Further raw secrets a handler came across (an integration's credentials), masked
        # wherever they appear in the request log, like the API key.
        self.secrets: list[str] = []
        # What the request log keeps instead of a successful answer's body (records' personal data
        # is not copied into the log); None keeps the body.
        self.logged_answer: Any = None
        # The integration the request names, loaded with its key: {id: the integration or None}.
        self.prefetched: dict[str, Integration | None] = {}
        self._body: Body | None = None
        self._decoded: Decoded | None = None

    @property
    def environment(self) -> Environment:
        assert self.api_key is not None
        return self.api_key.environment

    def body(self) -> Body:
        """The JSON object sent; an empty body counts as `{}`."""
        if self._body is None:
            self._body = Body(parse_json_object(self))
        return self._body

    def decoded(self) -> Decoded:
        """The body decoded as JSON, once per request: shared by the body check, `body()` and
        the request log."""
        if self._decoded is None:
            self._decoded = decode_json(self.request)
        return self._decoded

    def get_integration(self, integration_id: str) -> Integration:
        """The integration if it belongs to the key's environment; any other id is a 404."""
        self.integration_id = integration_id[:80]
        integration = None
        if integration_id in self.prefetched:
            integration = self.prefetched[integration_id]
        elif lookup.usable_integration_id(integration_id):
            integration = (
                Integration.objects.select_related("scope_config")
                .defer("credentials_encrypted")
                .filter(environment=self.environment, pk=integration_id)
                .first()
            )
        if integration is None:
            raise errors.no_such_integration(integration_id)
        integration.environment = self.environment
        return integration


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes | str) -> Any:
    """Strict JSON: NaN and Infinity, which Python would accept, are invalid."""
    return json.loads(raw, parse_constant=_reject_constant)


def _shown(name: str) -> str:
    """A JSON key as a message may show it: unusable characters replaced, at most 80 characters."""
    return replace_unusable(name)[:80]


def unusable_string_at(data: Any) -> str | None:
    """Where the first string of decoded JSON holding NUL or an unpaired surrogate is (`name`,
    `a.b`, `list[2]`, `(body)`), or None: level by level, each in document order, a key before its
    value. Iterative, so any depth is fine."""
    if isinstance(data, str):
        return "(body)" if has_unusable(data) else None
    if not isinstance(data, (dict, list)):
        return None
    queue: deque[tuple[Any, str]] = deque([(data, "(body)")])
    while queue:
        container, where = queue.popleft()
        if isinstance(container, dict):
            items = (
                (key, item, _shown(str(key)) if where == "(body)" else f"{where}.{_shown(str(key))}")
                for key, item in container.items()
            )
        else:
            items = (("", item, f"{where}[{index}]") for index, item in enumerate(container))
        for key, item, name in items:
            if has_unusable(str(key)) or (isinstance(item, str) and has_unusable(item)):
                return name
            if isinstance(item, (dict, list)):
                queue.append((item, name))
    return None


def reject_unusable_strings(data: Any) -> None:
    where = unusable_string_at(data)
    if where is not None:
        raise errors.unusable_characters(where)


EMPTY = object()  # an empty (or whitespace) body: no JSON at all
Decoded = tuple[Any, ApiError | None]  # (the value, or EMPTY; or None and why it is no JSON)


def decode_json(request: HttpRequest) -> Decoded:
    try:
        raw = request.body
    except RequestDataTooBig:
        return None, errors.input_invalid("The request body is too large.")
    except RawPostDataException:  # read as a form already: it was no JSON body
        return None, errors.input_invalid("The request body must be a JSON object.")
    if not raw.strip():
        return EMPTY, None
    try:
        return loads(raw), None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return None, errors.input_invalid(f"The request body is not valid JSON: {_shown(str(exc))}.")


def check_body_strings(ctx: ApiContext) -> None:
    """400 if the body is JSON with a string PostgreSQL cannot store, whatever the endpoint does
    with it (even one that reads no body). Other bodies are left to `ApiContext.body`."""
    data, error = ctx.decoded()
    if error is None and data is not EMPTY:
        reject_unusable_strings(data)


def parse_json_object(ctx: ApiContext) -> dict[str, Any]:
    data, error = ctx.decoded()
    if error is not None:
        raise error
    if data is EMPTY:
        return {}
    if not isinstance(data, dict):
        raise errors.input_invalid("The request body must be a JSON object.")
    reject_unusable_strings(data)
    return data


def success(data: Any) -> JsonResponse:
    return JsonResponse({"status": "success", "data": data})


def api_view(
    handlers: dict[str, Handler] | None = None,
    *,
    auth: bool = True,
    fallback: Handler | None = None,
    secret_kwargs: tuple[str, ...] = (),
) -> Callable[..., HttpResponse]:
    """A Django view for one path: `handlers` maps HTTP methods to handlers.

    `fallback` answers every method (used by the catch-all for unknown paths). The values of the
    URL kwargs named in `secret_kwargs` (e.g. a token) are masked in the logged path. The
    integration a request names (URL kwarg `integration_id`, else header `X-Integration-Id`) is
    loaded with its key, in the same query.
    """
    handlers = dict(handlers or {})

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        path_secrets = [str(kwargs[name]) for name in secret_kwargs if kwargs.get(name)]
        return dispatch(request, handlers, kwargs, auth=auth, fallback=fallback, path_secrets=path_secrets)

    if handlers:
        first = next(iter(handlers.values()))
        view = wraps(first)(view)
    return view


def dispatch(
    request: HttpRequest,
    handlers: dict[str, Handler],
    kwargs: dict[str, Any],
    *,
    auth: bool,
    fallback: Handler | None,
    path_secrets: list[str] | None = None,
) -> HttpResponse:
    started = time.monotonic()
    ctx = ApiContext(request, random_id(24))
    ctx.path_secrets = list(path_secrets or [])
    error: ApiError | None = None
    try:
        if auth:
            api_key = authenticate_limited(ctx, named_integration(request, kwargs))
            retry_after = ratelimit.hit(api_key.key_hash[:32])
            if retry_after is not None:
                raise errors.rate_limited(ratelimit.limit_per_minute(), retry_after)
        else:
            limit_unauthenticated(request)
        handler = fallback or handlers.get(request.method or "")
        if handler is None:
            raise errors.method_not_allowed(request.method or "", list(handlers))
        check_body_strings(ctx)
        result = handler(ctx, **kwargs)
        response = result if isinstance(result, HttpResponse) else success(result)
    except ApiError as exc:
        error = exc
    except Exception:
        log.exception("unhandled error in %s %s (request log %s)", request.method, request.path, ctx.log_id)
        error = errors.unknown_error()
    if error is not None:
        response = JsonResponse(error.envelope(log_url(ctx)), status=error.status)
        for name, value in error.headers.items():
            response[name] = value
    response["Cache-Control"] = "no-store"
    write_request_log(ctx, response, error, int((time.monotonic() - started) * 1000))
    return response


def limit_unauthenticated(request: HttpRequest) -> None:
    """Count a request not authenticated by a valid key against its client address: 429 beyond
    API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE in the current minute."""
    limit = ratelimit.unauthenticated_limit_per_minute()
    # The client address as login throttling sees it (behind TRUSTED_PROXY_COUNT proxies too).
    retry_after = ratelimit.hit(ratelimit.address_bucket(get_client_ip_address(request) or ""), limit)
    if retry_after is not None:
        raise errors.rate_limited_unauthenticated(limit, retry_after)


def named_integration(request: HttpRequest, kwargs: dict[str, Any]) -> str:
    """The id of the integration a request is about, as its handler will ask for it ("" if none)."""
    if "integration_id" in kwargs:
        return str(kwargs["integration_id"])
    return request.headers.get("X-Integration-Id", "").strip()


def authenticate_limited(ctx: ApiContext, integration_id: str = "") -> ApiKey:
    """`authenticate`; a missing or invalid key also counts against the client address, and is a
    429 instead of a 401 once the address is over its limit."""
    try:
        return authenticate(ctx, integration_id)
    except ApiError:
        limit_unauthenticated(ctx.request)
        raise


def authenticate(ctx: ApiContext, integration_id: str = "") -> ApiKey:
    """The request's active key with its environment; with it, in the same query, the integration
    `integration_id` of that environment (for `ctx.get_integration`)."""
    header = ctx.request.headers.get("Authorization", "")
    scheme, _, raw = header.strip().partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise errors.authentication_invalid("Send your API key in the Authorization header: 'Bearer <key>'.")
    ctx.raw_key = raw
    key, integration = lookup.key_and_integration(raw, integration_id) if len(raw) <= 200 else (None, None)
    if key is None:
        raise errors.authentication_invalid("The API key is invalid or has been revoked.")
    ctx.api_key = key
    if integration_id:
        ctx.prefetched[integration_id] = integration
    touch_last_used(key)
    return key


def touch_last_used(key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


def log_url(ctx: ApiContext) -> str | None:
    if ctx.api_key is None:
        return None  # no environment: nobody could open the page
    path = reverse("dashboard:log", kwargs={"env": ctx.environment.slug, "log_id": ctx.log_id})
    return f"{settings.BASE_URL}{path}"


def _logged_request_body(ctx: ApiContext) -> Any:
    """The body as the request log keeps it. Strings holding NUL or surrogates are kept (the
    request log's writer replaces those characters with U+FFFD), and so is JSON in invalid UTF-8,
    decoded with U+FFFD for the bytes that are not; other bodies are described, not stored."""
    try:
        raw = ctx.request.body
    except RequestDataTooBig:
        return {"_note": "request body too large to log"}
    except RawPostDataException:
        return {"_note": "request body read as a form; not logged"}
    if not raw:
        return None
    if len(raw) > MAX_LOGGED_BODY:
        return {"_note": f"request body of {len(raw)} bytes not logged"}
    data, error = ctx.decoded()  # decoded once for the request, its check and its log
    if error is None:
        return None if data is EMPTY else data
    try:  # JSON in invalid UTF-8 is logged with U+FFFD for the bytes that are not
        return loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return {"_note": f"request body of {len(raw)} bytes is not valid JSON; not logged"}


def _logged_path(ctx: ApiContext) -> str:
    path = ctx.request.path
    for secret in ctx.path_secrets:  # the last occurrence is the URL segment itself
        head, found, tail = path.rpartition(secret)
        if found:
            path = f"{head}{REDACTED}{tail}"
    return path


def _logged_response_body(ctx: ApiContext, response: HttpResponse) -> Any:
    if not response.get("Content-Type", "").startswith("application/json"):
        return None
    if ctx.logged_answer is not None and response.status_code == 200:
        return ctx.logged_answer
    content = response.content
    if len(content) > MAX_LOGGED_BODY:
        return {"_note": f"response body of {len(content)} bytes not logged"}
    try:
        return json.loads(content)
    except ValueError:
        return None


def _guarded(describe: Callable[[ApiContext], Any], ctx: ApiContext) -> Any:
    """`describe(ctx)`, or a placeholder if describing the body failed: the row is written anyway."""
    try:
        return describe(ctx)
    except Exception:
        log.exception("could not read the request body for request log %s", ctx.log_id)
        return {"_note": "request body could not be read; not logged"}


def write_request_log(ctx: ApiContext, response: HttpResponse, error: ApiError | None, duration_ms: int) -> None:
    """One RequestLog row per request, through the request log's one writer (which redacts, and
    never lets a logging failure change the answer)."""
    requestlogs.write(
        RequestLog.Source.API,
        log_id=ctx.log_id,
        environment_id=ctx.api_key.environment_id if ctx.api_key else None,
        method=ctx.request.method or "",
        path=_logged_path(ctx),
        status_code=response.status_code,
        api_key=ctx.api_key,
        integration_id=ctx.integration_id,
        request_body=_guarded(_logged_request_body, ctx),
        response_body=_logged_response_body(ctx, response),
        error_code=(error.code or "") if error else "",
        duration_ms=duration_ms,
        secrets=[secret for secret in (ctx.raw_key, *ctx.secrets) if secret],
    )
