"""Fuzz the /v1 API against the OpenAPI document it serves (schemathesis, through the WSGI app).

The schema is built at collection time by the same code that serves GET /v1/openapi.json (no
database then, so not through the view); a test checks that the served document is identical.
(schemathesis' lazy `from_fixture` loader does not work with pytest 9: it uses `Node._nodeid`.)

Bounded so the whole file stays well under a minute: few examples per operation. Half of the
generated cases are pointed at real objects of the key's environment (an integration, a scope
config, an activation token) so the fuzzer also reaches the success paths, not only 404s.
"""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from api.openapi import ACTIVATION_TOKEN_NOTE, UNIFIED_OPERATIONS, reference_document, unified_document
from api.views import openapi as openapi_view_handler
from config.wsgi import application
from connect_flow import links
from integrations.models import ApiKey, Integration
from integrations.providers import REGISTRY
from integrations.webhook_schemas import relink_webhooks

from . import factories
from .fake_hr import fake_hr_fixture  # noqa: F401

FUZZ_INTEGRATION_ID = "sandbox:FuzzFuzzFuzzFuzzFuzzFuzz"


@pytest.fixture
def wsgi_requests_keep_the_test_connection():
    """Like Django's test client: the WSGI handler must not close the test's database connection
    at the end of each request (it would on PostgreSQL, ending the test transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api(db, settings, monkeypatch, wsgi_requests_keep_the_test_connection, fake_hr):
    """The key and the real objects the fuzzer may aim at. The fuzz integration's tool (Sandbox
    HR) is a fake server for the passthrough: any request forwarded there gets an answer."""
    settings.BASE_URL = fake_hr.url
    settings.API_RATE_LIMIT_PER_MINUTE = 1_000_000
    monkeypatch.setattr("integrations.syncs._enqueue", lambda sync_ids, **kwargs: None)
    cache.clear()
    environment = factories.EnvironmentFactory(slug="fuzz", name="Fuzz")
    scope_config = factories.ScopeConfigFactory(environment=environment)
    created = links.create_connect_link(environment, end_user_email="hr@fuzz.test", end_user_organization_name="Fuzz")
    token = links.complete(
        created.link.pk, credentials={"api_key": "x"}, opted_out_fields=[], tool="sandbox"
    ).activation_token

    def integration_id() -> str:
        """The fuzz integration, synced once, recreated if a fuzzed DELETE removed it."""
        if not Integration.objects.filter(pk=FUZZ_INTEGRATION_ID).exists():
            integration = factories.IntegrationFactory(
                id=FUZZ_INTEGRATION_ID,
                environment=environment,
                scope_config=scope_config,
                last_sync_at=timezone.now(),
                credentials={"api_key": "sbx_fuzz-key-1234567890"},
            )
            for n in range(3):
                factories.SyncedRecordFactory(
                    integration=integration, remote_id=str(n), data={"id": str(n), "first_name": f"Fuzz{n}"}
                )
        return FUZZ_INTEGRATION_ID

    return {
        "raw_key": ApiKey.create(environment, "Fuzzer")[1],
        "integration_id": integration_id,
        "scope_config_id": scope_config.pk,
        "token": token,
        "turn": itertools.count(),
    }


def served_document() -> dict:
    return json.loads(openapi_view_handler(None).content)


schema = schemathesis.openapi.from_dict(served_document())
schema.app = application


def test_the_fuzzed_schema_is_the_served_one(db, client):
    assert client.get("/v1/openapi.json").json() == served_document()


def _aim_at_real_objects(case, api) -> None:
    if next(api["turn"]) % 2:
        return
    if "integration_id" in (case.path_parameters or {}):
        case.path_parameters["integration_id"] = api["integration_id"]()
    if "token" in (case.path_parameters or {}):
        case.path_parameters["token"] = api["token"]
    if "tool" in (case.path_parameters or {}):
        case.path_parameters.update(tool="sandbox", api="v1")
    if case.headers and "X-Integration-Id" in case.headers:
        case.headers["X-Integration-Id"] = api["integration_id"]()
    if isinstance(case.body, dict) and "scope_config_id" in case.body:
        case.body["scope_config_id"] = api["scope_config_id"]


@schema.parametrize()
@hypothesis_settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_never_answers_with_a_server_error(case, api):
    _aim_at_real_objects(case, api)

    case.call_and_validate(
        headers={"Authorization": f"Bearer {api['raw_key']}"},
        checks=[not_a_server_error, response_schema_conformance],
    )


# --- The served document: the reference's, narrowed to what Relink accepts ----------------------


def test_the_served_schema_is_the_reference_narrowed_where_relink_differs():
    served = served_document()
    reference = reference_document()  # api/openapi.json: the reference's lifecycle-api.openapi.json
    create_link = served["components"]["schemas"]["PostConnectCreateLinkRequestBody"]["properties"]
    (header,) = [p for p in served["paths"]["/force-sync"]["post"]["parameters"] if p["name"] == "X-Integration-Id"]
    enabled_body = served["paths"]["/integrations/{integration_id}/enabled"]["put"]["requestBody"]

    assert create_link["integration_tool"]["enum"] == sorted(REGISTRY)
    assert header["schema"] == {"type": "string", "minLength": 1}
    assert enabled_body["required"] is True
    by_token = served["paths"]["/connect/integration-by-token/{token}"]["get"]
    assert by_token["description"].endswith(ACTIVATION_TOKEN_NOTE) and "10 minutes" in ACTIVATION_TOKEN_NOTE

    # Undone, the document is the reference's, operation for operation.
    restored = copy.deepcopy(served)
    reference_create_link = reference["components"]["schemas"]["PostConnectCreateLinkRequestBody"]["properties"]
    restored["components"]["schemas"]["PostConnectCreateLinkRequestBody"]["properties"]["integration_tool"]["enum"] = (
        reference_create_link["integration_tool"]["enum"]
    )
    for parameter in restored["paths"]["/force-sync"]["post"]["parameters"]:
        parameter["schema"].pop("minLength", None)
    del restored["paths"]["/integrations/{integration_id}/enabled"]["put"]["requestBody"]["required"]
    restored_by_token = restored["paths"]["/connect/integration-by-token/{token}"]["get"]
    restored_by_token["description"] = restored_by_token["description"].removesuffix(ACTIVATION_TOKEN_NOTE)
    # What the second cut adds (compared below) aside.
    for path in UNIFIED_OPERATIONS:
        del restored["paths"][path]
    del restored["webhooks"]
    for kind, components in restored["components"].items():
        for name in set(components) - set(reference["components"].get(kind, {})):
            del components[name]
    del restored["servers"], reference["servers"]
    assert restored == reference
    operations = [(path, method) for path, item in reference["paths"].items() for method in item]
    assert len(operations) == 9


def test_the_served_schema_adds_the_second_cuts_operations_and_webhooks_unchanged():
    served = served_document()
    unified = unified_document()
    own = relink_webhooks()

    for path, methods in UNIFIED_OPERATIONS.items():
        assert set(served["paths"][path]) == set(methods)
        for method in methods:
            assert served["paths"][path][method] == unified["paths"][path][method]
    # Relink serves the reference's six webhooks, and its own one, marked as its own.
    assert {k: v for k, v in served["webhooks"].items() if k in unified["webhooks"]} == unified["webhooks"]
    assert set(served["webhooks"]) - set(unified["webhooks"]) == {"integration-auth-failing"}
    assert served["webhooks"]["integration-auth-failing"]["post"]["x-relink-extension"] is True
    # Every component the added parts use is the second cut's, unchanged — the absences' four
    # properties whose type the reference's generator lost aside (api/openapi.py, LOST_TYPES).
    for kind, components in unified["components"].items():
        for name, component in components.items():
            if name in served["components"].get(kind, {}) and name != "GetHrisAbsencesPositiveResponse":
                assert served["components"][kind][name] == component, name
    absence = served["components"]["schemas"]["GetHrisAbsencesPositiveResponse"]["properties"]["data"]
    properties = absence["properties"]["results"]["items"]["properties"]
    assert properties["start_date"]["type"] == ["string", "null"] and properties["start_date"]["format"] == "date"
    assert properties["start_time"]["type"] == ["string", "null"]
    for own_name, schema in own["schemas"].items():
        assert served["components"]["schemas"][own_name] == schema


def test_every_reference_in_the_served_schema_resolves():
    served = served_document()

    def refs(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    for ref in set(refs(served)):
        kind, name = ref.removeprefix("#/components/").split("/")
        assert name in served["components"][kind], ref


def test_every_tool_the_schema_admits_is_accepted(client, db, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1_000_000
    cache.clear()
    environment = factories.EnvironmentFactory(slug="tools", name="Tools")
    raw = ApiKey.create(environment, "Tools")[1]
    enum = served_document()["components"]["schemas"]["PostConnectCreateLinkRequestBody"]["properties"]
    for tool in enum["integration_tool"]["enum"]:
        body = {"end_user_email": "hr@tools.test", "end_user_organization_name": "Tools", "integration_tool": tool}
        response = client.post(
            "/v1/connect/create-link", body, content_type="application/json", headers={"Authorization": f"Bearer {raw}"}
        )
        assert response.status_code == 200, (tool, response.content)
