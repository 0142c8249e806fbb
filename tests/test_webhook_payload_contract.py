"""Every webhook Relink sends, against its JSON schema, validated with jsonschema-rs (formats too):
the reference API's own for its events (the `*WebhookPayload` schemas of its OpenAPI document,
api/openapi_unified.json, via tests/reference_schemas.py); integrations/webhook_schemas.py for
Relink's own.

The payloads are produced by really driving the code: a customer connecting and being refused at
the hosted pages, syncs against Sandbox HR over HTTP (live_server) and a fake Personio (records
changed, warnings, a read failing part-way, rejected credentials), an operator disabling and
deleting. A new `WebhookEvent` member fails `test_every_event_type_has_a_schema` until it has a
schema, and `test_every_event_relink_sends_is_produced_and_matches_its_schema` until the scenario
sends it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from html import unescape
from typing import Any
from urllib.parse import urlencode, urlsplit

import jsonschema_rs
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api.openapi import unified_document
from connect_flow import links, signed
from integrations import syncs
from integrations.health import delete_integration, set_enabled, state_changed
from integrations.models import (
    Integration,
    IntegrationState,
    RequestLog,
    Sync,
    SyncedRecord,
    WebhookDelivery,
    WebhookEvent,
)
from integrations.providers import get_provider
from integrations.providers.base import ProviderUnavailable
from integrations.providers.sandbox import SandboxProvider
from integrations.webhook_schemas import relink_webhooks
from sandbox.models import SandboxCompany
from tests import factories

from .fake_hr import FakeHRServer, Route, fake_hr_fixture, load_fixture  # noqa: F401
from .reference_schemas import json_schema, webhook_schemas

REFERENCE = webhook_schemas()  # the reference's, from api/openapi_unified.json
OWN = relink_webhooks()
SCHEMAS = {**REFERENCE, **json_schema(OWN["schemas"])}
# Each payload schema names its one event in `type`'s enum.
SCHEMA_OF_EVENT = {schema["properties"]["type"]["enum"][0]: name for name, schema in SCHEMAS.items()}


def _validate(payload: dict, schema_name: str | None = None) -> None:
    """`payload` against the schema of its event (or `schema_name`)."""
    name = schema_name or SCHEMA_OF_EVENT[payload["type"]]
    validator = jsonschema_rs.validator_for(SCHEMAS[name], validate_formats=True)
    errors = [str(e) for e in validator.iter_errors(payload)]
    assert errors == [], f"{name}: {errors}\n{json.dumps(payload, indent=1)}"


@pytest.fixture
def endpoint(environment):
    return factories.WebhookEndpointFactory(environment=environment, event_types=[])


@pytest.fixture
def no_enqueue(monkeypatch):
    """Queued syncs are run here, by hand."""
    monkeypatch.setattr(syncs, "_enqueue", lambda ids, **kwargs: None)


def _sent(event_type: str) -> dict:
    return WebhookDelivery.objects.filter(event_type=event_type).latest("pk").payload


def _all_sent(event_type: str) -> list[dict]:
    return [d.payload for d in WebhookDelivery.objects.filter(event_type=event_type).order_by("pk")]


# --- Schemas ---------------------------------------------------------------------------------------


def test_every_event_type_has_a_schema():
    """A new WebhookEvent member needs its payload schema: the reference's (vendored unchanged) or,
    for an event of Relink's own, one in integrations/webhook_schemas.py."""
    assert sorted(set(WebhookEvent.values) - set(SCHEMA_OF_EVENT)) == []
    for event, name in SCHEMA_OF_EVENT.items():
        schema = SCHEMAS[name]
        assert schema["additionalProperties"] is False and schema["properties"]["data"]["additionalProperties"] is False
        assert schema["required"] == ["id", "type", "data"], event


