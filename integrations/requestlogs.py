"""The request log's one writer: every RequestLog row (a /v1 request, a connect-flow attempt) is
written here, with one redaction and one failure policy.

Redaction: bodies go through `lib.redaction.redact` (secret-named keys replaced, the given raw
secrets masked wherever they appear, and what PostgreSQL cannot store made storable: NUL and
unpaired surrogates become U+FFFD, Infinity and NaN strings), paths and short fields through
`mask`/`clean`.

Failure: every request gets its row. A body that cannot be made storable, or a row whose insert
fails, is written again with placeholder bodies; only if that fails too is the row logged and
dropped. A logging failure never changes the answer nor breaks the caller's transaction: inside
one, each insert runs in a savepoint.

Cost: outside a transaction (an API request, in autocommit) a row is one INSERT, one database
round trip — no BEGIN/COMMIT, no savepoint — and the row is committed before the response goes out,
so no entry waits in a buffer that a shutdown could lose. The statement is built once from the
model's fields (`_insert`); the ORM's save machinery cost more than the query.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from django.db import connection, transaction

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
        return _insert(fields)
    except Exception:
        log.warning("could not store the %s request log's bodies; writing it with placeholders", source, exc_info=True)
    try:
        placeholders = {
            "request_body": None if request_body is None else dict(NOT_STORED),
            "response_body": None if response_body is None else dict(NOT_STORED),
        }
        return _insert({**fields, **placeholders})
    except Exception:
        log.exception("could not write the %s request log for %s", source, logged_path[:200])
        return None


def _insert(fields: dict[str, Any]) -> RequestLog:
    """INSERT one row, in a savepoint when inside a transaction (a failed insert must not break
    it); in autocommit the INSERT is its own transaction and a failure leaves nothing behind."""
    row = RequestLog(**fields)
    if connection.in_atomic_block:
        with transaction.atomic():
            return _insert_row(row)
    return _insert_row(row)


def _insert_row(row: RequestLog) -> RequestLog:
    columns = RequestLog._meta.concrete_fields
    values = [field.get_db_prep_save(field.pre_save(row, True), connection) for field in columns]
    with connection.cursor() as cursor:
        cursor.execute(_insert_statement(), values)
    row._state.adding = False
    row._state.db = connection.alias
    return row


@cache
def _insert_statement() -> str:
    qn = connection.ops.quote_name
    columns = RequestLog._meta.concrete_fields
    return (
        f"INSERT INTO {qn(RequestLog._meta.db_table)} ({', '.join(qn(str(f.column)) for f in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
