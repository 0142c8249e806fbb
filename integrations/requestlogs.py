"""The request log's one writer: every RequestLog row (a /v1 request, a connect-flow attempt) is
written here, with one redaction and one failure policy.

Redaction: bodies go through `lib.redaction.redact` (secret-named keys replaced, the given raw
secrets masked wherever they appear, and what PostgreSQL cannot store made storable: NUL and
unpaired surrogates become U+FFFD, Infinity and NaN strings), paths and short fields through
`mask`/`clean`.

Failure: every request gets its row. A body that cannot be made storable, or a row whose insert
fails, is written again with placeholder bodies; only if that fails too is the row logged and
dropped. Each insert runs in a savepoint, so a logging failure never changes the answer nor
breaks the caller's transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from .lib.redaction import clean, mask, redact
from .models import ApiKey, RequestLog

log = logging.getLogger(__name__)

NOT_STORED = {"_note": "body could not be stored in the request log"}


def _body(value: Any, secrets: list[str] | tuple[str, ...]) -> Any:
    try:
        return redact(value, secrets)
    except Exception:  # e.g. RecursionError on a body nested deeper than the stack allows
        return dict(NOT_STORED)


def _short(value: str, limit: int) -> str:
    return clean(value)[:limit]


def write(
    source: str,
    *,
    method: str,
    path: str,
    status_code: int,
    duration_ms: int,
    environment_id: int | None = None,
    api_key: ApiKey | None = None,
    integration_id: str = "",
    request_body: Any = None,
    response_body: Any = None,
    error_code: str = "",
    secrets: list[str] | tuple[str, ...] = (),
    log_id: str | None = None,
) -> RequestLog | None:
    """Write one row; `secrets` are raw values (a bearer key, a link token) masked everywhere."""
    logged_path = _short(mask(path, secrets), 500)
    fields: dict[str, Any] = {
        "environment_id": environment_id,
        "source": source,
        "method": _short(method, 10),
        "path": logged_path,
        "status_code": status_code,
        "api_key": api_key,
        "integration_id": _short(integration_id, 80),
        "request_body": _body(request_body, secrets),
        "response_body": _body(response_body, secrets),
        "error_code": _short(error_code, 60),
        "duration_ms": duration_ms,
    }
    if log_id:
        fields["id"] = log_id
    try:
        with transaction.atomic():  # a savepoint: a failed insert must not break an outer transaction
            return RequestLog.objects.create(**fields)
    except Exception:
        log.warning("could not store the %s request log's bodies; writing it with placeholders", source, exc_info=True)
    try:
        placeholders = {
            "request_body": None if request_body is None else dict(NOT_STORED),
            "response_body": None if response_body is None else dict(NOT_STORED),
        }
        with transaction.atomic():
            return RequestLog.objects.create(**{**fields, **placeholders})
    except Exception:
        log.exception("could not write the %s request log for %s", source, logged_path[:200])
        return None
