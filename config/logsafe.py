"""No secret in any log line.

Django's request logger prints the path of every 4xx and 5xx (`Not Found: /connect/<token>/`),
gunicorn's access log prints the request line with its query (`?code=…&state=…`), and tracebacks
carry whatever the failing code put in its message. A connection link's path *is* its token, so
every log record is redacted where it is made: a log-record factory (installed by Django's logging
setup, `LOGGING_CONFIG` below, and by gunicorn's config file) rewrites the formatted message and
traceback of every record of every logger — Django, gunicorn, Celery, Relink's own — before any
handler sees it. What is redacted:

- the token segment of `/connect/<token>/…` (the hosted pages) and `/integration-by-token/<token>`;
- query and form values named like credentials (`code`, `state`, `token`, `api_key`, `password`, …);
- `Authorization`-style values: `Bearer …`, `Basic …`;
- Relink API keys (`rlk_…`), Sandbox HR keys (`sbx_…`) and webhook signing secrets (`whsec_…`).

Django's error reports (the mail to ADMINS) go through `SafeExceptionReporter` for the same reason.
"""

from __future__ import annotations

import logging
import logging.config
import re
import traceback
from typing import Any

from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from config.text import REDACTED, is_secret_name

_SECRET_NAMES = (
    r"code|state|token|activation_token|access_token|refresh_token|id_token|api_?key|key|secret|client_secret"
    r"|password|passwd|form_token|signature"
)
PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # /connect/<token>/ and /connect/<token>/handoff/ (not /v1/connect/…; the OAuth callback's path has no token).
    (re.compile(r"(?<!/v1)(/connect/)(?!oauth/)([^/\s?#\"']+)"), rf"\1{REDACTED}"),
    (re.compile(r"(/integration-by-token/)([^/\s?#\"']+)"), rf"\1{REDACTED}"),
    (re.compile(rf"([?&;](?:{_SECRET_NAMES})=)([^&;\s#\"']*)", re.IGNORECASE), rf"\1{REDACTED}"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE), rf"\1 {REDACTED}"),
    (re.compile(r"\b(rlk|sbx|whsec)_[A-Za-z0-9_\-+/=]{6,}"), rf"\1_{REDACTED}"),
]


def redact_text(text: str) -> str:
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_base_factory = logging.getLogRecordFactory()


def _safe_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it when a handler formats the record
        return record
    safe = redact_text(message)
    if safe != message:
        record.msg, record.args = safe, None
    if record.exc_info and record.exc_info[0] is not None:
        # Formatters use exc_text when set, so the traceback is formatted (and redacted) once here.
        record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    return record


def install() -> None:
    """Make every log record of this process redacted (idempotent)."""
    if logging.getLogRecordFactory() is not _safe_record:
        logging.setLogRecordFactory(_safe_record)


def configure(logging_settings: dict[str, Any]) -> None:
    """Django's LOGGING_CONFIG: install the redacting record factory, then apply LOGGING."""
    install()
    if logging_settings:
        logging.config.dictConfig(logging_settings)


# Besides the names every layer hides (config.text): an OAuth redirect's `code` and `state`, and
# the bare `key` and `signature` a traceback's frames hold.
_ALSO_SECRET = {"code", "state", "key", "signature"}


def _secret(name: str) -> bool:
    return is_secret_name(name) or name.lower() in _ALSO_SECRET


class SafeReporterFilter(SafeExceptionReporterFilter):
    """Also hides a traceback's local variables named like secrets (`token`, `raw_key`, …), not
    only those marked @sensitive_variables."""

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        return [
            (name, self.cleansed_substitute if _secret(name) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]


class SafeExceptionReporter(ExceptionReporter):
    """Django's error report (ADMINS mail, DEBUG page) with the same redaction as the logs: the
    request's URL and query, and GET parameters named like secrets (an OAuth `code`, `state`)."""

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        if data.get("request_GET_items"):
            data["request_GET_items"] = [
                (name, REDACTED if _secret(name) else value) for name, value in data["request_GET_items"]
            ]
        meta = data.get("request_meta")
        if isinstance(meta, dict) and isinstance(meta.get("QUERY_STRING"), str):
            meta["QUERY_STRING"] = redact_text("?" + meta["QUERY_STRING"])[1:]
        return data

    # The replacement, "[REDACTED]", is plain text: the escaped report stays as safe as it was.
    def get_traceback_text(self) -> SafeString:
        return mark_safe(redact_text(super().get_traceback_text()))

    def get_traceback_html(self) -> SafeString:
        return mark_safe(redact_text(super().get_traceback_html()))
