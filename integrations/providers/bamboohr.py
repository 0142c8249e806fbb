"""`bamboohr`: BambooHR's REST API v1 (https://documentation.bamboohr.com/docs/api-details).

Requests go to `https://api.bamboohr.com/api/gateway.php/{companyDomain}/v1/...` with HTTP Basic
authentication: the API key as user name and any string (here `x`) as password, and
`Accept: application/json` (the API answers XML otherwise). Errors carry their detail in the
`X-BambooHR-Error-Message` header. BambooHR documents 401 as a missing or invalid key, 403 as
a key whose user lacks the privilege for the request, and 503 as throttling.

An API key reads what its user's access level allows, field by field: a field the user may
not see is left out of report answers, so it is absent from the records returned here.

Paging: neither call used here (request a custom report, get time-off requests) documents any:
each answers the whole list at once, yielded as one page, so a sync's memory and the hosted
page's permission probe grow with the company for this tool. BambooHR's paginated read is the
Datasets API (`page`/`pageSize`, `meta.totalPages`,
https://documentation.bamboohr.com/reference/get-data-from-dataset-v2), with its own field names
(`jobInformationDepartment`, …): moving employees onto it is the way to stream BambooHR. Neither
call takes an updated-after filter (`GET /v1/employees/changed?since=` names changed employee
ids only), so a DELTA sync reads everything and writes only what changed.

Passthrough (`bamboohr/v1`, as the reference API names it): requests go to
`{BAMBOOHR_BASE_URL}/{companyDomain}/v1` with the same Basic authentication.

Upstream account: BambooHR's documented identity of an account is its company domain; no call
returns a more stable id for it, and none is needed. An API key belongs to one user of one
company and every request names that company in its path (`/{companyDomain}/v1/...`), so a
check that passes proves the key reaches the company of that subdomain: the (normalized) company
domain is the account, taken from the credentials without another request. A company whose
subdomain BambooHR changed is a different account to Relink; the operator allows that reconnect.
"""

from __future__ import annotations

import re
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
    Outcome,
    Page,
    PassthroughTarget,
    Provider,
    ProviderAuthFailed,
    UpstreamAccount,
    register,
)
from .rest import absence_window, auth_headers, check_request, fetch_json, select_rows

COMPANY_DOMAIN_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62})$")

# Relink field -> BambooHR field name (https://documentation.bamboohr.com/docs/list-of-field-names).
EMPLOYEE_FIELDS = {
    "first_name": "firstName",
    "last_name": "lastName",
    "email": "workEmail",
    "department": "department",
    "salary": "payRate",
}


class InvalidCompanyDomain(ValueError):
    pass


def base_url() -> str:
    return settings.BAMBOOHR_BASE_URL.rstrip("/")


def company_domain(credentials: dict[str, Any]) -> str:
    """The subdomain of `https://<domain>.bamboohr.com`; a pasted URL or host is reduced to it."""
    value = str(credentials.get("company_domain", "")).strip().lower()
    value = re.sub(r"^https?://", "", value).split("/", 1)[0]
    value = value.removesuffix(".bamboohr.com")
    if not COMPANY_DOMAIN_RE.match(value):
        raise InvalidCompanyDomain("company domain is not a BambooHR subdomain")
    return value


def _error(response: httpx.Response) -> tuple[str, str]:
    message = response.headers.get("x-bamboohr-error-message") or response.headers.get("x-bamboohr-error-messsage")
    return f"HTTP_{response.status_code}", message or response.reason_phrase


