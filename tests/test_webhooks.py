"""Webhook delivery: Standard Webhooks signatures, retries with one event id, replay; at volume:
one pooled client per process, batch claims, retries from the database without broker delays."""

from __future__ import annotations

import os
import threading
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from celery.app.task import Task
from celery.signals import worker_process_shutdown
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations import webhooks
from integrations.models import DeliveryStatus, OutboxMessage, WebhookAttempt, WebhookDelivery

from .factories import IntegrationFactory, WebhookDeliveryFactory, WebhookEndpointFactory
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


# --- At volume ------------------------------------------------------------------------------------


@pytest.fixture
def keep_alive_receiver():
    receiver, server = start_receiver(keep_alive=True)
    yield receiver
    receiver.hang_up()
    server.shutdown()
    server.server_close()


def _due(endpoint, n: int) -> list[WebhookDelivery]:
    now = timezone.now()
    return [WebhookDeliveryFactory(endpoint=endpoint, next_attempt_at=now - timedelta(seconds=n - i)) for i in range(n)]


def test_the_backoff_schedule_is_the_designs():
    assert [d.total_seconds() for d in webhooks.RETRY_DELAYS] == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert webhooks.MAX_ATTEMPTS == 8
    assert django_settings.WEBHOOK_HTTP_TIMEOUT == 15


def test_deliveries_share_one_client_and_one_kept_alive_connection(settings, keep_alive_receiver):
    settings.WEBHOOK_DELIVERY_BATCH = 1  # one after the other, each by its own task
    endpoint = WebhookEndpointFactory(url=keep_alive_receiver.url)
    client = webhooks.http_client()
    for delivery in _due(endpoint, 3):
        assert webhooks.attempt_delivery(delivery.pk).status == DeliveryStatus.DELIVERED
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 3
    assert webhooks.http_client() is client and not client.is_closed
    assert len(keep_alive_receiver.received) == 3
    assert keep_alive_receiver.connections == 1  # the second and third reused the first's connection


def test_the_client_takes_its_timeout_from_settings(settings):
    settings.WEBHOOK_HTTP_TIMEOUT = 2.5
    timeout = webhooks.http_client().timeout
    assert (timeout.connect, timeout.read, timeout.write) == (2.5, 2.5, 2.5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() of a process with threads
def test_a_forked_worker_process_builds_its_own_client_and_leaves_the_parents_alone():
    parent = webhooks.http_client()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as a Celery prefork pool process
        try:
            child = webhooks.http_client()
            ok = child is not parent and webhooks.http_client() is child and not parent.is_closed
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert webhooks.http_client() is parent and not parent.is_closed


def test_a_client_inherited_without_the_fork_hook_is_dropped_not_closed(monkeypatch):
    parent = webhooks.http_client()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # another process's view
    child = webhooks.http_client()
    assert child is not parent and not parent.is_closed
    monkeypatch.undo()
    child.close()


def test_the_client_is_closed_when_the_worker_process_shuts_down():
    client = webhooks.http_client()
    worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    assert client.is_closed
    assert webhooks.http_client() is not client  # a task after that (solo pool) gets a new one


def test_one_task_delivers_a_batch_of_due_deliveries(settings, keep_alive_receiver):
    settings.WEBHOOK_DELIVERY_BATCH = 5
    endpoint = WebhookEndpointFactory(url=keep_alive_receiver.url)
    deliveries = _due(endpoint, 7)
    own = deliveries[6]  # the newest: claimed first, as its task's own

    done = webhooks.attempt_delivery(own.pk)

    assert done.pk == own.pk and done.status == DeliveryStatus.DELIVERED
    delivered = set(WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).values_list("pk", flat=True))
    assert delivered == {own.pk} | {d.pk for d in deliveries[:4]}  # then the oldest due
    assert WebhookAttempt.objects.count() == 5
    # The tasks of deliveries another task sent are no-ops for them, and take what is left.
    assert webhooks.attempt_delivery(deliveries[0].pk) is None
    assert webhooks.attempt_delivery(deliveries[1].pk) is None
    assert not WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists()
    ids = Counter(r.headers["webhook-id"] for r in keep_alive_receiver.received)
    assert sorted(ids) == sorted(d.event_id for d in deliveries) and set(ids.values()) == {1}


def test_a_failing_receiver_in_a_batch_fails_only_its_own_delivery(settings, keep_alive_receiver):
    settings.WEBHOOK_DELIVERY_BATCH = 3
    endpoint = WebhookEndpointFactory(url=keep_alive_receiver.url)
    dead = WebhookEndpointFactory(url="http://127.0.0.1:9/hooks")  # refused at once
    _due(endpoint, 2)
    WebhookDeliveryFactory(endpoint=dead, next_attempt_at=timezone.now())
    assert webhooks.deliver_due_webhooks() == 3
    outcomes = Counter(WebhookDelivery.objects.values_list("status", "attempts"))
    assert outcomes == {(DeliveryStatus.DELIVERED, 1): 2, (DeliveryStatus.PENDING, 1): 1}


