"""`sandbox`: the fake HR system Relink serves itself under /sandbox/, reached over real HTTP.

It authenticates with an API key sent as a bearer token, exactly like a real HR system would.
The auth check, `GET /sandbox/api/v1/me`, also names the company the key belongs to: its
`company_id` is the upstream account (`AuthResult.account`), its name the label.

Lists page like Personio's, the tool Sandbox HR stands for: `limit` (at most 100, 50 when absent)
and `offset` (the first record to return), and a `metadata` block with `total_elements`; an
`updated_after` filter (ISO 8601) returns only records changed after it, so both models are
`delta_models`.

Passthrough (`sandbox/v1`): requests go to the sandbox API's base (`sandbox_api_url`) with the
API key as bearer token, as the adapter's own calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import httpx
from django.conf import settings

from ..lib.http import RequestNotEncodable, provider_client
from .base import (
    AuthResult,
    AuthType,
    Category,
    CredentialField,
    DataModel,
    ModelPermissionDenied,
    Outcome,
    Page,
    PassthroughTarget,
    Provider,
    ProviderAuthFailed,
    ProviderUnavailable,
    UpstreamAccount,
    register,
)
from .rest import json_body, not_encodable, not_encodable_error, select

PAGE_LIMIT = 100  # the API's maximum page size
MAX_PAGES = 10_000  # a guard against a list that never ends (1,000,000 records)
MODEL_PATHS = {"hris_employees": "employees", "hris_absences": "absences"}


def sandbox_api_url(path: str) -> str:
    return f"{settings.BASE_URL}/sandbox/api/v1/{path.lstrip('/')}"


def classify(response: httpx.Response) -> Outcome:
    if response.status_code == 401:
        return Outcome.AUTH_FAILED
    if response.is_success:
        return Outcome.OK
    return Outcome.UNAVAILABLE


@register
class SandboxProvider(Provider):
    id = "sandbox"
    label = "Sandbox HR"
    category = Category.HRIS
    auth_type = AuthType.API_KEY
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("api_key", "API key", secret=True, help_text="Create one in your Sandbox HR admin."),
    )

    models = (
        DataModel(
            "hris_employees",
            "Employees",
            permission="employees:read",
            fields={
                "first_name": "employees:read",
                "last_name": "employees:read",
                "email": "employees:read",
                "department": "employees:read",
                "salary": "compensation:read",
            },
        ),
        DataModel(
            "hris_absences",
            "Absences",
            permission="absences:read",
            fields={"employee_id": "absences:read", "start_date": "absences:read", "end_date": "absences:read"},
        ),
    )
    delta_models = frozenset(MODEL_PATHS)

    @classmethod
    def is_available(cls) -> bool:
        return settings.SANDBOX_ENABLED  # Relink serves Sandbox HR itself, under /sandbox/

    passthrough_apis = {
        "v1": "Sandbox HR's JSON API, with the integration's bearer credentials; base URL {BASE_URL}/sandbox/api/v1",
    }

    def _auth_headers(self, credentials: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials.get('api_key', '')}"}

    def _get(self, path: str, credentials: dict[str, Any], params: dict | None = None) -> httpx.Response:
        with provider_client() as client:
            return client.get(sandbox_api_url(path), headers=self._auth_headers(credentials), params=params)

    def passthrough_target(self, api: str, credentials: dict[str, Any]) -> PassthroughTarget:
        return PassthroughTarget(sandbox_api_url("").rstrip("/"), self._auth_headers(credentials))

    def check_auth(self, credentials: dict[str, Any]) -> AuthResult:
        try:
            response = self._get("me", credentials)
        except httpx.TimeoutException:
            return AuthResult(Outcome.UNAVAILABLE, error_code="TIMEOUT", message="Sandbox HR did not answer in time")
        except httpx.TransportError as exc:
            return AuthResult(Outcome.UNAVAILABLE, error_code="CONNECTION_ERROR", message=str(exc)[:500])
        except RequestNotEncodable:
            return not_encodable(self.label)
        outcome = classify(response)
        if outcome is Outcome.OK:
            return AuthResult(outcome, http_status=response.status_code, account=_account(response))
        error = _error_body(response)
        return AuthResult(
            outcome,
            http_status=response.status_code,
            error_code=error.get("code", f"HTTP_{response.status_code}"),
            message=error.get("message", response.reason_phrase),
        )

    def fetch_pages(
        self,
        model: str,
        credentials: dict[str, Any],
        fields: list[str],
        since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """`GET /sandbox/api/v1/employees` (or `absences`), `limit`/`offset` until a short page or
        `metadata.total_elements`; with `since`, `updated_after` as well."""
        path = MODEL_PATHS[model]
        limit = min(page_size or PAGE_LIMIT, PAGE_LIMIT)
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["updated_after"] = since.isoformat()
        offset = 0
        for _ in range(MAX_PAGES):
            body = self._read(model, path, credentials, {**params, "offset": offset})
            data = body.get("data") if isinstance(body, dict) else None
            rows = [row for row in data or [] if isinstance(row, dict)]
            yield Page([select(row, fields) for row in rows if row.get("id")])
            offset += len(rows)
            total = ((body.get("metadata") or {}) if isinstance(body, dict) else {}).get("total_elements")
            if len(rows) < limit or (isinstance(total, int) and offset >= total):
                return
        # Never taken for a complete read: what was not read would be marked deleted.
        raise ProviderUnavailable(f"Sandbox HR was still paging {path} after {MAX_PAGES} pages")

    def _read(self, model: str, path: str, credentials: dict[str, Any], params: dict[str, Any]) -> Any:
        try:
            response = self._get(path, credentials, params)
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"Sandbox HR unreachable: {exc}") from exc
        except RequestNotEncodable:
            raise not_encodable_error(self.label) from None
        if response.status_code == 401:
            raise ProviderAuthFailed("Sandbox HR rejected the API key", 401)
        if response.status_code == 403:
            permission = _error_body(response).get("required_permission", self.model_spec(model).permission)
            raise ModelPermissionDenied(model, permission)
        if not response.is_success:
            raise ProviderUnavailable(f"Sandbox HR answered {response.status_code}", response.status_code)
        body = json_body(response)
        if body is None:
            raise ProviderUnavailable("Sandbox HR answered without a JSON body", response.status_code)
        return body


def _error_body(response: httpx.Response) -> dict[str, Any]:
    body = json_body(response)
    return body.get("error", {}) if isinstance(body, dict) else {}


def _account(response: httpx.Response) -> UpstreamAccount | None:
    """The company `/me` names: `{"data": {"company_id": ..., "company": <name>, ...}}`."""
    body = json_body(response)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not data.get("company_id"):
        return None
    return UpstreamAccount(str(data["company_id"]), str(data.get("company") or ""))
