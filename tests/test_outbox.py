"""The task outbox: a broker that refuses a publish after commit loses nothing and answers nobody
with an error; the sweep sends what waited, once, oldest first, and delayed retries only when due.

Here the broker's refusal is raised at the outbox's one publishing choke point; the real thing (a
Redis of its own, killed and restarted, with a real worker and beat) is tests/test_broker_outage.py.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from integrations import outbox, webhooks
from integrations.models import ApiKey, AuditEvent, OutboxMessage, Sync, SyncStatus, WebhookDelivery

from . import factories


@pytest.fixture
def api_key(environment):
    key, raw = ApiKey.create(environment, "Backend")
    key.raw = raw
    return key


def test_force_sync_answers_queued_while_the_broker_is_down_and_the_sweep_sends_it_once(
    client, api_key, environment, broker, django_capture_on_commit_callbacks, caplog
):
    integration = factories.IntegrationFactory(environment=environment)
    broker.down = True

    with caplog.at_level(logging.WARNING, logger="integrations.outbox"):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/v1/force-sync",
                {},
                content_type="application/json",
                headers={"Authorization": f"Bearer {api_key.raw}", "X-Integration-Id": integration.pk},
            )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "success" and body["data"]["already_queued"] is False
    sync = Sync.objects.get(pk=body["data"]["sync_id"])
    assert sync.status == SyncStatus.QUEUED
    (waiting,) = OutboxMessage.objects.all()
    assert (waiting.task, waiting.args, waiting.attempts) == (outbox.RUN_SYNC_NOW, [sync.pk], 1)
    assert "Connection refused" in waiting.last_error and waiting.claimed_until is None
    assert "broker unavailable" in caplog.text

    assert outbox.flush_outbox() == 0  # still down: kept, not lost
    assert OutboxMessage.objects.get().attempts == 2

    broker.down = False
    assert outbox.flush_outbox() == 1
    assert outbox.flush_outbox() == 0
    assert broker.sent == [(outbox.RUN_SYNC_NOW, (sync.pk,))]
    assert not OutboxMessage.objects.exists()


def test_check_now_is_kept_while_the_broker_is_down(
    client, editor, environment, broker, django_capture_on_commit_callbacks
):
    integration = factories.IntegrationFactory(environment=environment)
    broker.down = True
    client.force_login(editor)
    url = reverse("dashboard:check_now", kwargs={"env": environment.slug, "integration_id": integration.pk})

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)

    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="auth_check.requested", integration_id=integration.pk).exists()
    broker.down = False
    outbox.flush_outbox()
    assert broker.sent == [(outbox.CHECK_AUTH, (integration.pk,))]


def test_a_webhook_emitted_while_the_broker_is_down_is_delivered_by_the_sweep(
    environment, broker, django_capture_on_commit_callbacks
):
    factories.WebhookEndpointFactory(environment=environment)
    integration = factories.IntegrationFactory(environment=environment)
    broker.down = True
    with django_capture_on_commit_callbacks(execute=True):
        (delivery,) = webhooks.emit_integration_state_changed(integration)
    broker.down = False

    outbox.flush_outbox()

    assert broker.sent == [(outbox.DELIVER_WEBHOOK, (delivery.pk,))]


def test_the_sweep_publishes_in_creation_order_and_stops_at_the_first_refusal(db, monkeypatch):
    for n in range(3):
        OutboxMessage.objects.create(
            task=outbox.RUN_SYNC, args=[f"s{n}"], available_at=timezone.now() - timedelta(seconds=3 - n)
        )
    calls = []

    def flaky(task, args):
        calls.append(args[0])
        if len(calls) == 2:
            raise OperationalError("connection lost")

    monkeypatch.setattr(outbox, "publish", flaky)
    assert outbox.flush_outbox() == 1
    assert calls == ["s0", "s1"]  # s2 not even tried once s1 was refused
    assert sorted(OutboxMessage.objects.values_list("args", flat=True)) == [["s1"], ["s2"]]


def test_a_claimed_message_is_left_to_its_claimer_until_the_lease_ends(db, broker):
    now = timezone.now()
    OutboxMessage.objects.create(task=outbox.RUN_SYNC, args=["s1"], claimed_until=now + timedelta(seconds=20))

    assert outbox.flush_outbox() == 0  # another process is publishing it
    with time_machine.travel(now + outbox.CLAIM_LEASE + timedelta(seconds=1)):
        assert outbox.flush_outbox() == 1  # that process died: the sweep takes over
    assert broker.sent == [(outbox.RUN_SYNC, ("s1",))]


def test_a_failed_webhook_attempt_waits_for_its_retry_in_its_row_not_the_outbox_or_the_broker(
    environment, broker, django_capture_on_commit_callbacks
):
    endpoint = factories.WebhookEndpointFactory(environment=environment, url="http://127.0.0.1:9/unreachable")
    delivery = factories.WebhookDeliveryFactory(endpoint=endpoint, next_attempt_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        webhooks.attempt_delivery(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.status == "PENDING"
    assert delivery.next_attempt_at > timezone.now()  # the retry's time, in the row
    assert not OutboxMessage.objects.exists()
    assert broker.sent == []
    assert outbox.flush_outbox() == 0
    assert webhooks.retry_due_webhooks() == 0  # not due yet
    with time_machine.travel(delivery.next_attempt_at + timedelta(seconds=1)):
        assert webhooks.retry_due_webhooks() == 1  # beat: queues (here: runs) the retry
    assert WebhookDelivery.objects.get().attempts == 2
    assert broker.sent == [] and not OutboxMessage.objects.exists()


def test_work_rolled_back_publishes_nothing(environment, broker, django_capture_on_commit_callbacks):
    from django.db import transaction

    integration = factories.IntegrationFactory(environment=environment)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            outbox.send_on_commit(outbox.CHECK_AUTH, [(integration.pk,)])
            raise RuntimeError("the work failed")
    assert not OutboxMessage.objects.exists()
    assert broker.sent == []


# --- The cache is an optimisation ------------------------------------------------------------------

DEAD_REDIS = {
    "default": {
        "BACKEND": "config.cache.FailSoftRedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",  # the discard port: nothing listens, connect is refused
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}


@override_settings(CACHES=DEAD_REDIS)
def test_a_dead_cache_misses_and_drops_writes_but_counters_still_raise():
    from redis.exceptions import ConnectionError as RedisConnectionError

    assert cache.get("k", "default") == "default"
    assert cache.get_many(["a", "b"]) == {}
    cache.set("k", 1)  # dropped, no exception
    assert cache.add("k", 1) is False
    assert cache.delete("k") is False
    with pytest.raises(RedisConnectionError):
        cache.incr("k")  # no made-up count: the rate limit decides what to do without one


@override_settings(CACHES=DEAD_REDIS)
def test_lists_and_logs_answer_while_the_cache_is_down(client, editor, environment, caplog):
    factories.IntegrationFactory.create_batch(3, environment=environment)
    client.force_login(editor)
    with caplog.at_level(logging.WARNING, logger="config.cache"):
        listing = client.get(reverse("dashboard:integrations", kwargs={"env": environment.slug}))
        logs = client.get(reverse("dashboard:logs", kwargs={"env": environment.slug}))
    assert listing.status_code == 200 and "3 integrations" in listing.content.decode()
    assert logs.status_code == 200


@override_settings(CACHES=DEAD_REDIS)
def test_disabling_answers_while_the_cache_is_down(
    client, editor, environment, published, django_capture_on_commit_callbacks
):
    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(editor)
    url = reverse("dashboard:set_enabled", kwargs={"env": environment.slug, "integration_id": integration.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"enabled": "false"})
    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.enabled is False


def test_every_task_the_outbox_names_is_registered():
    from config.celery import app

    app.loader.import_default_modules()
    for name in (
        outbox.RUN_SYNC,
        outbox.RUN_SYNC_NOW,
        outbox.CHECK_AUTH,
        outbox.DELIVER_WEBHOOK,
        "integrations.outbox.flush_outbox",
    ):
        assert name in app.tasks, name


def test_a_message_for_an_unknown_task_is_set_aside_and_holds_nothing_up(db, broker, monkeypatch, caplog):
    from celery.exceptions import NotRegistered

    def publish(task, args):
        if task == "integrations.tasks.gone":
            raise NotRegistered(task)
        broker.sent.append((task, tuple(args)))

    monkeypatch.setattr(outbox, "publish", publish)
    now = timezone.now()
    OutboxMessage.objects.create(task="integrations.tasks.gone", args=[1], available_at=now - timedelta(seconds=2))
    OutboxMessage.objects.create(task=outbox.RUN_SYNC, args=["s1"], available_at=now - timedelta(seconds=1))

    with caplog.at_level(logging.ERROR, logger="integrations.outbox"):
        assert outbox.flush_outbox() == 1
    assert broker.sent == [(outbox.RUN_SYNC, ("s1",))]
    parked = OutboxMessage.objects.get()
    assert parked.task == "integrations.tasks.gone" and parked.available_at > now + timedelta(hours=23)
    assert "no task" in parked.last_error and "integrations.tasks.gone" in caplog.text
    assert outbox.flush_outbox() == 0  # not retried at once


def test_a_message_is_its_writers_to_publish_until_its_lease_ends(environment, broker):
    """Written claimed: a sweep running before the writer's after-commit publish leaves it alone,
    and takes it over only if the writer never publishes (it died)."""
    integration = factories.IntegrationFactory(environment=environment)
    outbox.send_on_commit(outbox.CHECK_AUTH, [(integration.pk,)])  # the test's transaction never commits

    assert outbox.flush_outbox() == 0
    with time_machine.travel(timezone.now() + outbox.CLAIM_LEASE + timedelta(seconds=1)):
        assert outbox.flush_outbox() == 1
    assert broker.sent == [(outbox.CHECK_AUTH, (integration.pk,))]
