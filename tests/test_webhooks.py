"""Webhook delivery: Standard Webhooks signatures, retries with one event id, replay."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations import webhooks
from integrations.models import DeliveryStatus, WebhookDelivery

from .factories import IntegrationFactory, WebhookEndpointFactory
from .webhook_receiver import start_receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver_500_then_200():
    receiver, server = start_receiver([500])
    yield receiver
    server.shutdown()


def _emit(endpoint, integration):
    [delivery] = webhooks.emit_integration_state_changed(integration)
    assert delivery.endpoint_id == endpoint.pk
    return delivery


def test_a_failed_attempt_is_retried_with_the_same_webhook_id(receiver_500_then_200):
    integration = IntegrationFactory()
    endpoint = WebhookEndpointFactory(environment=integration.environment, url=receiver_500_then_200.url)
    secret = endpoint.get_secret()
    delivery = _emit(endpoint, integration)

    first = webhooks.attempt_delivery(delivery.pk)
    assert first.status == DeliveryStatus.PENDING and first.attempts == 1
    assert first.next_attempt_at > timezone.now()
    assert webhooks.attempt_delivery(delivery.pk) is None  # not due yet: nothing sent

    with time_machine.travel(timezone.now() + timedelta(seconds=6)):
        second = webhooks.attempt_delivery(delivery.pk)
    assert second.status == DeliveryStatus.DELIVERED and second.attempts == 2
    assert [a.response_status for a in second.attempt_log.order_by("attempted_at")] == [500, 200]

    ids = [r.headers["webhook-id"] for r in receiver_500_then_200.received]
    assert ids == [delivery.event_id, delivery.event_id]
    for request in receiver_500_then_200.received:
        with time_machine.travel(int(request.headers["webhook-timestamp"]), tick=False):
            payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["id"] == delivery.event_id
        assert payload["type"] == "integration-state-changed"
        assert payload["data"]["integration_id"] == integration.pk


def test_a_wrong_secret_does_not_verify(receiver_500_then_200):
    integration = IntegrationFactory()
    endpoint = WebhookEndpointFactory(environment=integration.environment, url=receiver_500_then_200.url)
    delivery = _emit(endpoint, integration)
    receiver_500_then_200.statuses.clear()
    webhooks.attempt_delivery(delivery.pk)
    request = receiver_500_then_200.received[0]
    other = WebhookEndpointFactory().get_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)


def test_endpoints_receive_only_the_events_they_subscribe_to():
    integration = IntegrationFactory()
    wants_all = WebhookEndpointFactory(environment=integration.environment)
    WebhookEndpointFactory(environment=integration.environment, event_types=["sync-finished"])
    WebhookEndpointFactory(environment=integration.environment, enabled=False)
    WebhookEndpointFactory()  # another environment
    deliveries = webhooks.emit_integration_state_changed(integration)
    assert [d.endpoint_id for d in deliveries] == [wants_all.pk]


def test_it_gives_up_after_the_last_retry_and_replay_keeps_the_id():
    receiver, server = start_receiver([500] * 20)
    try:
        integration = IntegrationFactory()
        endpoint = WebhookEndpointFactory(environment=integration.environment, url=receiver.url)
        delivery = _emit(endpoint, integration)
        now = timezone.now()
        for _ in range(webhooks.MAX_ATTEMPTS):
            now += timedelta(hours=11)
            with time_machine.travel(now):
                webhooks.attempt_delivery(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.attempts == webhooks.MAX_ATTEMPTS

        receiver.statuses.clear()
        with time_machine.travel(now + timedelta(minutes=1)):
            webhooks.replay(delivery)
            webhooks.attempt_delivery(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.DELIVERED
        assert {r.headers["webhook-id"] for r in receiver.received} == {delivery.event_id}
        assert len(receiver.received) == webhooks.MAX_ATTEMPTS + 1
    finally:
        server.shutdown()


def test_an_unreachable_receiver_is_recorded_as_an_attempt():
    integration = IntegrationFactory()
    endpoint = WebhookEndpointFactory(environment=integration.environment, url="http://127.0.0.1:9/hooks")
    delivery = webhooks.attempt_delivery(_emit(endpoint, integration).pk)
    assert delivery.status == DeliveryStatus.PENDING
    attempt = delivery.attempt_log.get()
    assert attempt.response_status is None and "ConnectError" in attempt.error
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 1


def test_create_webhook_endpoint_prints_a_secret_that_is_stored_encrypted(environment):
    from io import StringIO

    from django.core.management import call_command

    from integrations.models import WebhookEndpoint

    out = StringIO()
    call_command(
        "create_webhook_endpoint",
        environment="acme",
        url="https://hooks.example.com/r",
        event=["integration-state-changed"],
        stdout=out,
    )
    secret = out.getvalue().strip().splitlines()[-1]
    endpoint = WebhookEndpoint.objects.get(environment=environment)
    assert secret.startswith("whsec_") and endpoint.get_secret() == secret
    assert secret not in endpoint.secret_encrypted
    assert endpoint.wants("integration-state-changed") and not endpoint.wants("sync-finished")
