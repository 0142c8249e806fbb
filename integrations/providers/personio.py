"""`personio`: Personio's Personnel Data API v1 (https://developer.personio.de/v1.0/reference).

Authentication (https://developer.personio.de/reference/auth): `POST /auth` with `client_id`
and `client_secret` in a JSON body answers `{"success": true, "data": {"token": ...}}`.
Personnel data endpoints take that token as `Authorization: Bearer <token>`; a successful
answer carries the token to use next in its own `Authorization` header, which is followed.

What a credential may read is set when it is created in Personio (Settings > Integrations >
API credentials): read access per area (Employees, Absences, ...) and a whitelist of
"Readable employee attributes". Attributes outside the whitelist are left out of answers, so
a field the customer did not whitelist is simply absent from the records returned here.

Paging (https://developer.personio.de/docs/pagination-adoption-guide-for-v1-get-employees-endpoint):
`GET /company/employees` takes `limit` (at most 100 since 31 January 2025; 50 when absent) and
`offset`, the first record to return; `GET /company/time-offs` takes `limit` (200 by default) and
`offset` as the *page number* ("Pagination attribute to identify which page number you are
requesting", https://developer.personio.de/v1.0/reference/get_company-time-offs). Both answer a
`metadata` block (`total_elements`, `current_page`, `total_pages`). Each page is yielded as it
arrives. Changed records only (`delta_models`): employees take `updated_since` (a date-time,
paginated like any read since November 2023; with `attributes[]` it selects the employees whose
listed attributes changed), time-offs `updated_from` (a date, inclusive). A time-off cancelled or
deleted since, or an employee who left, is not in such an answer: complete reads mark those.

Passthrough (`personio/personnel`, as the reference API names it): requests go to
`PERSONIO_BASE_URL` with a token from `POST /auth`, obtained exactly as for a sync. The token
Personio hands back in an answer's `Authorization` header is never returned to the caller.

Upstream account: Personio's public API documents no call that names the company (account) a
credential belongs to: `/auth` answers a token only, and no v1 endpoint returns a company id or
the account's hostname. The best stable signal is the employees the credential reads. Personio's
employee ids are unique across all Personio accounts (they are the ids of
`GET /company/employees/{employee_id}`), so an employee belongs to exactly one account: the first
employee of the auth check's own answer (`GET /company/employees?limit=1`, no extra request)
stands for the account (`employee:<id>`). A reconnect whose first employee differs is the same
account when the new credential can still read the recorded employee (`same_account`: one
`GET /company/employees/{id}`; another account's credential gets 404). A credential without
Employees read access names no account and cannot be compared (it is not refused); an account
whose recorded employee was deleted needs the operator to allow the change.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from django.conf import settings

from ..lib.http import RequestNotEncodable, provider_client
from .base import (
    AuthResult,
    AuthType,
    Category,
    CredentialField,
    DataModel,
    Outcome,
    Page,
    PassthroughTarget,
    Provider,
    ProviderAuthFailed,
    ProviderUnavailable,
    UpstreamAccount,
    register,
)
from .rest import (
    absence_window,
    check_result,
    default_error,
    json_body,
    not_encodable,
    not_encodable_error,
    read_json,
    select_rows,
    transport_failure,
    unavailable,
)

EMPLOYEES_PAGE_LIMIT = 100  # the maximum since 31 January 2025
TIME_OFFS_PAGE_LIMIT = 200  # the documented default
MAX_PAGES = 10_000  # a guard against an API that never ends a list (1,000,000 employees)

# Relink field -> Personio employee attribute (GET /company/employees).
EMPLOYEE_ATTRIBUTES = {
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "department": "department",
    "salary": "fix_salary",
}


def base_url() -> str:
    return settings.PERSONIO_BASE_URL.rstrip("/")


def _error(response: httpx.Response) -> tuple[str, str]:
    """Personio errors read `{"success": false, "error": {"code": ..., "message": ...}}`."""
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return default_error(response)
    code = error.get("code")
    error_code = f"PERSONIO_{code}" if code not in (None, "") else f"HTTP_{response.status_code}"
    return error_code, str(error.get("message") or response.reason_phrase)


def _value(attribute: Any) -> Any:
    """An attribute is `{"label", "value", "type", "universal_id"}`; some answers give the bare value."""
    return attribute.get("value") if isinstance(attribute, dict) and "value" in attribute else attribute


@register
class PersonioProvider(Provider):
    id = "personio"
    label = "Personio"
    category = Category.HRIS
    auth_type = AuthType.API_KEY
    credential_fields = (
        CredentialField(
            "client_id",
            "Client ID",
            secret=False,
            help_text="Personio: Settings > Integrations > API credentials > Create custom integration.",
        ),
        CredentialField(
            "client_secret", "Client secret", secret=True, help_text="Shown once, when the credential is created."
        ),
    )
    models = (
        DataModel(
            "hris_employees",
            "Employees",
            permission="Personio API credential: Employees (read)",
            fields={
                "first_name": "Readable employee attribute: First name",
                "last_name": "Readable employee attribute: Last name",
                "email": "Readable employee attribute: Email",
                "department": "Readable employee attribute: Department",
                "salary": "Readable employee attribute: Fix salary",
            },
        ),
        DataModel(
            "hris_absences",
            "Absences",
            permission="Personio API credential: Absences (read)",
            fields={
                "employee_id": "Personio API credential: Absences (read)",
                "start_date": "Personio API credential: Absences (read)",
                "end_date": "Personio API credential: Absences (read)",
            },
        ),
    )

    delta_models = frozenset({"hris_employees", "hris_absences"})  # updated_since, updated_from
    passthrough_apis = {
        "personnel": "Personio's Personnel Data API v1, authenticated with a token from POST /auth; "
        "base URL PERSONIO_BASE_URL (https://api.personio.de/v1)",
    }

    def passthrough_target(self, api: str, credentials: dict[str, Any]) -> PassthroughTarget:
        """A fresh token from `POST /auth`, as a sync gets it (one `/auth` call per request)."""
        with provider_client() as client:
            token = self._token(client, credentials)
        return PassthroughTarget(base_url(), {"Authorization": f"Bearer {token}"}, secrets=(token,))

    def check_auth(self, credentials: dict[str, Any]) -> AuthResult:
        """Exchange the credentials at `POST /auth`, then call `GET /company/employees?limit=1`.

        A 401 or 403 from `/auth` means Personio refused the client ID or secret. A 403 from the
        employees call means the credentials are valid but lack the Employees read access: the
        check is OK and fetching `hris_employees` raises `ModelPermissionDenied`.
        """
        try:
            with provider_client() as client:
                auth = self._request_token(client, credentials)
                token = self._token_from(auth)
                if token is None:
                    return self._auth_failure(auth)
                response = client.get(
                    f"{base_url()}/company/employees", params={"limit": 1, "offset": 0}, headers=_bearer(token)
                )
        except httpx.TransportError as exc:
            return transport_failure(exc, self.label)
        except RequestNotEncodable:
            return not_encodable(self.label)
        result = check_result(response, self.label, _error)
        if response.is_success:
            result.account = _account(response)
        return result

    def same_account(self, recorded: str, account: UpstreamAccount, credentials: dict[str, Any]) -> bool:
        """The same account if the first employee is the recorded one, or if the new credential
        can read the recorded employee: `GET /company/employees/{id}` answers 404 to a credential
        of another account (employee ids are unique across Personio)."""
        if account.id == recorded:
            return True
        employee_id = recorded.removeprefix(ACCOUNT_PREFIX)
        if employee_id == recorded or not employee_id.isdigit():
            return False
        try:
            with provider_client() as client:
                token = self._token(client, credentials)
                response = client.get(f"{base_url()}/company/employees/{employee_id}", headers=_bearer(token))
        except httpx.TransportError as exc:
            raise unavailable(exc, self.label) from exc
        except RequestNotEncodable:
            raise not_encodable_error(self.label) from None
        if response.status_code in (403, 404):
            return False
        read_json(response, self.label, "hris_employees", self.model_spec("hris_employees").permission)
        return True

    def fetch_pages(
        self,
        model: str,
        credentials: dict[str, Any],
        fields: list[str],
        since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """`GET /company/employees` or `GET /company/time-offs` (approved ones), page by page."""
        spec = self.model_spec(model)
        try:
            with provider_client() as client:
                token = self._token(client, credentials)
                if model == "hris_employees":
                    attributes = [EMPLOYEE_ATTRIBUTES[f] for f in fields if f in EMPLOYEE_ATTRIBUTES]
                    params: dict[str, Any] = {"attributes[]": attributes} if attributes else {}
                    if since is not None:
                        params["updated_since"] = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
                    limit = min(page_size or EMPLOYEES_PAGE_LIMIT, EMPLOYEES_PAGE_LIMIT)
                    pages = self._pages(client, token, "company/employees", params, limit, spec.permission, model)
                    for items in pages:
                        yield Page(select_rows([_employee(item) for item in items], fields))
                else:
                    start, end = absence_window()
                    params = {"start_date": start.isoformat(), "end_date": end.isoformat()}
                    if since is not None:  # a date, inclusive: from the day before, whatever the account's zone
                        params["updated_from"] = (since.astimezone(UTC) - timedelta(days=1)).date().isoformat()
                    limit = min(page_size or TIME_OFFS_PAGE_LIMIT, TIME_OFFS_PAGE_LIMIT)
                    pages = self._pages(
                        client, token, "company/time-offs", params, limit, spec.permission, model, numbered=True
                    )
                    for items in pages:
                        yield Page(select_rows([_absence(item) for item in items if _is_approved(item)], fields))
        except httpx.TransportError as exc:
            raise unavailable(exc, self.label) from exc
        except RequestNotEncodable:
            raise not_encodable_error(self.label) from None

    def _request_token(self, client: httpx.Client, credentials: dict[str, Any]) -> httpx.Response:
        """`POST /auth` (https://developer.personio.de/reference/post_auth)."""
        body = {"client_id": credentials.get("client_id", ""), "client_secret": credentials.get("client_secret", "")}
        return client.post(f"{base_url()}/auth", json=body, headers={"Accept": "application/json"})

    @staticmethod
    def _token_from(response: httpx.Response) -> str | None:
        if not response.is_success:
            return None
        body = json_body(response)
        data = body.get("data") if isinstance(body, dict) else None
        token = data.get("token") if isinstance(data, dict) else None
        return token if isinstance(token, str) and token else None

    def _auth_failure(self, response: httpx.Response) -> AuthResult:
        status = response.status_code
        if status in (401, 403):
            _, message = _error(response)
            return AuthResult(
                Outcome.AUTH_FAILED,
                http_status=status,
                error_code="INVALID_CREDENTIALS",
                message=f"Personio refused the client ID or secret ({message})"[:500],
            )
        if response.is_success:
            return AuthResult(
                Outcome.UNAVAILABLE,
                http_status=status,
                error_code="UNEXPECTED_RESPONSE",
                message="Personio answered /auth without a token",
            )
        return check_result(response, self.label, _error)

    def _token(self, client: httpx.Client, credentials: dict[str, Any]) -> str:
        response = self._request_token(client, credentials)
        token = self._token_from(response)
        if token is not None:
            return token
        if response.status_code in (401, 403):
            raise ProviderAuthFailed("Personio refused the client ID or secret", response.status_code)
        raise ProviderUnavailable(f"Personio /auth answered HTTP {response.status_code}", response.status_code)

    def _pages(
        self,
        client: httpx.Client,
        token: str,
        path: str,
        params: dict[str, Any],
        limit: int,
        permission: str,
        model: str,
        numbered: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """The `data` of each page, following the token each answer hands back. `offset` is the
        first record (employees) or, `numbered`, the page number (time-offs). Ends on a short page
        or at `metadata.total_pages`."""
        offset = 0
        for page in range(MAX_PAGES):
            query = {**params, "limit": limit, "offset": page if numbered else offset}
            response = client.get(f"{base_url()}/{path}", params=query, headers=_bearer(token))
            body = read_json(response, self.label, model, permission)
            token = _rotated(response) or token
            data = (body.get("data") if isinstance(body, dict) else None) or []
            yield [item for item in data if isinstance(item, dict)]
            offset += len(data)
            metadata = (body.get("metadata") if isinstance(body, dict) else None) or {}
            total_pages = metadata.get("total_pages") if isinstance(metadata, dict) else None
            if len(data) < limit or (isinstance(total_pages, int) and page + 1 >= total_pages):
                return
        # Never taken for a complete read: what was not read would be marked deleted.
        raise ProviderUnavailable(f"Personio was still paging {path} after {MAX_PAGES} pages")


ACCOUNT_PREFIX = "employee:"


def _account(response: httpx.Response) -> UpstreamAccount | None:
    """The account the auth check's answer stands for: its first employee (see the module docstring)."""
    body = json_body(response)
    data = body.get("data") if isinstance(body, dict) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    employee_id = _value((first.get("attributes") or {}).get("id"))
    if employee_id in (None, "") or isinstance(employee_id, (dict, list)):
        return None
    return UpstreamAccount(f"{ACCOUNT_PREFIX}{employee_id}", f"Personio account of employee #{employee_id}")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def _rotated(response: httpx.Response) -> str | None:
    """The token Personio hands back in the `Authorization` header of a successful answer."""
    header = response.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _employee(item: dict[str, Any]) -> dict[str, Any]:
    attributes = item.get("attributes") or {}
    employee_id = _value(attributes.get("id"))
    row: dict[str, Any] = {"id": str(employee_id) if employee_id is not None else ""}
    for field, attribute in EMPLOYEE_ATTRIBUTES.items():
        if attribute not in attributes:
            continue
        value = _value(attributes[attribute])
        if field == "department" and isinstance(value, dict):
            value = (value.get("attributes") or {}).get("name")
        row[field] = value
    return row


def _is_approved(item: dict[str, Any]) -> bool:
    return (item.get("attributes") or {}).get("status") == "approved"


def _absence(item: dict[str, Any]) -> dict[str, Any]:
    """A `TimeOffPeriod`: dates come as `2017-12-27T00:00:00+0100`; the day is kept."""
    attributes = item.get("attributes") or {}
    employee = (attributes.get("employee") or {}).get("attributes") or {}
    employee_id = _value(employee.get("id"))
    return {
        "id": str(attributes["id"]) if attributes.get("id") is not None else "",
        "employee_id": str(employee_id) if employee_id is not None else None,
        "start_date": _day(attributes.get("start_date")),
        "end_date": _day(attributes.get("end_date")),
    }


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and value else None
