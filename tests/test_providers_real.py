"""The Personio, BambooHR and HiBob adapters against local fake servers answering like the
providers' documented APIs: auth-check outcomes, exact outbound requests, record mapping and
the errors a fetch raises. No real network."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from connect_flow import links
from integrations.models import ScopeConfig
from integrations.providers import REGISTRY, Category, Outcome, get_provider
from integrations.providers.base import (
    PROBE_PAGE_SIZE,
    ModelPermissionDenied,
    ProviderAuthFailed,
    ProviderUnavailable,
)
from integrations.providers.rest import absence_window

from .fake_hr import FakeHRServer, Route, closed_port_url, fake_hr_fixture, load_fixture  # noqa: F401

ALL_FIELDS = {
    "hris_employees": ["first_name", "last_name", "email", "department", "salary"],
    "hris_absences": ["employee_id", "start_date", "end_date"],
}
PERSONIO_TOKEN = load_fixture("personio", "auth")["data"]["token"]


@dataclass
class Tool:
    id: str
    setting: str
    base_path: str
    credentials: dict[str, str]
    check: tuple[str, str]
    models: dict[str, tuple[str, str, str]]  # model -> (method, path, fixture)
    check_body: Any = None
    secret_fields: set[str] = field(default_factory=set)

    def path(self, model: str) -> str:
        return self.models[model][1]

    def serve_defaults(self, fake: FakeHRServer) -> None:
        if self.id == "personio":
            fake.route("POST", "/v1/auth", json=load_fixture("personio", "auth"))
        fake.route(*self.check, json=self.check_body)
        for method, path, fixture in self.models.values():
            fake.route(method, path, json=load_fixture(self.id, fixture))


TOOLS = {
    "personio": Tool(
        id="personio",
        setting="PERSONIO_BASE_URL",
        base_path="/v1",
        credentials={"client_id": "papi-client-123", "client_secret": "personio-secret-value"},
        check=("GET", "/v1/company/employees"),
        check_body=load_fixture("personio", "employees"),
        models={
            "hris_employees": ("GET", "/v1/company/employees", "employees"),
            "hris_absences": ("GET", "/v1/company/time-offs", "time_offs"),
        },
        secret_fields={"client_secret"},
    ),
    "bamboohr": Tool(
        id="bamboohr",
        setting="BAMBOOHR_BASE_URL",
        base_path="/api/gateway.php",
        credentials={"company_domain": "acme", "api_key": "bamboo-secret-key"},
        check=("GET", "/api/gateway.php/acme/v1/meta/fields"),
        check_body=load_fixture("bamboohr", "meta_fields"),
        models={
            "hris_employees": ("POST", "/api/gateway.php/acme/v1/reports/custom", "custom_report"),
            "hris_absences": ("GET", "/api/gateway.php/acme/v1/time_off/requests", "time_off_requests"),
        },
        secret_fields={"api_key"},
    ),
    "hibob": Tool(
        id="hibob",
        setting="HIBOB_BASE_URL",
        base_path="/v1",
        credentials={"service_user_id": "SERVICE-42", "service_user_token": "bob-secret-token"},
        check=("GET", "/v1/company/people/fields"),
        check_body=load_fixture("hibob", "people_fields"),
        models={
            "hris_employees": ("POST", "/v1/people/search", "people_search"),
            "hris_absences": ("GET", "/v1/timeoff/whosout", "whosout"),
        },
        secret_fields={"service_user_token"},
    ),
}

EXPECTED_RECORDS = {
    ("personio", "hris_employees"): [
        {
            "id": "1",
            "first_name": "Alexander",
            "last_name": "Bergmann",
            "email": "alexander.bergmann@demo.email",
            "department": "Customer Support",
            "salary": 3000,
        },
        # Fix salary is not returned for this employee: absent, not null.
        {
            "id": "2",
            "first_name": "Michael",
            "last_name": "Miller",
            "email": "michael.miller@demo.email",
            "department": None,
        },
    ],
    ("personio", "hris_absences"): [
        # The pending time-off is left out; only approved periods are absences.
        {"id": "12345", "employee_id": "4567", "start_date": "2017-12-27", "end_date": "2017-12-29"},
    ],
    ("bamboohr", "hris_employees"): [
        {
            "id": "123",
            "first_name": "John",
            "last_name": "Doe",
            "email": "john.doe@acme.example",
            "department": "Customer Success",
            "salary": "62000.00 USD",
        },
        {
            "id": "124",
            "first_name": "Jane",
            "last_name": "Roe",
            "email": None,
            "department": "Engineering",
            "salary": "85000.00 USD",
        },
    ],
    ("bamboohr", "hris_absences"): [
        {"id": "1", "employee_id": "123", "start_date": "2024-09-02", "end_date": "2024-09-06"},
        {"id": "2", "employee_id": "124", "start_date": "2024-10-10", "end_date": "2024-10-10"},
    ],
    ("hibob", "hris_employees"): [
        {
            "id": "3332883884017713238",
            "first_name": "Ava",
            "last_name": "Bergström",
            "email": "ava.bergstrom@acme.example",
            "department": "Product",
            "salary": "72,000 EUR",
        },
        # No Payroll permission for this one: salary absent.
        {
            "id": "3332883894235038486",
            "first_name": "Noah",
            "last_name": "Levi",
            "email": "noah.levi@acme.example",
            "department": "Engineering",
        },
    ],
    ("hibob", "hris_absences"): [
        {"id": "4821", "employee_id": "3332883884017713238", "start_date": "2024-08-05", "end_date": "2024-08-16"},
        {"id": "4830", "employee_id": "3332883894235038486", "start_date": "2024-09-12", "end_date": "2024-09-12"},
    ],
}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(params=sorted(TOOLS))
def tool(request) -> Tool:
    return TOOLS[request.param]


def serve(tool: Tool, fake: FakeHRServer, settings) -> FakeHRServer:
    """The fake provider with documented happy-path answers, and the adapter pointed at it."""
    setattr(settings, tool.setting, fake.url + tool.base_path)
    tool.serve_defaults(fake)
    return fake


@pytest.fixture
def server(tool: Tool, fake_hr: FakeHRServer, settings) -> FakeHRServer:
    return serve(tool, fake_hr, settings)


@pytest.fixture
def personio(fake_hr: FakeHRServer, settings) -> FakeHRServer:
    return serve(TOOLS["personio"], fake_hr, settings)


@pytest.fixture
def bamboohr(fake_hr: FakeHRServer, settings) -> FakeHRServer:
    return serve(TOOLS["bamboohr"], fake_hr, settings)


@pytest.fixture
def hibob(fake_hr: FakeHRServer, settings) -> FakeHRServer:
    return serve(TOOLS["hibob"], fake_hr, settings)


def assert_no_secret(tool: Tool, *texts: str) -> None:
    for name in tool.secret_fields:
        for text in texts:
            assert tool.credentials[name] not in text


# --- Registry -------------------------------------------------------------------------------


def test_the_registry_holds_the_three_tools_with_their_secret_fields():
    expected = {
        "personio": ({"client_id"}, {"client_secret"}),
        "bamboohr": ({"company_domain"}, {"api_key"}),
        "hibob": ({"service_user_id"}, {"service_user_token"}),
    }
    for tool_id, (public, secret) in expected.items():
        provider = REGISTRY[tool_id]
        assert get_provider(tool_id) is provider
        assert provider.label and provider.category is Category.HRIS
        assert {f.name for f in provider.credential_fields} == public | secret
        assert provider.secret_field_names() == secret
        for model, fields in ALL_FIELDS.items():
            spec = provider.get_model(model)
            assert spec is not None and spec.permission
            assert set(spec.fields) == set(fields) and all(spec.fields.values())


# --- check_auth ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (401, Outcome.AUTH_FAILED),
        (403, Outcome.OK),
        (429, Outcome.UNAVAILABLE),
        (500, Outcome.UNAVAILABLE),
        (503, Outcome.UNAVAILABLE),
    ],
)
def test_check_auth_classifies_the_check_endpoint_answer(tool, server, status, outcome):
    body = load_fixture("hibob", "unauthorized") if tool.id == "hibob" and status == 401 else {"error": "nope"}
    server.route(*tool.check, status=status, json=body if status != 200 else tool.check_body)

    result = get_provider(tool.id).check_auth(tool.credentials)

    assert result.outcome is outcome
    assert result.http_status == status
    if status == 401:
        assert result.error_code and result.message
        assert_no_secret(tool, result.error_code, result.message)


def test_check_auth_reads_the_provider_error_detail_on_401(tool, server):
    detail = {
        "personio": ({"success": False, "error": {"code": 401, "message": "Unauthorized"}}, {}, "Unauthorized"),
        "bamboohr": (None, {"X-BambooHR-Error-Message": "Invalid API key"}, "Invalid API key"),
        "hibob": (load_fixture("hibob", "unauthorized"), {}, "The request could not be authenticated"),
    }
    body, headers, message = detail[tool.id]
    server.route(*tool.check, status=401, json=body, headers=headers)

    result = get_provider(tool.id).check_auth(tool.credentials)

    assert result.outcome is Outcome.AUTH_FAILED
    assert message in result.message


def test_check_auth_times_out_as_unavailable(tool, server, settings):
    settings.PROVIDER_HTTP_TIMEOUT = 0.2
    server.route(*tool.check, json=tool.check_body, delay=1.0)

    started = time.monotonic()
    result = get_provider(tool.id).check_auth(tool.credentials)

    assert time.monotonic() - started < 0.9
    assert result.outcome is Outcome.UNAVAILABLE
    assert result.error_code == "TIMEOUT"


def test_check_auth_connection_refused_is_unavailable(tool, settings):
    setattr(settings, tool.setting, closed_port_url() + tool.base_path)

    result = get_provider(tool.id).check_auth(tool.credentials)

    assert result.outcome is Outcome.UNAVAILABLE
    assert result.error_code == "CONNECTION_ERROR"
    assert_no_secret(tool, result.message)


def test_personio_check_exchanges_the_credentials_then_calls_the_cheapest_endpoint(personio):
    tool = TOOLS["personio"]
    assert get_provider("personio").check_auth(tool.credentials).outcome is Outcome.OK

    auth, check = personio.requests
    assert (auth.method, auth.path) == ("POST", "/v1/auth")
    assert auth.headers["content-type"] == "application/json"
    assert auth.json() == {"client_id": "papi-client-123", "client_secret": "personio-secret-value"}
    assert auth.query == {}  # the secret never travels in the URL
    assert (check.method, check.path) == ("GET", "/v1/company/employees")
    assert check.query == {"limit": ["1"], "offset": ["0"]}
    assert check.headers["authorization"] == f"Bearer {PERSONIO_TOKEN}"


@pytest.mark.parametrize("status", [401, 403])
def test_personio_refused_token_exchange_is_auth_failed(personio, status):
    tool = TOOLS["personio"]
    personio.route("POST", "/v1/auth", status=status, json=load_fixture("personio", "auth_invalid"))

    result = get_provider("personio").check_auth(tool.credentials)

    assert result.outcome is Outcome.AUTH_FAILED
    assert (result.http_status, result.error_code) == (status, "INVALID_CREDENTIALS")
    assert "Wrong credentials" in result.message
    assert_no_secret(tool, result.message)
    assert [r.path for r in personio.requests] == ["/v1/auth"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_personio_token_exchange_outage_is_unavailable(personio, status):
    error = {"success": False, "error": {"code": status, "message": "Something went wrong"}}
    personio.route("POST", "/v1/auth", status=status, json=error)

    result = get_provider("personio").check_auth(TOOLS["personio"].credentials)

    assert (result.outcome, result.http_status) == (Outcome.UNAVAILABLE, status)


def test_bamboohr_check_sends_the_key_as_basic_user_with_x_password(bamboohr):
    tool = TOOLS["bamboohr"]
    assert get_provider("bamboohr").check_auth(tool.credentials).outcome is Outcome.OK

    (request,) = bamboohr.requests
    assert (request.method, request.path) == ("GET", "/api/gateway.php/acme/v1/meta/fields")
    assert request.headers["authorization"] == basic("bamboo-secret-key", "x")
    assert request.headers["accept"] == "application/json"


@pytest.mark.parametrize("domain", ["Acme", "acme.bamboohr.com", "https://acme.bamboohr.com/home"])
def test_bamboohr_accepts_a_pasted_company_address(bamboohr, domain):
    credentials = {**TOOLS["bamboohr"].credentials, "company_domain": domain}

    assert get_provider("bamboohr").check_auth(credentials).outcome is Outcome.OK
    assert bamboohr.requests[0].path == "/api/gateway.php/acme/v1/meta/fields"


@pytest.mark.parametrize("domain", ["", "../acme", "acme corp", "acme_corp"])
def test_bamboohr_rejects_an_invalid_company_domain_without_calling(bamboohr, domain):
    credentials = {**TOOLS["bamboohr"].credentials, "company_domain": domain}

    result = get_provider("bamboohr").check_auth(credentials)

    assert (result.outcome, result.error_code) == (Outcome.AUTH_FAILED, "INVALID_COMPANY_DOMAIN")
    with pytest.raises(ProviderAuthFailed):
        get_provider("bamboohr").fetch("hris_employees", credentials, ["first_name"])
    assert bamboohr.requests == []


def test_hibob_check_sends_the_service_user_as_basic_auth(hibob):
    tool = TOOLS["hibob"]
    assert get_provider("hibob").check_auth(tool.credentials).outcome is Outcome.OK

    (request,) = hibob.requests
    assert (request.method, request.path) == ("GET", "/v1/company/people/fields")
    assert request.headers["authorization"] == basic("SERVICE-42", "bob-secret-token")


# --- fetch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(ALL_FIELDS))
def test_fetch_maps_provider_records_to_relink_fields(tool, server, model):
    rows = get_provider(tool.id).fetch(model, tool.credentials, ALL_FIELDS[model])

    assert rows == EXPECTED_RECORDS[(tool.id, model)]


def test_fetch_returns_only_the_requested_fields_and_asks_only_for_them(tool, server):
    rows = get_provider(tool.id).fetch("hris_employees", tool.credentials, ["first_name"])

    assert rows and all(set(row) == {"id", "first_name"} for row in rows)
    (request,) = server.requests_to(tool.path("hris_employees"))
    if tool.id == "personio":
        assert request.query == {"attributes[]": ["first_name"], "limit": ["100"], "offset": ["0"]}
        assert request.headers["authorization"] == f"Bearer {PERSONIO_TOKEN}"
    elif tool.id == "bamboohr":
        assert request.query == {"format": ["JSON"], "onlyCurrent": ["true"]}
        assert request.headers["content-type"] == "application/json"
        assert request.json() == {"fields": ["id", "firstName"]}
        assert request.headers["authorization"] == basic("bamboo-secret-key", "x")
    else:
        assert request.json() == {
            "fields": ["root.id", "root.firstName"],
            "showInactive": False,
            "humanReadable": "REPLACE",
        }
        assert request.headers["authorization"] == basic("SERVICE-42", "bob-secret-token")
    assert request.headers["accept"] == "application/json"


def test_fetch_absences_asks_for_the_absence_window(tool, server):
    get_provider(tool.id).fetch("hris_absences", tool.credentials, ALL_FIELDS["hris_absences"])

    start, end = (d.isoformat() for d in absence_window())
    (request,) = server.requests_to(tool.path("hris_absences"))
    expected = {
        "personio": {"start_date": [start], "end_date": [end], "limit": ["200"], "offset": ["0"]},
        "bamboohr": {"start": [start], "end": [end], "status": ["approved"]},
        "hibob": {"from": [start], "to": [end]},
    }[tool.id]
    assert request.query == expected


def test_a_403_on_one_model_names_that_model_and_leaves_the_other_readable(tool, server):
    method, path, _ = tool.models["hris_employees"]
    server.route(method, path, status=403, json={"error": "forbidden"})
    provider = get_provider(tool.id)

    with pytest.raises(ModelPermissionDenied) as excinfo:
        provider.fetch("hris_employees", tool.credentials, ALL_FIELDS["hris_employees"])

    assert excinfo.value.model == "hris_employees"
    assert excinfo.value.permission == provider.get_model("hris_employees").permission
    assert provider.fetch("hris_absences", tool.credentials, ALL_FIELDS["hris_absences"])


@pytest.mark.parametrize("model", sorted(ALL_FIELDS))
def test_a_401_on_fetch_raises_provider_auth_failed(tool, server, model):
    method, path, _ = tool.models[model]
    server.route(method, path, status=401, json={"error": "unauthorized"})

    with pytest.raises(ProviderAuthFailed) as excinfo:
        get_provider(tool.id).fetch(model, tool.credentials, ALL_FIELDS[model])

    assert excinfo.value.http_status == 401
    assert_no_secret(tool, str(excinfo.value))


def test_personio_fetch_with_a_refused_token_exchange_raises_auth_failed(personio):
    personio.route("POST", "/v1/auth", status=401, json=load_fixture("personio", "auth_invalid"))

    with pytest.raises(ProviderAuthFailed):
        get_provider("personio").fetch("hris_employees", TOOLS["personio"].credentials, ["first_name"])


@pytest.mark.parametrize("status", [429, 500, 503])
def test_provider_outages_on_fetch_raise_unavailable(tool, server, status):
    method, path, _ = tool.models["hris_employees"]
    server.route(method, path, status=status, json={"error": "busy"})

    with pytest.raises(ProviderUnavailable) as excinfo:
        get_provider(tool.id).fetch("hris_employees", tool.credentials, ["first_name"])

    assert excinfo.value.http_status == status


def test_a_fetch_timeout_raises_unavailable(tool, server, settings):
    settings.PROVIDER_HTTP_TIMEOUT = 0.2
    method, path, fixture = tool.models["hris_absences"]
    server.route(method, path, json=load_fixture(tool.id, fixture), delay=1.0)

    with pytest.raises(ProviderUnavailable):
        get_provider(tool.id).fetch("hris_absences", tool.credentials, ALL_FIELDS["hris_absences"])


def test_personio_pages_through_employees_and_follows_the_rotated_token(personio):
    first_page = {
        "success": True,
        "data": [
            {"type": "Employee", "attributes": {"id": {"value": n}, "first_name": {"value": f"E{n}"}}}
            for n in range(1, 101)
        ],
    }
    personio.sequence(
        "GET",
        "/v1/company/employees",
        Route(json=first_page, headers={"Authorization": "Bearer papi-rotated-token"}),
        Route(json=load_fixture("personio", "employees")),
    )

    rows = get_provider("personio").fetch("hris_employees", TOOLS["personio"].credentials, ["first_name"])

    assert len(rows) == 102
    first, second = personio.requests_to("/v1/company/employees")
    assert (first.query["offset"], second.query["offset"]) == (["0"], ["100"])
    assert first.query["limit"] == second.query["limit"] == ["100"]  # Personio's maximum since 2025
    assert first.headers["authorization"] == f"Bearer {PERSONIO_TOKEN}"
    assert second.headers["authorization"] == "Bearer papi-rotated-token"


def _personio_employee(n: int) -> dict[str, Any]:
    return {"type": "Employee", "attributes": {"id": {"value": n}, "first_name": {"value": f"E{n}"}}}


def _personio_time_off(n: int) -> dict[str, Any]:
    return {
        "type": "TimeOffPeriod",
        "attributes": {
            "id": n,
            "status": "approved",
            "start_date": "2024-05-02T00:00:00+02:00",
            "end_date": "2024-05-03T00:00:00+02:00",
            "employee": {"type": "Employee", "attributes": {"id": {"value": 7}}},
        },
    }


def test_personio_yields_a_page_per_request_by_record_offset_for_employees_and_page_number_for_time_offs(personio):
    """Employees' `offset` is the first record; time-offs' is the page number (Personio's docs)."""
    personio.pages("GET", "/v1/company/employees", [_personio_employee(n) for n in range(1, 251)], max_limit=100)
    personio.pages("GET", "/v1/company/time-offs", [_personio_time_off(n) for n in range(1, 451)], numbered=True)
    personio_provider = get_provider("personio")

    pages = list(personio_provider.fetch_pages("hris_employees", TOOLS["personio"].credentials, ["first_name"]))
    assert [len(p.rows) for p in pages] == [100, 100, 50]
    assert [row["id"] for p in pages for row in p.rows] == [str(n) for n in range(1, 251)]
    assert [r.query["offset"] for r in personio.requests_to("/v1/company/employees")] == [["0"], ["100"], ["200"]]

    pages = list(
        personio_provider.fetch_pages("hris_absences", TOOLS["personio"].credentials, ALL_FIELDS["hris_absences"])
    )
    assert [len(p.rows) for p in pages] == [200, 200, 50]
    assert [r.query["offset"] for r in personio.requests_to("/v1/company/time-offs")] == [["0"], ["1"], ["2"]]


def test_personio_stops_at_the_last_page_metadata_names(personio):
    """Exactly two full pages: `metadata.total_pages` ends the read without asking for an empty third."""
    personio.pages("GET", "/v1/company/employees", [_personio_employee(n) for n in range(1, 201)], max_limit=100)

    rows = get_provider("personio").fetch("hris_employees", TOOLS["personio"].credentials, ["first_name"])

    assert len(rows) == 200
    assert len(personio.requests_to("/v1/company/employees")) == 2


def test_personio_reads_changes_with_updated_since_and_updated_from(personio):
    since = datetime(2024, 3, 5, 14, 30, 5, tzinfo=UTC)
    provider = get_provider("personio")

    list(provider.fetch_pages("hris_employees", TOOLS["personio"].credentials, ["first_name"], since=since))
    list(provider.fetch_pages("hris_absences", TOOLS["personio"].credentials, ["start_date"], since=since))

    (employees,) = personio.requests_to("/v1/company/employees")
    assert employees.query["updated_since"] == ["2024-03-05T14:30:05"]
    (time_offs,) = personio.requests_to("/v1/company/time-offs")
    assert time_offs.query["updated_from"] == ["2024-03-04"]  # a date, inclusive: the day before
    assert provider.delta_models == {"hris_employees", "hris_absences"}


@pytest.mark.parametrize("tool_id", ["bamboohr", "hibob"])
def test_tools_without_documented_paging_or_change_filter_read_everything_as_one_page(tool_id, fake_hr, settings):
    tool = TOOLS[tool_id]
    serve(tool, fake_hr, settings)
    provider = get_provider(tool_id)
    since = datetime(2024, 3, 5, tzinfo=UTC)

    for model in ALL_FIELDS:
        pages = list(provider.fetch_pages(model, tool.credentials, ALL_FIELDS[model], since=since))
        assert [p.rows for p in pages] == [EXPECTED_RECORDS[(tool_id, model)]]
        (request,) = fake_hr.requests_to(tool.path(model))  # one request, no paging parameters, no filter
        assert not {"limit", "offset", "cursor", "page", "since", "updated_after"} & set(request.query)
    assert provider.delta_models == frozenset()


def test_the_probe_reads_one_small_page_of_each_model_whatever_the_company_size(personio):
    """What the hosted connect page runs when the customer submits credentials: the auth check,
    then one page of PROBE_PAGE_SIZE records per model in scope — never the whole company."""
    personio.pages("GET", "/v1/company/employees", [_personio_employee(n) for n in range(1, 5001)], max_limit=100)
    personio.pages("GET", "/v1/company/time-offs", [_personio_time_off(n) for n in range(1, 3001)], numbered=True)
    scope = ScopeConfig(
        spec={
            "hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED"}},
            "hris_absences": {"availability": "ENABLED", "fields": {"start_date": "ENABLED"}},
        }
    )

    verification = links.verify_credentials(get_provider("personio"), TOOLS["personio"].credentials, scope, [])

    assert verification.ok, verification
    check, probe = personio.requests_to("/v1/company/employees")
    assert (check.query["limit"], check.query["offset"]) == (["1"], ["0"])  # the auth check
    assert (probe.query["limit"], probe.query["offset"]) == ([str(PROBE_PAGE_SIZE)], ["0"])
    (time_offs,) = personio.requests_to("/v1/company/time-offs")
    assert (time_offs.query["limit"], time_offs.query["offset"]) == ([str(PROBE_PAGE_SIZE)], ["0"])
