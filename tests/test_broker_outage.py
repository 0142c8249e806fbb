"""A real broker outage, as a user sees it: nothing hangs, nothing is lost, nothing runs twice.

tests/test_outbox.py proves the outbox's rules with a fake broker inside one process. This module
proves them end to end with the real moving parts, each a process of its own: a Redis started for
this test only, gunicorn serving the web and the /v1 API, a Celery worker and Celery beat, all on
the test database (PostgreSQL, committed rows).

Once the pipeline has worked (beat sent a flush, the worker ran it) that Redis is killed. Then a
force sync over the API, a customer completing a reconnection link on the hosted page, and an
integration deleted over the API all answer normally and promptly: the work is committed and its
tasks wait in the outbox. The outage lasts over one of beat's flushes, which beat, the worker and
the web all survive. Once a fresh, empty Redis is back on the same
port, beat's flush_outbox publishes what waited: the forced sync succeeds (the seconds from the
broker's return to SUCCEEDED are printed as a `bench=broker_outage` line), the webhooks
(integration-deleted, sync-finished, and data-changed for the records the sync wrote) reach the
receiver exactly once each, correctly signed, and the outbox ends empty.

Needs PostgreSQL (the `postgres` marker) and `redis-server` on PATH (skipped without it, unless
RELINK_REQUIRE_SERVICES is set: then a missing redis-server is a failure). The shared Redis of
REDIS_URL is never touched: this module does not clear the cache (see `_clear_cache` below).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from html import unescape
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry
from standardwebhooks.webhooks import Webhook

from connect_flow import links
from connect_flow.models import ConnectionLink
from integrations import outbox
from integrations.models import (
    ApiKey,
    DeliveryStatus,
    Integration,
    OutboxMessage,
    Sync,
    SyncStatus,
    WebhookDelivery,
    WebhookEvent,
)
from sandbox.models import SandboxCompany

from .factories import EnvironmentFactory, IntegrationFactory, SandboxEmployeeFactory, WebhookEndpointFactory
from .webhook_receiver import Receiver, start_receiver

ROOT = Path(__file__).resolve().parent.parent
FLUSH_SECONDS = 10  # OUTBOX_FLUSH_SECONDS given to beat (the default)
REQUEST_BUDGET_S = 10.0  # no request may take longer while the broker is down
SYNC_BUDGET_S = 60.0  # broker back → forced sync SUCCEEDED
SETTLE_BUDGET_S = 60.0  # then: webhooks received, outbox empty
FORM_TOKEN = 'name="form_token" value="'
FLUSH_RAN = re.compile(r"Task integrations\.outbox\.flush_outbox\[[^]]+\] succeeded")
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# What beat logs when a due task meets a dead broker: a refused publish (its producer was connected
# before), or its connection retry loop (the broker was already down when it first needed one).
BEAT_SEND_FAILED = ("Couldn't apply scheduled task flush-outbox", "beat: Connection error")
FINISHED = {
    SyncStatus.SUCCEEDED,
    SyncStatus.PARTIALLY_FAILED,
    SyncStatus.FAILED,
    SyncStatus.AUTHENTICATION_FAILED,
    SyncStatus.CANCELLED,
}


@pytest.fixture(autouse=True)
def _clear_cache():
    """Overrides conftest's: nothing here uses the test process's cache, and clearing it would
    FLUSHDB the shared Redis of REDIS_URL."""
    yield


def _redis_server() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    if os.environ.get("RELINK_REQUIRE_SERVICES"):
        pytest.fail("RELINK_REQUIRE_SERVICES is set but redis-server is not on PATH (apt-get install redis-server)")
    pytest.skip("needs redis-server on PATH to start a Redis of its own (apt-get install redis-server)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


class Service:
    """One subprocess, its output in a log file under tmp_path."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path):
        self.name, self.args, self.env, self.log_path = name, args, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        with open(self.log_path, "a") as log:
            log.write(f"--- start {' '.join(self.args)}\n")
            log.flush()
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM and wait; then SIGKILL this process's own group (gunicorn's worker with it)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of its group is left (pgid == its pid)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} ({self.log_path}) ---\n{self.log()[-chars:]}"