def test_relinks_own_webhooks_are_described_like_the_references():
    """`relink_webhooks()`: an OpenAPI 3.1 `webhooks` entry per own event, marked as Relink's, whose
    payload schema is in the reference's style — the fields it shares with
    `integration-state-changed` word for word — and whose example is a valid payload."""
    assert set(OWN["webhooks"]) == {WebhookEvent.INTEGRATION_AUTH_FAILING}
    assert not set(OWN["webhooks"]) & {name for name in SCHEMA_OF_EVENT if SCHEMA_OF_EVENT[name] in REFERENCE}
    entry = OWN["webhooks"]["integration-auth-failing"]
    assert entry["x-relink-extension"] is True and entry["post"]["x-relink-extension"] is True
    assert "Relink's own event, not part of the reference API" in entry["description"]
    content = entry["post"]["requestBody"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/IntegrationAuthFailingWebhookPayload"}
    _validate(content["example"], "IntegrationAuthFailingWebhookPayload")
    assert [p["name"] for p in entry["post"]["parameters"]] == ["webhook-id", "webhook-timestamp", "webhook-signature"]

    own = OWN["schemas"]["IntegrationAuthFailingWebhookPayload"]["properties"]["data"]
    raw = unified_document()["components"]["schemas"]  # as published, before the JSON Schema conversion
    reference = raw["IntegrationStateChangedWebhookPayload"]["properties"]["data"]["properties"]
    for shared in ("integration_tool", "integration_id", "integration_category", "end_user", "state"):
        assert own["properties"][shared] == reference[shared], shared
    assert own["required"] == list(own["properties"]) and own["additionalProperties"] is False
    assert jsonschema_rs.meta.is_valid(SCHEMAS["IntegrationAuthFailingWebhookPayload"])
    assert relink_webhooks() is not OWN and relink_webhooks() == OWN  # a fresh copy each call


# --- Every event, by driving the code ------------------------------------------------------------------


def _text(response) -> str:
    return unescape(response.content.decode())


def _attempt(created: links.CreatedLink, **form: str):
    """A customer's attempt at the hosted page, as a cookie-less browser makes it."""
    customer = Client(enforce_csrf_checks=True)
    page = customer.get(f"/connect/{created.token}/")
    assert page.status_code == 200, page.content.decode()
    token = re.search(r'name="form_token" value="([^"]+)"', page.content.decode())
    assert token
    return customer.post(f"/connect/{created.token}/", {"form_token": unescape(token.group(1)), **form})


def _sync(integration: Integration) -> Sync:
    """A FULL sync of the integration, queued and run now (the queued one, if a link queued it)."""
    sync, _ = syncs.queue_sync(integration.pk, "FULL")
    done = syncs.run_sync(sync.pk)
    assert done is not None
    return done


@pytest.fixture
def sandbox(live_server, settings, environment):
    """Sandbox HR reached over HTTP: the customer's company with three employees."""
    settings.BASE_URL = live_server.url
    company = SandboxCompany.objects.create(name="Umbrella Corp", environment=environment)
    factories.SandboxEmployeeFactory.create_batch(3, company=company)
    return company


def _first_page_then_503(monkeypatch) -> None:
    """Sandbox HR answers a sync's first page, then fails (the read breaks off part-way)."""
    real = SandboxProvider.fetch_pages

    def broken(self, *args, **kwargs):
        yield next(real(self, *args, **kwargs))
        raise ProviderUnavailable("Sandbox HR answered 503", 503)

    monkeypatch.setattr(SandboxProvider, "fetch_pages", broken)


@pytest.mark.django_db(transaction=True)
def test_every_event_relink_sends_is_produced_and_matches_its_schema(
    environment, endpoint, sandbox, broker, no_enqueue, monkeypatch, viewer
):
    factories.ScopeConfigFactory(environment=environment, is_default=True)
    _, key = sandbox.create_key()

    # integration-created: the customer connects through a connect link.
    created = links.create_connect_link(
        environment,
        end_user_email="hr@umbrella.test",
        end_user_organization_name="Umbrella Corp",
        tool="sandbox",
        link_type="MAGIC_LINK",
    )
    assert _attempt(created, tool="sandbox", api_key=key).status_code == 200
    integration = Integration.objects.get(environment=environment)

    # The sync the connection queued: data-changed (every employee is new), sync-finished SUCCEEDED.
    first = syncs.run_sync(Sync.objects.get(integration=integration, status="QUEUED").pk)
    assert first.status == "SUCCEEDED" and first.changed_models == ["hris_employees"]

    # A sync with a warning: the key lost compensation:read, so salary is gone from every record.
    sandbox.api_keys.update(permissions=["employees:read", "absences:read"])
    warned = _sync(integration)
    assert warned.status == "PARTIALLY_FAILED" and warned.warnings

    # A sync failing part-way, after a page with a changed employee: data-changed all the same.
    sandbox.employees.filter(pk=sandbox.employees.order_by("pk")[0].pk).update(first_name="Renamed")
    with monkeypatch.context() as patched:
        _first_page_then_503(patched)
        failed = _sync(integration)
    assert failed.status == "FAILED" and failed.changed_models == ["hris_employees"]

    # Refused attempts at a reconnect link: rejected key, missing permission, another company.
    globex = SandboxCompany.objects.create(name="Globex", environment=environment)
    factories.SandboxEmployeeFactory(company=globex)
    relink = links.create_relink_link(integration, link_type="MAGIC_LINK")
    _, no_salary = sandbox.create_key(permissions=["employees:read"])  # the scope asks for salary
    for api_key, code in [
        ("sbx_wrong", "AUTH_FAILED"),
        (no_salary, "PERMISSION_MISSING"),
        (globex.create_key()[1], links.ACCOUNT_MISMATCH),
    ]:
        response = _attempt(relink, api_key=api_key)
        assert response.status_code == 400 and RequestLog.objects.filter(error_code=code).exists(), code

    # integration-auth-failing: the key is revoked, the next sync's auth check is rejected.
    sandbox.api_keys.update(revoked_at=timezone.now())
    assert _sync(integration).status == "AUTHENTICATION_FAILED"

    # sync-finished carries no warnings: its log_url opens the integration's page, which shows them.
    (warned_finished,) = [p["data"] for p in _all_sent("sync-finished") if p["data"]["sync_id"] == warned.pk]
    assert "warnings" not in warned_finished and warned_finished["sync_state"] == "PARTIALLY_FAILED"
    operator = Client()
    operator.force_login(viewer)
    page = operator.get(urlsplit(warned_finished["log_url"]).path)
    assert page.status_code == 200
    assert "permission &#x27;compensation:read&#x27; for hris_employees.salary not granted" in page.content.decode()

    # connection-flow-failed's log_url opens its attempt's request log, with the reason.
    for payload in _all_sent("connection-flow-failed"):
        page = operator.get(urlsplit(payload["data"]["log_url"]).path)
        assert page.status_code == 200
        assert re.search(r"<code>(AUTH_FAILED|PERMISSION_MISSING|ACCOUNT_MISMATCH)</code>", page.content.decode())
    mismatch = RequestLog.objects.get(error_code=links.ACCOUNT_MISMATCH)
    assert mismatch.response_body["account"] == {"id": globex.account_id, "label": "Globex"}
    page = operator.get(urlsplit(_all_sent("connection-flow-failed")[2]["data"]["log_url"]).path)
    assert globex.account_id in _text(page)

    # integration-state-changed and integration-deleted: an operator disables, then deletes it.
    set_enabled(integration.pk, False)
    delete_integration(Integration.objects.get(pk=integration.pk))

    sent = Counter()
    for delivery in WebhookDelivery.objects.order_by("pk"):
        assert delivery.payload["type"] == delivery.event_type
        _validate(delivery.payload)
        sent[delivery.event_type] += 1
    assert sorted(sent) == sorted(WebhookEvent.values), "every event type was sent"
    assert sent["data-changed"] == 3 and sent["connection-flow-failed"] == 3
    finished = {p["data"]["sync_id"]: p["data"] for p in _all_sent("sync-finished")}
    assert [d["sync_state"] for d in finished.values()] == [
        "SUCCEEDED",
        "PARTIALLY_FAILED",
        "FAILED",
        "AUTHENTICATION_FAILED",
    ]
    assert _sent("integration-auth-failing")["data"]["integration_id"] == integration.pk


# --- connection-flow-failed ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_refused_connect_link_attempt_reports_the_links_end_user_and_its_log(
    environment, endpoint, sandbox, broker, no_enqueue, viewer, settings
):
    """No integration yet: the end user is the link's. log_url is the attempt's request log."""
    factories.ScopeConfigFactory(environment=environment, is_default=True)
    created = links.create_connect_link(
        environment, end_user_email="", end_user_organization_name="Umbrella Corp", tool="sandbox"
    )

    assert _attempt(created, tool="sandbox", api_key="sbx_wrong").status_code == 400

    payload = _sent("connection-flow-failed")
    _validate(payload)
    log = RequestLog.objects.get()
    log_path = reverse("dashboard:log", kwargs={"env": environment.slug, "log_id": log.pk})
    assert payload["data"] == {
        "integration_tool": "sandbox",
        "integration_category": "HRIS",
        "end_user": {"organization_name": "Umbrella Corp", "creator_email": None, "origin_id": None},
        "log_url": settings.BASE_URL + log_path,
    }
    assert log.response_body == {"error_code": "AUTH_FAILED", "missing_permissions": []}
    operator = Client()
    operator.force_login(viewer)
    page = operator.get(urlsplit(payload["data"]["log_url"]).path)
    assert page.status_code == 200 and "<code>AUTH_FAILED</code>" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_refused_oauth_consent_reports_its_callbacks_log(environment, endpoint, sandbox, broker, no_enqueue, viewer):
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox_oauth")
    created = links.create_relink_link(integration)
    state = signed.oauth_state(created.link, get_provider("sandbox_oauth"), [])

    callback = Client().get(
        reverse("connect_flow:oauth_callback") + "?" + urlencode({"error": "access_denied", "state": state})
    )

    assert callback.status_code == 400
    payload = _sent("connection-flow-failed")
    _validate(payload)
    log = RequestLog.objects.get(error_code="ACCESS_DENIED")
    assert payload["data"]["log_url"].endswith(f"/logs/{log.pk}/")
    assert log.path == reverse("connect_flow:oauth_callback")
    operator = Client()
    operator.force_login(viewer)
    assert "<code>ACCESS_DENIED</code>" in operator.get(urlsplit(payload["data"]["log_url"]).path).content.decode()


