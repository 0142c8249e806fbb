"""The three-day rule, exactly as DESIGN "Integration state" states it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from integrations.health import record_auth_check
from integrations.models import AuditEvent, AuthCheck, Integration, WebhookDelivery
from integrations.providers import Outcome
from integrations.providers.base import AuthResult

from .factories import IntegrationFactory, WebhookEndpointFactory

T = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
FAILED = AuthResult(Outcome.AUTH_FAILED, http_status=401, error_code="INVALID_API_KEY", message="invalid API key")
OK = AuthResult(Outcome.OK, http_status=200)
DOWN = AuthResult(Outcome.UNAVAILABLE, http_status=503, message="Service Unavailable")

pytestmark = pytest.mark.django_db


@pytest.fixture
def integration():
    integration = IntegrationFactory()
    WebhookEndpointFactory(environment=integration.environment)
    return integration


def check_at(integration, at: datetime, result: AuthResult) -> Integration:
    with time_machine.travel(at, tick=False):
        record_auth_check(integration.pk, result)
    return Integration.objects.get(pk=integration.pk)


def state_webhooks(integration) -> list[dict]:
    return [
        d.payload
        for d in WebhookDelivery.objects.filter(event_type="integration-state-changed").order_by("created_at")
        if d.payload["data"]["integration_id"] == integration.pk
    ]


def test_failures_for_under_72_hours_keep_it_active_and_the_72nd_hour_makes_it_invalid(integration):
    for hours in (0, 24, 48):
        assert check_at(integration, T + timedelta(hours=hours), FAILED).state == "ACTIVE"
    assert check_at(integration, T + timedelta(hours=71, minutes=59), FAILED).state == "ACTIVE"
    after = check_at(integration, T + timedelta(hours=72), FAILED)
    assert after.state == "INVALID"
    assert after.auth_failing_since == T
    assert after.invalid_since == T + timedelta(hours=72)
    assert after.last_auth_error == "401 invalid API key"
    assert AuthCheck.objects.filter(integration=integration).count() == 5


def test_unavailable_neither_starts_nor_ends_a_streak(integration):
    assert check_at(integration, T - timedelta(hours=1), DOWN).auth_failing_since is None  # does not start
    check_at(integration, T, FAILED)
    after_down = check_at(integration, T + timedelta(hours=30), DOWN)
    assert after_down.auth_failing_since == T  # does not end
    assert check_at(integration, T + timedelta(hours=72), FAILED).state == "INVALID"


def test_unavailable_does_not_make_an_invalid_integration_active(integration):
    check_at(integration, T, FAILED)
    check_at(integration, T + timedelta(hours=72), FAILED)
    assert check_at(integration, T + timedelta(hours=96), DOWN).state == "INVALID"


def test_an_ok_ends_the_streak(integration):
    check_at(integration, T, FAILED)
    assert check_at(integration, T + timedelta(hours=48), OK).auth_failing_since is None
    # A new streak starts from the next failure, so 72h after T is not enough.
    check_at(integration, T + timedelta(hours=50), FAILED)
    assert check_at(integration, T + timedelta(hours=72), FAILED).state == "ACTIVE"
    assert check_at(integration, T + timedelta(hours=122), FAILED).state == "INVALID"


def test_invalid_then_ok_is_active_again(integration):
    check_at(integration, T, FAILED)
    check_at(integration, T + timedelta(hours=72), FAILED)
    healed = check_at(integration, T + timedelta(hours=96), OK)
    assert healed.state == "ACTIVE"
    assert healed.invalid_since is None and healed.auth_failing_since is None


def test_each_real_change_emits_exactly_one_webhook_and_audit_event(integration, django_capture_on_commit_callbacks):
    for hours in (0, 24, 48, 72, 80, 96):  # INVALID at 72, still INVALID at 80
        check_at(integration, T + timedelta(hours=hours), FAILED)
    check_at(integration, T + timedelta(hours=100), OK)  # ACTIVE again
    check_at(integration, T + timedelta(hours=101), OK)  # no change
    payloads = state_webhooks(integration)
    assert [p["data"]["state"] for p in payloads] == ["INVALID", "ACTIVE"]
    assert len({p["id"] for p in payloads}) == 2
    data = payloads[0]["data"]
    assert set(data) == {
        "integration_tool",
        "integration_id",
        "integration_category",
        "end_user",
        "qa_status",
        "setup_status",
        "state",
        "updated_at",
    }
    assert data["end_user"] == {
        "organization_name": integration.end_user_organization_name,
        "creator_email": integration.end_user_email,
        "origin_id": integration.end_user_origin_id,
    }
    changes = AuditEvent.objects.filter(integration_id=integration.pk, action="integration.state_changed")
    assert sorted((e.details["from"], e.details["to"]) for e in changes) == [
        ("ACTIVE", "INVALID"),
        ("INVALID", "ACTIVE"),
    ]


def test_a_disabled_integration_stays_inactive_whatever_the_checks_say(integration):
    Integration.objects.filter(pk=integration.pk).update(enabled=False, state="INACTIVE")
    check_at(integration, T, FAILED)
    after = check_at(integration, T + timedelta(hours=72), FAILED)
    assert after.state == "INACTIVE"
    assert after.invalid_since is not None  # the separate fact is still recorded
    assert state_webhooks(integration) == []


def test_refreshed_credentials_are_stored_encrypted_with_the_check(integration):
    record_auth_check(integration.pk, AuthResult(Outcome.OK, updated_credentials={"access_token": "new-token"}))
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.get_credentials() == {"access_token": "new-token"}
    assert "new-token" not in fresh.credentials_encrypted
