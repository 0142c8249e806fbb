"""Webhook payloads against the reference API's own JSON schemas (tests/fixtures/reference: the
webhook payload schemas of its OpenAPI document, unchanged), validated with jsonschema-rs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest

from connect_flow import links
from integrations.health import delete_integration, state_changed
from integrations.models import IntegrationState, WebhookDelivery
from tests import factories


def _json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema: the type also admits null."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and "type" in node:
        converted["type"] = [node["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    return converted


SCHEMAS = _json_schema(
    json.loads((Path(__file__).parent / "fixtures" / "reference" / "webhook_payloads.json").read_text())
)


def _validate(payload: dict, schema_name: str) -> None:
    errors = [str(e) for e in jsonschema_rs.validator_for(SCHEMAS[schema_name]).iter_errors(payload)]
    assert errors == [], f"{schema_name}: {errors}\n{json.dumps(payload, indent=1)}"


@pytest.fixture
def endpoint(environment):
    return factories.WebhookEndpointFactory(environment=environment, event_types=[])


def _sent(event_type: str) -> dict:
    return WebhookDelivery.objects.filter(event_type=event_type).latest("pk").payload


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


def test_integration_created_matches_the_reference(environment, endpoint, broker, live_server, settings, monkeypatch):
    from integrations import syncs
    from sandbox.models import SandboxCompany

    monkeypatch.setattr(syncs, "_enqueue", lambda ids, **kwargs: None)
    settings.BASE_URL = live_server.url
    company = SandboxCompany.objects.create(name="Umbrella Corp", environment=environment)
    _, raw = company.create_key()
    factories.ScopeConfigFactory(environment=environment, is_default=True)
    created = links.create_connect_link(
        environment,
        end_user_email="hr@umbrella.test",
        end_user_organization_name="Umbrella Corp",
        tool="sandbox",
        link_type="MAGIC_LINK",
    )
    import httpx

    with httpx.Client() as client:
        page = client.get(created.url)
        token = page.text.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        done = client.post(created.url, data={"form_token": token, "tool": "sandbox", "api_key": raw})
    assert done.status_code == 200, done.text[-2000:]

    payload = _sent("integration-created")
    _validate(payload, "IntegrationCreatedWebhookPayload")
    assert payload["data"]["tool"] == "sandbox" and payload["data"]["category"] == "HRIS"
