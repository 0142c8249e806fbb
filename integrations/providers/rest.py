"""Outcome rules shared by the adapters that talk to a provider's public REST API.

One place decides what an HTTP answer means (DESIGN "Integration state"): 2xx is OK, 401 means
the credentials were rejected, 429, 5xx, timeouts and connection errors are the provider's
problem. A 403 on the auth-check endpoint means the credentials authenticated but lack a
permission, so the check is OK and the model that needs it fails later with
`ModelPermissionDenied`. Credentials HTTP cannot carry (a non-ASCII character in a header) are
rejected credentials too: AUTH_FAILED, nothing sent. Messages built here never contain credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import httpx

from ..lib.http import RequestNotEncodable, provider_client
from .base import (
    AuthResult,
    ModelPermissionDenied,
    Outcome,
    ProviderAuthFailed,
    ProviderUnavailable,
)

NOT_ENCODABLE = "CREDENTIALS_NOT_ENCODABLE"

# (error_code, message) read from a provider's error answer.
ErrorReader = Callable[[httpx.Response], tuple[str, str]]

# Absences are read for this many days either side of today.
ABSENCE_WINDOW_DAYS = 365


def absence_window(today: date | None = None) -> tuple[date, date]:
    """The date range absences are fetched for."""
    today = today or date.today()
    return today - timedelta(days=ABSENCE_WINDOW_DAYS), today + timedelta(days=ABSENCE_WINDOW_DAYS)


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when there is none."""
    try:
        return response.json()
    except ValueError:
        return None


def default_error(response: httpx.Response) -> tuple[str, str]:
    return f"HTTP_{response.status_code}", response.reason_phrase


def check_result(response: httpx.Response, label: str, read_error: ErrorReader = default_error) -> AuthResult:
    """Classify the answer of an auth-check call."""
    status = response.status_code
    if response.is_success:
        return AuthResult(Outcome.OK, http_status=status)
    if status == 403:
        return AuthResult(
            Outcome.OK,
            http_status=status,
            error_code="PERMISSION_MISSING",
            message=f"{label} accepted the credentials but they lack a permission",
        )
    code, message = read_error(response)
    outcome = Outcome.AUTH_FAILED if status == 401 else Outcome.UNAVAILABLE
    return AuthResult(outcome, http_status=status, error_code=code, message=message[:500])


def transport_failure(exc: httpx.TransportError, label: str) -> AuthResult:
    """An auth check that got no HTTP answer: always the provider's problem."""
    if isinstance(exc, httpx.TimeoutException):
        return AuthResult(Outcome.UNAVAILABLE, error_code="TIMEOUT", message=f"{label} did not answer in time")
    return AuthResult(
        Outcome.UNAVAILABLE, error_code="CONNECTION_ERROR", message=f"{label} unreachable: {type(exc).__name__}"
    )


def not_encodable(label: str) -> AuthResult:
    """An auth check whose request could not be built from the credentials (`RequestNotEncodable`)."""
    return AuthResult(
        Outcome.AUTH_FAILED,
        error_code=NOT_ENCODABLE,
        message=f"The credentials hold characters that cannot be sent to {label}",
    )


def not_encodable_error(label: str) -> ProviderAuthFailed:
    """The same for a data call."""
    return ProviderAuthFailed(f"The credentials hold characters that cannot be sent to {label}")


def unavailable(exc: httpx.TransportError, label: str) -> ProviderUnavailable:
    if isinstance(exc, httpx.TimeoutException):
        return ProviderUnavailable(f"{label} did not answer in time")
    return ProviderUnavailable(f"{label} unreachable: {type(exc).__name__}")


def raise_for_fetch(response: httpx.Response, label: str, model: str, permission: str) -> None:
    """Raise the `ProviderError` a failed data call stands for; return on 2xx."""
    status = response.status_code
    if response.is_success:
        return
    if status == 401:
        raise ProviderAuthFailed(f"{label} rejected the credentials", status)
    if status == 403:
        raise ModelPermissionDenied(model, permission)
    raise ProviderUnavailable(f"{label} answered HTTP {status}", status)


def expect_json(response: httpx.Response, label: str) -> Any:
    """The JSON body of a successful answer; a body that is not JSON is the provider's problem."""
    body = json_body(response)
    if body is None:
        raise ProviderUnavailable(f"{label} answered without a JSON body", response.status_code)
    return body


def select(record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Keep `id` and the requested fields the provider returned (absent ones stay absent)."""
    wanted = set(fields) | {"id"}
    return {k: v for k, v in record.items() if k in wanted}


def select_rows(rows: list[dict[str, Any]], fields: list[str]) -> list[dict[str, Any]]:
    """The records that have an id, each cut down to `id` and the requested fields."""
    return [select(row, fields) for row in rows if row.get("id")]


def auth_headers(auth: httpx.Auth, url: str) -> dict[str, str]:
    """The headers `auth` (an adapter's own, e.g. its `httpx.BasicAuth`) sets on a request to
    `url`, for a passthrough request that sets them explicitly. Only what it adds or changes."""
    request = httpx.Request("GET", url)
    before = dict(request.headers)
    sent = next(auth.sync_auth_flow(request))
    return {name: value for name, value in sent.headers.items() if before.get(name) != value}


def _send(**request: Any) -> httpx.Response:
    """One JSON request through the shared client settings (timeouts, user agent)."""
    with provider_client() as client:
        return client.request(headers={"Accept": "application/json"}, **request)


def check_request(label: str, read_error: ErrorReader = default_error, **request: Any) -> AuthResult:
    """An auth check that is a single request (`httpx.Client.request` arguments), classified."""
    try:
        response = _send(**request)
    except httpx.TransportError as exc:
        return transport_failure(exc, label)
    except RequestNotEncodable:
        return not_encodable(label)
    return check_result(response, label, read_error)


def read_json(response: httpx.Response, label: str, model: str, permission: str) -> Any:
    """The JSON body of a data call's answer, or the `ProviderError` the answer stands for."""
    raise_for_fetch(response, label, model, permission)
    return expect_json(response, label)


def fetch_json(label: str, model: str, permission: str, **request: Any) -> Any:
    """A data call that is a single request (`httpx.Client.request` arguments): its JSON body."""
    try:
        response = _send(**request)
    except httpx.TransportError as exc:
        raise unavailable(exc, label) from exc
    except RequestNotEncodable:
        raise not_encodable_error(label) from None
    return read_json(response, label, model, permission)
