"""The /v1 error envelope: `{"status": "error", "error": {"code", "title", "message", "log_url"}}`.

Codes and HTTP statuses follow the reference API. Handlers raise `ApiError`; the dispatcher
(api.framework) turns it into the envelope and fills in `log_url`.
"""

from __future__ import annotations

from typing import Any

INPUT_INVALID = "PLATFORM.INPUT_INVALID"
AUTHENTICATION_INVALID = "PLATFORM.AUTHENTICATION_INVALID"
INTEGRATION_NOT_FOUND = "PLATFORM.INTEGRATION_NOT_FOUND"
RATE_LIMIT_EXCEEDED = "PLATFORM.RATE_LIMIT_EXCEEDED"
UNKNOWN_ERROR = "PLATFORM.UNKNOWN_ERROR"
TASK_TIMED_OUT = "PLATFORM.TASK_TIMED_OUT"

STATUS = {
    INPUT_INVALID: 400,
    AUTHENTICATION_INVALID: 401,
    INTEGRATION_NOT_FOUND: 404,
    RATE_LIMIT_EXCEEDED: 429,
    UNKNOWN_ERROR: 500,
    TASK_TIMED_OUT: 504,
}

TITLES = {
    INPUT_INVALID: "The request's input is invalid.",
    AUTHENTICATION_INVALID: "The API key is missing or invalid.",
    INTEGRATION_NOT_FOUND: "The integration could not be found.",
    RATE_LIMIT_EXCEEDED: "Too many requests.",
    UNKNOWN_ERROR: "An unknown error occurred.",
    TASK_TIMED_OUT: "The task timed out.",
}


class ApiError(Exception):
    """An error answer. `code` may be None for errors without a platform code (404/405 routes)."""

    def __init__(
        self,
        code: str | None,
        message: str,
        *,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code or "", 400)
        self.title = title if title is not None else TITLES.get(code or "")
        self.headers = headers or {}

    def envelope(self, log_url: str | None) -> dict[str, Any]:
        return {
            "status": "error",
            "error": {"code": self.code, "title": self.title, "message": self.message, "log_url": log_url},
        }


def input_invalid(message: str) -> ApiError:
    return ApiError(INPUT_INVALID, message)


def authentication_invalid(message: str) -> ApiError:
    return ApiError(AUTHENTICATION_INVALID, message)


def integration_not_found(message: str) -> ApiError:
    return ApiError(INTEGRATION_NOT_FOUND, message)


def no_such_integration(integration_id: str) -> ApiError:
    return integration_not_found(f"No integration with the id {integration_id[:80]!r} exists in this environment.")


def rate_limited(limit: int, retry_after: int) -> ApiError:
    return ApiError(
        RATE_LIMIT_EXCEEDED,
        f"This API key may make {limit} requests per minute; retry in {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


def rate_limited_unauthenticated(limit: int, retry_after: int) -> ApiError:
    return ApiError(
        RATE_LIMIT_EXCEEDED,
        f"This address may make {limit} requests per minute without a valid API key; retry in {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


def unusable_characters(where: str) -> ApiError:
    """A string of the JSON body (a key or a value, at `where`) holds NUL or an unpaired surrogate."""
    return input_invalid(
        f"{where}: must not contain NUL characters (\\u0000) or unpaired surrogates (\\ud800 to \\udfff)."
    )


def unknown_error() -> ApiError:
    return ApiError(
        UNKNOWN_ERROR,
        "Something went wrong on our side. The error has been logged; share the log_url if you contact support.",
    )


def task_timed_out(message: str) -> ApiError:
    """A call Relink made for the request (to an integration's tool) got no answer in time."""
    return ApiError(TASK_TIMED_OUT, message)


def upstream_failed(message: str) -> ApiError:
    """A call Relink made for the request (to an integration's tool) got no usable answer: the tool
    was unreachable or refused Relink's own authentication. 502: the problem is upstream."""
    return ApiError(
        UNKNOWN_ERROR, message, status=502, title="The request could not be forwarded to the integration's tool."
    )


# Unknown routes and methods: the reference's enum has no code for them and does not allow null,
# so they carry PLATFORM.INPUT_INVALID (the request is what is wrong) with their own HTTP status.
def route_not_found(path: str) -> ApiError:
    return ApiError(INPUT_INVALID, f"There is no API endpoint at {path[:200]}.", status=404, title="Not found.")


def method_not_allowed(method: str, allowed: list[str]) -> ApiError:
    return ApiError(
        INPUT_INVALID,
        f"{method[:10]} is not allowed here; use {', '.join(allowed)}.",
        status=405,
        title="Method not allowed.",
        headers={"Allow": ", ".join(allowed)},
    )
