"""`hibob`: HiBob (Bob) public API v1 (https://apidocs.hibob.com/reference).

Requests go to `https://api.hibob.com/v1/...` as an API service user: HTTP Basic
authentication with the service user ID as user name and its token as password
(https://apidocs.hibob.com/reference/authorization). Bob documents 401 as a request that could
not be authenticated and 403 as a service user without permission for the resource
(https://apidocs.hibob.com/reference/error-handling); error bodies read `{"key", "error"}`.

A service user starts with no permissions: an admin adds it to a permission group and grants
View on the employee field categories (Basic info, Work, Payroll, ...) and on time off. People
search silently leaves out fields the service user may not view, so such a field is absent
from the records returned here.

Upstream account: Bob documents no call that names the company a service user belongs to (its
company endpoints describe fields and named lists). Every employee record carries the company's
id, `companyId` (field `root.companyId`), so that is the account: read by a people search for
that one field, made only when the connect flow asks (`account_of`), not on every auth check.
A service user who may view no employee names no account; such a reconnect cannot be compared
and is not refused.

Passthrough (`hibob/v1`, as the reference API names it): requests go to `HIBOB_BASE_URL` with
the same Basic authentication.

Paging: people search has none by design ("no pagination (full result set)": every matching
employee in one answer, https://apidocs.hibob.com/docs/people-read-api-contract), and who's out
documents none (https://apidocs.hibob.com/reference/get_timeoff-whosout); Bob's cursor paging
(`cursor`/`limit` ≤ 200, https://apidocs.hibob.com/reference/pagination-1) covers other
endpoints. Each answer is yielded as one page, so a sync's memory and the hosted page's
permission probe grow with the company for this tool. Neither call takes an updated-after filter
(`GET /v1/timeoff/requests/changes?since=` lists change events, deletions included, which a full
who's-out read already reflects), so a DELTA sync reads everything and writes only what changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
from django.conf import settings

from .base import (
    AuthResult,
    AuthType,
    Category,
    CredentialField,
    DataModel,
    ModelPermissionDenied,
    Page,
    PassthroughTarget,
    Provider,
    UpstreamAccount,
    register,
)
from .rest import absence_window, auth_headers, check_request, default_error, fetch_json, json_body, select_rows

MISSING = object()

# Relink field -> Bob field ID (https://apidocs.hibob.com/reference/get_company-people-fields).
EMPLOYEE_FIELDS = {
    "first_name": "root.firstName",
    "last_name": "root.surname",
    "email": "root.email",
    "department": "work.department",
    "salary": "payroll.salary.payment",
}


def base_url() -> str:
    return settings.HIBOB_BASE_URL.rstrip("/")


def _error(response: httpx.Response) -> tuple[str, str]:
    body = json_body(response)
    if not isinstance(body, dict):
        return default_error(response)
    return str(body.get("key") or f"HTTP_{response.status_code}"), str(body.get("error") or response.reason_phrase)


@register
class HiBobProvider(Provider):
    id = "hibob"
    label = "HiBob"
    category = Category.HRIS
    auth_type = AuthType.BASIC
    credential_fields = (
        CredentialField(
            "service_user_id",
            "Service user ID",
            secret=False,
            help_text="Bob: System settings > Integrations > Service users > Create service user.",
        ),
        CredentialField(
            "service_user_token",
            "Service user token",
            secret=True,
            help_text="Shown once, when the service user is created. Add the user to a permission group.",
        ),
    )
    models = (
        DataModel(
            "hris_employees",
            "Employees",
            permission="HiBob permission group: People's data > access to employees (People search)",
            fields={
                "first_name": "HiBob permission group: Basic info category (view)",
                "last_name": "HiBob permission group: Basic info category (view)",
                "email": "HiBob permission group: Basic info category (view)",
                "department": "HiBob permission group: Work category (view)",
                "salary": "HiBob permission group: Payroll > Salary category (view)",
            },
        ),
        DataModel(
            "hris_absences",
            "Absences",
            permission="HiBob permission group: Time off > See who's out",
            fields={
                "employee_id": "HiBob permission group: Time off > See who's out",
                "start_date": "HiBob permission group: Time off > See who's out",
                "end_date": "HiBob permission group: Time off > See who's out",
            },
        ),
    )

    passthrough_apis = {
        "v1": "HiBob's public API v1, with the service user as Basic authentication; "
        "base URL HIBOB_BASE_URL (https://api.hibob.com/v1)",
    }

    def passthrough_target(self, api: str, credentials: dict[str, Any]) -> PassthroughTarget:
        return PassthroughTarget(base_url(), auth_headers(_auth(credentials), base_url()))

    def check_auth(self, credentials: dict[str, Any]) -> AuthResult:
        """`GET /v1/company/people/fields`: field metadata, which Bob serves to any service user.

        Bob documents this endpoint as needing no permission, so valid credentials answer 200
        and a 401 means they were refused; checking here also avoids the pattern of repeated
        permission failures Bob's WAF blocks. A 403 (service user without permission) still
        proves the credentials authenticated: the check is OK and the model that needs the
        permission raises `ModelPermissionDenied` when fetched.
        """
        return check_request(
            self.label, _error, method="GET", url=f"{base_url()}/company/people/fields", auth=_auth(credentials)
        )

    def account_of(self, credentials: dict[str, Any], checked: AuthResult) -> UpstreamAccount | None:
        """`POST /v1/people/search` asking only for `root.companyId`: the one company id on the
        records the service user may see (None if it sees none, or records of several)."""
        body = {"fields": ["root.id", "root.companyId"], "showInactive": False}
        request = {"method": "POST", "url": f"{base_url()}/people/search", "json": body}
        try:
            answer = fetch_json(self.label, "hris_employees", "", auth=_auth(credentials), **request)
        except ModelPermissionDenied:
            return None
        records = answer.get("employees") if isinstance(answer, dict) else None
        ids = {field_value(r, "root.companyId") for r in records or [] if isinstance(r, dict)} - {MISSING, None, ""}
        if len(ids) != 1:
            return None
        company_id = str(ids.pop())
        return UpstreamAccount(company_id, f"HiBob company {company_id}")

    def fetch_pages(
        self,
        model: str,
        credentials: dict[str, Any],
        fields: list[str],
        since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """One page, the whole answer (see the module docstring). Employees: `POST /v1/people/search`
        (active employees, only the requested fields, human-readable values). Absences:
        `GET /v1/timeoff/whosout?from=&to=` (approved requests)."""
        spec = self.model_spec(model)
        if model == "hris_employees":
            body = {
                "fields": ["root.id", *(EMPLOYEE_FIELDS[f] for f in fields if f in EMPLOYEE_FIELDS)],
                "showInactive": False,
                "humanReadable": "REPLACE",
            }
            request: dict[str, Any] = {"method": "POST", "url": f"{base_url()}/people/search", "json": body}
        else:
            start, end = absence_window()
            params = {"from": start.isoformat(), "to": end.isoformat()}
            request = {"method": "GET", "url": f"{base_url()}/timeoff/whosout", "params": params}
        answer = fetch_json(self.label, model, spec.permission, auth=_auth(credentials), **request)
        key = "employees" if model == "hris_employees" else "outs"
        records = answer.get(key) if isinstance(answer, dict) else None
        convert = _employee if model == "hris_employees" else _absence
        rows = [convert(r) for r in records or [] if isinstance(r, dict)]
        yield Page(select_rows(rows, fields))


def _auth(credentials: dict[str, Any]) -> httpx.BasicAuth:
    return httpx.BasicAuth(str(credentials.get("service_user_id", "")), str(credentials.get("service_user_token", "")))


def field_value(record: dict[str, Any], field_id: str) -> Any:
    """A field of a people-search employee, or MISSING.

    Bob nests values by category (`{"work": {"department": ...}}`, `root.*` at the top level) and
    also keys them in slash notation (`{"/work/department": {"value": ...}}`).
    """
    node: Any = record
    for part in field_id.removeprefix("root.").split("."):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return node
    slashed = record.get("/" + field_id.replace(".", "/"), MISSING)
    return slashed.get("value") if isinstance(slashed, dict) else slashed


def _employee(record: dict[str, Any]) -> dict[str, Any]:
    employee_id = field_value(record, "root.id")
    row: dict[str, Any] = {"id": str(employee_id) if employee_id not in (MISSING, None) else ""}
    for field, field_id in EMPLOYEE_FIELDS.items():
        value = field_value(record, field_id)
        if value is not MISSING:
            row[field] = value
    return row


def _absence(record: dict[str, Any]) -> dict[str, Any]:
    """A who's-out entry; hour-based requests carry a single `date` instead of start and end."""
    return {
        "id": str(record["requestId"]) if record.get("requestId") is not None else "",
        "employee_id": str(record["employeeId"]) if record.get("employeeId") is not None else None,
        "start_date": record.get("startDate") or record.get("date"),
        "end_date": record.get("endDate") or record.get("date"),
    }