@pytest.fixture
def task_calls(monkeypatch):
    """Every apply_async (eager here, so the task still runs): (task name, options)."""
    calls: list[tuple[str, dict]] = []
    real = Task.apply_async

    def spy(self, args=None, kwargs=None, **options):
        calls.append((self.name, options))
        return real(self, args, kwargs, **options)

    monkeypatch.setattr(Task, "apply_async", spy)
    return calls


def test_retries_wait_in_the_row_and_beat_picks_them_up_without_any_broker_delay(
    task_calls, django_capture_on_commit_callbacks
):
    receiver, server = start_receiver([500] * (webhooks.MAX_ATTEMPTS - 1))
    try:
        integration = IntegrationFactory()
        WebhookEndpointFactory(environment=integration.environment, url=receiver.url)
        with django_capture_on_commit_callbacks(execute=True):
            [delivery] = webhooks.emit_integration_state_changed(integration)  # attempt 1, at once
        for attempt, delay in enumerate(webhooks.RETRY_DELAYS, start=2):
            delivery.refresh_from_db()
            last = delivery.attempt_log.order_by("-attempted_at").first()
            assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == attempt - 1
            assert abs((delivery.next_attempt_at - last.attempted_at) - delay) < timedelta(seconds=2)
            with time_machine.travel(delivery.next_attempt_at - timedelta(seconds=1)):
                webhooks.retry_due_webhooks()  # beat, a second early: nothing is sent
            assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == attempt - 1
            with time_machine.travel(delivery.next_attempt_at + timedelta(seconds=1)):
                assert webhooks.retry_due_webhooks() == 1
            assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == attempt
    finally:
        server.shutdown()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == webhooks.MAX_ATTEMPTS
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery.event_id}
    assert not OutboxMessage.objects.exists()  # retries never went through the outbox either

    # What reached Celery: the first attempt's task and one drain task per retry, none delayed.
    visibility_timeout = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    names = Counter(name for name, _ in task_calls)
    assert names == {"integrations.webhooks.attempt_delivery": 1, "integrations.webhooks.deliver_due_webhooks": 7}
    for name, options in task_calls:
        assert "eta" not in options and "countdown" not in options, (name, options)
        assert options.get("expires", 0) <= visibility_timeout


def test_beat_queues_one_drain_task_per_batch_of_due_retries(settings, task_calls, keep_alive_receiver):
    settings.WEBHOOK_DELIVERY_BATCH = 4
    endpoint = WebhookEndpointFactory(url=keep_alive_receiver.url)
    retries = _due(endpoint, 9)
    WebhookDelivery.objects.filter(pk__in=[d.pk for d in retries]).update(attempts=1)
    fresh = WebhookDeliveryFactory(endpoint=endpoint, next_attempt_at=timezone.now())  # its task is queued

    assert webhooks.retry_due_webhooks() == 9
    assert [name for name, _ in task_calls] == ["integrations.webhooks.deliver_due_webhooks"] * 3
    # The first drain task took every batch (the fresh one too); the others found nothing left.
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 10
    assert WebhookDelivery.objects.get(pk=fresh.pk).attempts == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_once_never_send_a_delivery_twice(settings, keep_alive_receiver):
    settings.WEBHOOK_DELIVERY_BATCH = 10
    endpoint = WebhookEndpointFactory(url=keep_alive_receiver.url)
    deliveries = _due(endpoint, 60)
    now = timezone.now()

    def race(work) -> list:
        results: list = []
        barrier = threading.Barrier(2)

        def worker():
            try:
                barrier.wait()
                results.append(work())
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    # The claim itself: two claimers at the same instant take disjoint rows, together all of them.
    first, second = race(lambda: webhooks._claim(30, now))
    assert not set(first) & set(second) and set(first) | set(second) == {d.pk for d in deliveries}
    WebhookDelivery.objects.update(next_attempt_at=now)  # due again

    # Two drain tasks: every delivery sent once, its attempt logged once.
    sent = race(webhooks.deliver_due_webhooks)
    assert sum(sent) == 60
    ids = Counter(r.headers["webhook-id"] for r in keep_alive_receiver.received)
    assert len(ids) == 60 and set(ids.values()) == {1}
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED, attempts=1).count() == 60
    assert WebhookAttempt.objects.count() == 60