class Redis(Service):
    def __init__(self, port: int, tmp_path: Path):
        super().__init__(
            "redis",
            [
                _redis_server(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            dict(os.environ),
            tmp_path / "redis.log",
        )
        self.port = port

    def ping(self) -> bool:
        try:
            # One try: redis-py's default retries would back off for seconds.
            with redis.Redis(
                host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
            ) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start_and_wait(self) -> Redis:
        self.start()
        assert _wait_for(self.ping, 10, 0.05), self.tail()
        return self


def _database_url() -> str:
    db = connection.settings_dict  # NAME is the test database's
    auth = quote(db["USER"] or "postgres")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'])}"


def _service_env(redis_port: int, web_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        SECRET_KEY="broker-outage-test-secret",
        FERNET_KEYS=",".join(settings.FERNET_KEYS),  # the test process's keys: credentials decrypt
        DATABASE_URL=_database_url(),
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        CELERY_TASK_ALWAYS_EAGER="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        BASE_URL=f"http://127.0.0.1:{web_port}",
        WHITENOISE_USE_FINDERS="true",
        SANDBOX_ENABLED="true",
        WEBHOOK_ALLOW_PRIVATE_TARGETS="true",  # the receiver is on 127.0.0.1
        OUTBOX_FLUSH_SECONDS=str(FLUSH_SECONDS),
        # A reconnect sets next_sync_at to now, so a scheduler tick after the forced sync would
        # queue another one; keep the scheduler out of this test (its first tick is an hour away).
        SCHEDULER_TICK_SECONDS="3600",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    return env


def _form_token(html: str) -> str:
    start = html.index(FORM_TOKEN) + len(FORM_TOKEN)
    return unescape(html[start : html.index('"', start)])


def _events(receiver: Receiver) -> list[dict]:
    return [json.loads(r.body) for r in list(receiver.received)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_work_accepted_during_a_broker_outage_runs_once_the_broker_is_back(tmp_path, capsys):
    _redis_server()  # skip (or fail, in CI) before anything starts
    redis_port = _free_port()
    web_port = next(p for p in iter(_free_port, None) if p != redis_port)
    env = _service_env(redis_port, web_port)
    base_url = env["BASE_URL"]
    own_redis = Redis(redis_port, tmp_path)
    web = Service(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{web_port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--access-logfile",
            "-",
            "--no-control-socket",
        ],  # not gunicorn's shared ~/.gunicorn/gunicorn.ctl
        env,
        tmp_path / "web.log",
    )
    worker = Service(
        "worker",
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
            f"outage-{os.getpid()}@%h",
        ],
        env,
        tmp_path / "worker.log",
    )
    beat = Service(
        "beat",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel=INFO",
            "-s",
            str(tmp_path / "beat-schedule"),
        ],
        env,
        tmp_path / "beat.log",
    )
    services = [web, worker, beat, own_redis]
    receiver, receiver_server = start_receiver()

    def logs() -> str:
        return "\n".join(s.tail() for s in services)

    # --- Data, committed: the subprocesses read it from the test database -------------------
    environment = EnvironmentFactory(slug="outage", name="Outage")
    _, raw_api_key = ApiKey.create(environment, "Backend")
    company = SandboxCompany.objects.create(name="Initech Outage")
    SandboxEmployeeFactory.create_batch(3, company=company)
    _, sandbox_key = company.create_key("first")
    _, new_sandbox_key = company.create_key("reconnect")
    far = timezone.now() + timedelta(days=30)  # the scheduler never finds these due
    integration = IntegrationFactory(
        environment=environment, state="ACTIVE", credentials={"api_key": sandbox_key}, next_sync_at=far
    )
    doomed = IntegrationFactory(
        environment=environment, state="ACTIVE", credentials={"api_key": sandbox_key}, next_sync_at=far
    )
    endpoint = WebhookEndpointFactory(environment=environment, url=receiver.url)  # all events
    relink = links.create_relink_link(integration)

    http = httpx.Client(base_url=base_url, timeout=REQUEST_BUDGET_S + 5)
    api_headers = {"Authorization": f"Bearer {raw_api_key}"}
    try:
        own_redis.start_and_wait()
        for service in (web, worker, beat):
            service.start()

        def web_up() -> bool:
            try:
                return http.get("/login/").status_code == 200
            except httpx.HTTPError:
                return False

        assert _wait_for(web_up, 30), "web did not answer /login/\n" + logs()
        assert _wait_for(lambda: " ready." in worker.log(), 30), "worker not ready\n" + logs()
        # Before the outage, the pipeline works and beat holds a broker connection, as a beat that
        # has run for a while does: its first flush (FLUSH_SECONDS after it started) went through.
        assert _wait_for(lambda: "Sending due task flush-outbox" in beat.log(), FLUSH_SECONDS + 20), (
            "beat sent no flush\n" + logs()
        )
        assert _wait_for(lambda: FLUSH_RAN.search(worker.log()), 10), "the worker ran no flush\n" + logs()

        # --- The broker goes away --------------------------------------------------------------
        own_redis.stop()
        assert not own_redis.ping()
        timings: dict[str, float] = {}

        def timed(name: str, call: Callable[[], httpx.Response]) -> httpx.Response:
            started = time.monotonic()
            response = call()
            timings[name] = time.monotonic() - started
            assert timings[name] < REQUEST_BUDGET_S, f"{name} took {timings[name]:.1f} s with the broker down\n{logs()}"
            return response

        forced = timed(
            "force-sync",
            lambda: http.post("/v1/force-sync", json={}, headers={**api_headers, "X-Integration-Id": integration.pk}),
        )
        assert forced.status_code == 200, f"{forced.status_code} {forced.text}\n{logs()}"
        body = forced.json()
        assert body["status"] == "success" and body["data"]["already_queued"] is False, body
        sync_id = body["data"]["sync_id"]

        page = timed("connect-get", lambda: http.get(f"/connect/{relink.token}/"))
        assert page.status_code == 200, f"{page.status_code}\n{logs()}"
        done = timed(
            "connect-post",
            lambda: http.post(
                f"/connect/{relink.token}/",
                data={"form_token": _form_token(page.text), "tool": "sandbox", "api_key": new_sandbox_key},
            ),
        )
        assert done.status_code == 200, f"{done.status_code} {done.text[-2000:]}\n{logs()}"
        assert "Connection successful" in done.text, done.text[-3000:]

        deleted = timed("delete", lambda: http.delete(f"/v1/integrations/{doomed.pk}", headers=api_headers))
        assert deleted.status_code == 200, f"{deleted.status_code} {deleted.text}\n{logs()}"

        # Committed, not published: the tasks wait in the outbox, nothing ran.
        assert ConnectionLink.objects.get(pk=relink.link.pk).completed_at is not None
        assert Integration.objects.get(pk=integration.pk).get_credentials() == {"api_key": new_sandbox_key}
        assert not Integration.objects.filter(pk=doomed.pk).exists()
        waiting = list(OutboxMessage.objects.order_by("pk"))
        deleted_delivery = WebhookDelivery.objects.get(event_type=WebhookEvent.INTEGRATION_DELETED)
        assert [(m.task, m.args) for m in waiting] == [
            (outbox.RUN_SYNC_NOW, [sync_id]),  # a person's sync: the interactive queue
            (outbox.DELIVER_WEBHOOK, [deleted_delivery.pk]),
        ], waiting
        assert all(m.attempts >= 1 and m.last_error for m in waiting), [(m.attempts, m.last_error) for m in waiting]
        syncs = Sync.objects.filter(integration_id=integration.pk)
        # The reconnect's queue_sync found the forced sync still QUEUED and reused it.
        assert list(syncs.values_list("pk", "status")) == [(sync_id, SyncStatus.QUEUED)]
        assert not receiver.received

        # Hold the outage over one of beat's flushes: beat must survive sending into a dead broker.
        mark = len(beat.log())
        assert _wait_for(lambda: any(m in beat.log()[mark:] for m in BEAT_SEND_FAILED), FLUSH_SECONDS + 5), (
            "beat tried no flush while the broker was down\n" + logs()
        )
        time.sleep(2)  # its publish gives up after ~1 s (CELERY_TASK_PUBLISH_RETRY_POLICY)
        assert beat.running and worker.running and web.running, logs()
        assert OutboxMessage.objects.count() == len(waiting)

        # --- A fresh, empty broker on the same port ------------------------------------------------
        own_redis.start_and_wait()
        t0 = time.monotonic()
        sync = Sync.objects.get(pk=sync_id)

        def sync_finished() -> bool:
            sync.refresh_from_db()
            return sync.status in FINISHED

        _wait_for(sync_finished, SYNC_BUDGET_S, 0.1)
        elapsed = time.monotonic() - t0
        assert sync.status == SyncStatus.SUCCEEDED, (
            f"sync {sync_id} is {sync.status} {sync.error_message!r} after {elapsed:.1f} s\n{logs()}"
        )
        assert elapsed < SYNC_BUDGET_S

        def settled() -> bool:
            finished = syncs.filter(status__in=FINISHED).count()
            types = Counter(e["type"] for e in _events(receiver))
            return (
                types[WebhookEvent.INTEGRATION_DELETED] >= 1
                and types[WebhookEvent.SYNC_FINISHED] >= finished
                and not OutboxMessage.objects.exists()
                and not WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists()
            )

        assert _wait_for(settled, SETTLE_BUDGET_S, 0.25), (
            f"not settled: received {[e['type'] for e in _events(receiver)]}, "
            f"outbox {list(OutboxMessage.objects.values_list('task', 'args', 'attempts'))}\n{logs()}"
        )
        time.sleep(1)  # a duplicate would arrive right behind the original

        # --- Nothing lost, nothing twice -----------------------------------------------------------
        received = list(receiver.received)
        ids = Counter(r.headers["webhook-id"] for r in received)
        assert all(n == 1 for n in ids.values()), f"webhook delivered more than once: {ids}"
        secret = endpoint.get_secret()
        for r in received:  # as a receiver checks them
            Webhook(secret).verify(r.body, {k: r.headers[k] for k in SIGNATURE_HEADERS})
        events = _events(receiver)
        deleted_events = [e for e in events if e["type"] == WebhookEvent.INTEGRATION_DELETED]
        assert [e["data"]["id"] for e in deleted_events] == [doomed.pk]

        all_syncs = list(syncs)
        assert [s.pk for s in all_syncs] == [sync_id], "one queueing, one sync"
        assert not syncs.filter(status__in=[SyncStatus.QUEUED, SyncStatus.RUNNING]).exists()
        finished_ids = sorted(s.pk for s in all_syncs if s.status in FINISHED)
        sync_events = [e for e in events if e["type"] == WebhookEvent.SYNC_FINISHED]
        assert sorted(e["data"]["sync_id"] for e in sync_events) == finished_ids
        assert [e["data"]["sync_state"] for e in sync_events] == [SyncStatus.SUCCEEDED]
        # The sync wrote the integration's records: one data-changed per sync that changed some.
        changed_events = [e for e in events if e["type"] == WebhookEvent.DATA_CHANGED]
        assert [[m["name"] for m in e["data"]["changed_models"]] for e in changed_events] == [
            s.changed_models for s in all_syncs if s.changed_models
        ]
        assert len(events) == len(deleted_events) + len(sync_events) + len(changed_events), [e["type"] for e in events]

        deliveries = list(WebhookDelivery.objects.values_list("event_type", "status", "attempts"))
        assert sorted(deliveries) == sorted(
            [(WebhookEvent.INTEGRATION_DELETED, DeliveryStatus.DELIVERED, 1)]
            + [(WebhookEvent.SYNC_FINISHED, DeliveryStatus.DELIVERED, 1)] * len(finished_ids)
            + [(WebhookEvent.DATA_CHANGED, DeliveryStatus.DELIVERED, 1)] * len(changed_events)
        ), deliveries
        # Each task reached the worker once: the outbox published every row exactly once.
        worker_log = worker.log()
        ran = _received(worker_log, outbox.RUN_SYNC) + _received(worker_log, outbox.RUN_SYNC_NOW)
        assert ran == len(all_syncs), worker.tail(6000)
        assert _received(worker_log, outbox.DELIVER_WEBHOOK) == len(deliveries), worker.tail(6000)
        assert not OutboxMessage.objects.exists()

        (tmp_path / "timings.json").write_text(json.dumps({"requests_s": timings, "back_to_sync_s": elapsed}))
        with capsys.disabled():  # shown even with output captured
            print(
                f"\nbench=broker_outage broker_back_to_sync_succeeded_s={elapsed:.1f} flush_interval_s={FLUSH_SECONDS}",
                flush=True,
            )
    finally:
        http.close()
        for service in services:  # the broker last, so the others shut down against a live one
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - stop the others whatever happens to one
                pass
        receiver_server.shutdown()
        receiver_server.server_close()


def _received(worker_log: str, task: str) -> int:
    """How many times the worker received `task` (one line per message it got)."""
    return sum(
        1 for line in worker_log.splitlines() if f"Task {task}[" in line and line.rstrip().endswith("] received")
    )
