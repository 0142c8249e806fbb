"""The Celery app, its beat schedule and periodic tasks, and a real worker on the configured broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from config.celery import app
from connect_flow.tasks import record_expired_links
from integrations.models import AuditEvent, RequestLog
from integrations.tasks import prune_request_logs

from .factories import ConnectionLinkFactory, RequestLogFactory

ROOT = Path(__file__).resolve().parent.parent


def test_every_beat_entry_names_a_registered_task_and_expires():
    app.loader.import_default_modules()
    assert settings.CELERY_BEAT_SCHEDULE
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, name
        assert entry["options"]["expires"] > 0, name


def test_worker_reliability_settings():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.task_time_limit and app.conf.task_soft_time_limit < app.conf.task_time_limit


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("integrations.syncs.run_sync", "syncs"),
        ("integrations.webhooks.attempt_delivery", "webhooks"),
        ("integrations.webhooks.deliver_due_webhooks", "webhooks"),
        ("integrations.webhooks.retry_due_webhooks", "celery"),  # only queues deliver_due_webhooks
        ("integrations.health.check_integration", "interactive"),
        ("integrations.syncs.tick", "celery"),
        ("integrations.syncs.reap_stuck_syncs", "celery"),
        ("integrations.outbox.flush_outbox", "celery"),
    ],
)
def test_each_task_goes_to_exactly_one_queue(task, queue):
    """A direct exchange delivers to every queue bound with the message's routing key: each queue
    needs a key of its own, or every task would be copied into all four."""
    routed = app.amqp.router.route({}, task)["queue"]
    assert routed.name == queue
    bound = [q.name for q in app.amqp.queues.values() if q.exchange.name == routed.exchange.name]
    assert [name for name in bound if app.amqp.queues[name].routing_key == routed.routing_key] == [queue]


@pytest.mark.django_db
def test_expired_links_are_recorded_once():
    expired = ConnectionLinkFactory(expires_at=timezone.now() - timedelta(minutes=1))
    ConnectionLinkFactory(expires_at=timezone.now() + timedelta(minutes=30))  # still valid
    ConnectionLinkFactory(expires_at=timezone.now() - timedelta(minutes=1), completed_at=timezone.now())

    assert record_expired_links() == 1
    assert record_expired_links() == 0
    events = AuditEvent.objects.filter(action="link.expired")
    assert [e.details["link_id"] for e in events] == [expired.id]
    assert events[0].integration_id == expired.integration_id


@pytest.mark.django_db
def test_prune_request_logs_deletes_only_old_rows(settings):
    settings.REQUEST_LOG_RETENTION_DAYS = 30
    old = RequestLogFactory(created_at=timezone.now() - timedelta(days=31))
    recent = RequestLogFactory(created_at=timezone.now() - timedelta(days=29))
    assert prune_request_logs() == 1
    assert list(RequestLog.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not RequestLog.objects.filter(pk=old.pk).exists()


def _service_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="celery-test",
        FERNET_KEYS=settings.FERNET_KEYS[0],
        CELERY_FILESYSTEM_DIR=str(tmp_path / "broker"),
        CELERY_TASK_ALWAYS_EAGER="false",
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    return env


def test_a_real_worker_executes_a_task_sent_through_the_broker(tmp_path):
    """Whatever broker is configured (Redis in CI, the embedded filesystem broker otherwise)."""
    env = _service_env(tmp_path)
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"test-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        sent = subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from integrations.tasks import ping; print(ping.delay().id)",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        task_id = sent.stdout.strip().splitlines()[-1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if f"integrations.tasks.ping[{task_id}] succeeded" in log_path.read_text():
                break
            time.sleep(0.5)
        else:
            pytest.fail("worker did not execute the task:\n" + log_path.read_text()[-3000:])
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.redis
def test_redis_is_the_broker_and_the_cache_when_configured():
    from django.core.cache import cache

    assert app.conf.broker_url == settings.REDIS_URL
    cache.set("relink-test-key", "value", 10)
    assert cache.get("relink-test-key") == "value"
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.transport.driver_type == "redis"
