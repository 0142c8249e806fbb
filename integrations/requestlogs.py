"""The request log's one writer: every RequestLog row (a /v1 request, a connect-flow attempt) is
written here, with one redaction and one failure policy.

Redaction: bodies go through `lib.redaction.redact` (secret-named keys replaced, the given raw
secrets masked wherever they appear, NUL characters replaced), paths and short fields through
`mask`/`clean`. Failure: a row that cannot be written is logged and dropped, inside a savepoint,
so a logging failure never changes the answer nor breaks the caller's transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from .lib.redaction import clean, mask, redact
from .models import ApiKey, RequestLog

log = logging.getLogger(__name__)


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
    try:
        fields: dict[str, Any] = {
            "environment_id": environment_id,
            "source": source,
            "method": clean(method)[:10],
            "path": clean(mask(path, secrets))[:500],
            "status_code": status_code,
            "api_key": api_key,
            "integration_id": clean(integration_id)[:80],
            "request_body": redact(request_body, secrets),
            "response_body": redact(response_body, secrets),
            "error_code": clean(error_code)[:60],
            "duration_ms": duration_ms,
        }
        if log_id:
            fields["id"] = log_id
        with transaction.atomic():  # a savepoint: a failed insert must not break an outer transaction
            return RequestLog.objects.create(**fields)
    except Exception:
        log.exception("could not write the %s request log for %s", source, clean(mask(path, secrets))[:200])
        return None