# --- data-changed ------------------------------------------------------------------------------------

PERSONIO_SPEC = {
    "hris_employees": {
        "availability": "ENABLED",
        "fields": {"first_name": "ENABLED", "last_name": "ENABLED", "email": "ENABLED"},
    },
    "hris_absences": {
        "availability": "ENABLED",
        "fields": {"employee_id": "ENABLED", "start_date": "ENABLED", "end_date": "ENABLED"},
    },
}


def _personio_employee(n: int) -> dict[str, Any]:
    attributes = {"first_name": f"E{n}", "last_name": "Doe", "email": f"e{n}@acme.test"}
    return {
        "type": "Employee",
        "attributes": {"id": {"value": n}, **{k: {"label": k, "value": v} for k, v in attributes.items()}},
    }


def _personio_time_off(n: int) -> dict[str, Any]:
    return {
        "type": "TimeOffPeriod",
        "attributes": {
            "id": n,
            "status": "approved",
            "start_date": "2024-05-02T00:00:00+02:00",
            "end_date": "2024-05-03T00:00:00+02:00",
            "employee": {"type": "Employee", "attributes": {"id": {"value": n}}},
        },
    }


class Personio:
    """A fake Personio (documented pages) whose employees and time-offs a test changes."""

    def __init__(self, fake: FakeHRServer) -> None:
        self.fake = fake
        self.employees = [_personio_employee(n) for n in range(1, 151)]  # two pages of 100
        self.time_offs = [_personio_time_off(n) for n in range(1, 4)]
        self.fail_after_first_page = False
        fake.route("POST", "/v1/auth", json=load_fixture("personio", "auth"))
        pages = fake.pages("GET", "/v1/company/employees", self.employees, max_limit=100)
        fake.respond("GET", "/v1/company/employees", lambda request: self._employees(pages, request))
        fake.pages("GET", "/v1/company/time-offs", self.time_offs, numbered=True)

    def _employees(self, pages, request) -> Route:
        if self.fail_after_first_page and request.query.get("offset") != ["0"]:
            return Route(503, {"success": False, "error": {"code": 503, "message": "Service unavailable"}})
        return pages(request)