@register
class BambooHRProvider(Provider):
    id = "bamboohr"
    label = "BambooHR"
    category = Category.HRIS
    auth_type = AuthType.API_KEY
    credential_fields = (
        CredentialField(
            "company_domain",
            "Company domain",
            secret=False,
            help_text="The part before .bamboohr.com in the address you sign in at, e.g. acme.",
        ),
        CredentialField(
            "api_key",
            "API key",
            secret=True,
            help_text="BambooHR: your name (top right) > API Keys > Add New Key.",
        ),
    )
    models = (
        DataModel(
            "hris_employees",
            "Employees",
            permission="BambooHR access level: view employee records",
            fields={
                "first_name": "BambooHR field access: First Name (view)",
                "last_name": "BambooHR field access: Last Name (view)",
                "email": "BambooHR field access: Work Email (view)",
                "department": "BambooHR field access: Department (view)",
                "salary": "BambooHR field access: Compensation > Pay Rate (view)",
            },
        ),
        DataModel(
            "hris_absences",
            "Absences",
            permission="BambooHR access level: Time Off (view requests)",
            fields={
                "employee_id": "BambooHR access level: Time Off (view requests)",
                "start_date": "BambooHR access level: Time Off (view requests)",
                "end_date": "BambooHR access level: Time Off (view requests)",
            },
        ),
    )

    passthrough_apis = {
        "v1": "BambooHR's REST API v1, with the API key as Basic authentication; "
        "base URL {BAMBOOHR_BASE_URL}/{company domain}/v1 (https://api.bamboohr.com/api/gateway.php/{subdomain}/v1)",
    }

    def passthrough_target(self, api: str, credentials: dict[str, Any]) -> PassthroughTarget:
        try:
            url = f"{base_url()}/{company_domain(credentials)}/v1"
        except InvalidCompanyDomain as exc:
            raise ProviderAuthFailed("The company domain is not a BambooHR subdomain") from exc
        return PassthroughTarget(url, auth_headers(_auth(credentials), url))

    def check_auth(self, credentials: dict[str, Any]) -> AuthResult:
        """`GET /v1/meta/fields`: read-only metadata that needs no special permission.

        So a valid key answers 200 whatever its user's access level, and 401 means the key was
        refused. A 403 (documented as a key whose user lacks a privilege) still proves the key
        authenticated: the check is OK and the model that needs the privilege raises
        `ModelPermissionDenied` when fetched.
        """
        try:
            url = self._url(credentials, "meta/fields")
        except InvalidCompanyDomain:
            return AuthResult(
                Outcome.AUTH_FAILED,
                error_code="INVALID_COMPANY_DOMAIN",
                message="The company domain is not a BambooHR subdomain",
            )
        result = check_request(self.label, _error, method="GET", url=url, auth=_auth(credentials))
        if result.outcome is Outcome.OK:
            domain = company_domain(credentials)
            result.account = UpstreamAccount(domain, f"{domain}.bamboohr.com")
        return result

    def fetch_pages(
        self,
        model: str,
        credentials: dict[str, Any],
        fields: list[str],
        since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """One page: the whole answer (no paging, no updated-after filter: see the module docstring).

        Employees: `POST /v1/reports/custom?format=JSON` (request a custom report) with only the
        requested fields. BambooHR recommends it over `GET /v1/employees/directory` for
        integrations: the directory can be disabled per company and lacks compensation fields.
        Absences: `GET /v1/time_off/requests?start=&end=&status=approved`.
        """
        spec = self.model_spec(model)
        try:
            if model == "hris_employees":
                names = ["id", *(EMPLOYEE_FIELDS[f] for f in fields if f in EMPLOYEE_FIELDS)]
                url = self._url(credentials, "reports/custom")
                request: dict[str, Any] = {
                    "method": "POST",
                    "params": {"format": "JSON", "onlyCurrent": "true"},
                    "json": {"fields": names},
                }
            else:
                start, end = absence_window()
                url = self._url(credentials, "time_off/requests")
                request = {
                    "method": "GET",
                    "params": {"start": start.isoformat(), "end": end.isoformat(), "status": "approved"},
                }
        except InvalidCompanyDomain as exc:
            raise ProviderAuthFailed("The company domain is not a BambooHR subdomain") from exc
        body = fetch_json(self.label, model, spec.permission, url=url, auth=_auth(credentials), **request)
        if model == "hris_employees":
            records = body.get("employees") if isinstance(body, dict) else None
            rows = [_employee(r) for r in records or [] if isinstance(r, dict)]
        else:
            records = body if isinstance(body, list) else []
            rows = [_absence(r) for r in records if isinstance(r, dict)]
        yield Page(select_rows(rows, fields))

    def _url(self, credentials: dict[str, Any], path: str) -> str:
        return f"{base_url()}/{company_domain(credentials)}/v1/{path}"


def _auth(credentials: dict[str, Any]) -> httpx.BasicAuth:
    return httpx.BasicAuth(str(credentials.get("api_key", "")), "x")


def _employee(record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": str(record["id"]) if record.get("id") is not None else ""}
    for field, name in EMPLOYEE_FIELDS.items():
        if name in record:
            row[field] = record[name]
    return row


def _absence(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(record["id"]) if record.get("id") is not None else "",
        "employee_id": str(record["employeeId"]) if record.get("employeeId") is not None else None,
        "start_date": record.get("start"),
        "end_date": record.get("end"),
    }