@pytest.fixture
def personio(fake_hr: FakeHRServer, settings) -> Personio:
    settings.PERSONIO_BASE_URL = fake_hr.url + "/v1"
    return Personio(fake_hr)


@pytest.fixture
def personio_integration(environment, endpoint):
    scope = factories.ScopeConfigFactory(environment=environment, spec=PERSONIO_SPEC)
    return factories.IntegrationFactory(
        environment=environment,
        tool="personio",
        scope_config=scope,
        credentials={"client_id": "papi-client-123", "client_secret": "personio-secret-value"},
    )


def _changed(sync: Sync) -> list[list[str]]:
    """The changed models of each data-changed payload, oldest first (each validated)."""
    payloads = _all_sent("data-changed")
    for payload in payloads:
        _validate(payload)
    return [[model["name"] for model in p["data"]["changed_models"]] for p in payloads]


@pytest.mark.django_db(transaction=True)
def test_data_changed_lists_exactly_the_models_a_sync_changed(personio, personio_integration, broker, no_enqueue):
    integration = personio_integration

    first = _sync(integration)
    assert first.status == "SUCCEEDED", first.warnings
    assert _changed(first) == [["hris_employees", "hris_absences"]]
    assert _sent("data-changed")["data"] == {
        "integration_id": integration.pk,
        "integration_tool": "personio",
        "integration_category": "HRIS",
        "changed_models": [{"name": "hris_employees"}, {"name": "hris_absences"}],
    }

    # The same data read again: nothing written, nothing sent.
    again = _sync(integration)
    assert (again.status, again.changed_models) == ("SUCCEEDED", [])
    assert len(_changed(again)) == 1

    # One employee gone upstream: the complete read marks it deleted; absences are unchanged.
    personio.employees.pop(7)
    removed = _sync(integration)
    assert removed.records_per_model == {"hris_employees": 149, "hris_absences": 3}
    assert _changed(removed) == [["hris_employees", "hris_absences"], ["hris_employees"]]
    assert SyncedRecord.objects.filter(integration=integration, remote_deleted_at__isnull=False).count() == 1
    assert [p["data"]["sync_state"] for p in _all_sent("sync-finished")] == ["SUCCEEDED"] * 3


@pytest.mark.django_db(transaction=True)
def test_a_sync_failing_part_way_reports_the_pages_it_wrote(personio, personio_integration, broker, no_enqueue):
    """The first employees page is written, the second fails: FAILED, and data-changed lists the
    employees (the pages written are real changes); absences were never read."""
    _sync(personio_integration)
    personio.employees[0]["attributes"]["first_name"]["value"] = "Renamed"
    personio.fail_after_first_page = True

    failed = _sync(personio_integration)

    assert failed.status == "FAILED" and failed.changed_models == ["hris_employees"]
    assert _changed(failed) == [["hris_employees", "hris_absences"], ["hris_employees"]]
    assert (
        SyncedRecord.objects.get(integration=personio_integration, model="hris_employees", remote_id="1").data[
            "first_name"
        ]
        == "Renamed"
    )
    sent = list(WebhookDelivery.objects.order_by("pk").values_list("event_type", flat=True))
    assert sent[-2:] == ["data-changed", "sync-finished"]  # emitted together as the sync ends


# --- The reference's other events --------------------------------------------------------------------


@pytest.mark.parametrize("email", ["hr@umbrella.test", ""])
def test_integration_state_changed_matches_the_reference(environment, endpoint, broker, email):
    integration = factories.IntegrationFactory(environment=environment, end_user_email=email)
    integration.state = IntegrationState.INVALID
    state_changed(integration, IntegrationState.ACTIVE, actor_label="system")

    payload = _sent("integration-state-changed")
    _validate(payload, "IntegrationStateChangedWebhookPayload")
    assert payload["data"]["qa_status"] == "PASSED"


def test_integration_deleted_matches_the_reference(environment, endpoint, broker):
    integration = factories.IntegrationFactory(environment=environment)

    delete_integration(integration)

    payload = _sent("integration-deleted")
    _validate(payload, "IntegrationDeletedWebhookPayload")
    assert payload["data"]["id"] == integration.pk and payload["data"]["deleted_at"].endswith("Z")


@pytest.mark.django_db(transaction=True)
def test_integration_created_matches_the_reference(environment, endpoint, broker, sandbox, no_enqueue):
    _, raw = sandbox.create_key()
    factories.ScopeConfigFactory(environment=environment, is_default=True)
    created = links.create_connect_link(
        environment,
        end_user_email="hr@umbrella.test",
        end_user_organization_name="Umbrella Corp",
        tool="sandbox",
        link_type="MAGIC_LINK",
    )
    done = _attempt(created, tool="sandbox", api_key=raw)
    assert done.status_code == 200, done.content.decode()[-2000:]

    payload = _sent("integration-created")
    _validate(payload, "IntegrationCreatedWebhookPayload")
    assert payload["data"]["tool"] == "sandbox" and payload["data"]["category"] == "HRIS"


def test_the_webhook_form_offers_every_event(client, owner, environment):
    client.force_login(owner)
    body = client.get(reverse("dashboard:webhook_new", kwargs={"env": environment.slug})).content.decode()
    for event in WebhookEvent.values:
        assert f'value="{event}"' in body, event
