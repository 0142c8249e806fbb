"""Workers dying mid-sync, and a hanging webhook receiver, with the real moving parts.

tests/test_syncs.py proves the lease rules inside one process. This module proves them end to end,
each part a process of its own like tests/test_broker_outage.py (whose helpers it reuses): a Redis
started for the test only, real `celery worker` (prefork, as in production) and `celery beat`
processes, and the test database (PostgreSQL, committed rows). The provider is Personio, answered
by a local fake (tests/fake_hr.py) whose time-offs endpoint takes a few seconds, so a sync is
RUNNING long enough to be killed after it already wrote its employees.

1. The pool process running a sync is killed (SIGKILL): the worker requeues the task
   (`task_acks_late` + `task_reject_on_worker_lost`), its next pool process sees that the lease
   holder is gone and takes the sync over at once. It ends SUCCEEDED on its second attempt with
   each record once.
2. The whole worker (its process group) is killed: nothing requeues the task, the lease runs out
   and beat's reaper queues the sync again; a fresh worker runs it to SUCCEEDED, second attempt,
   each record once, within lease + reap interval + one run.
3. Two workers as in production (`-Q webhooks` and `-Q celery,syncs,interactive`), and a webhook
   receiver that accepts connections and never answers: while every webhook pool process hangs on
   it, a sync starts and finishes as fast as with no webhook load at all.

Each test prints a `bench=` line. The test process publishes through a Celery app of its own
pointed at this Redis (`outbox.publish` is patched for the test): the domain functions
(`syncs.queue_sync`, `webhooks.emit`) commit and publish exactly as in the web process, and the
shared Redis of REDIS_URL is never touched (`_clear_cache` below). Needs PostgreSQL and
`redis-server` on PATH (skipped without it, failed if RELINK_REQUIRE_SERVICES is set).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations import outbox, syncs, webhooks
from integrations.models import (
    DeliveryStatus,
    Sync,
    SyncedRecord,
    SyncStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
)

from .factories import EnvironmentFactory, IntegrationFactory, ScopeConfigFactory, WebhookEndpointFactory
from .fake_hr import FakeHRServer, load_fixture
from .test_broker_outage import FINISHED, Redis, Service, _free_port, _redis_server, _service_env, _wait_for

SLOW_S = 4.0  # the fake's time-offs answer: a sync RUNNING for this long after its employees
POOL_KILL_BUDGET_S = 45.0  # pool process killed → SUCCEEDED
LEASE_S = 20  # SYNC_LEASE_SECONDS given to the workers in test 2 (default 40)
REAP_S = 5  # SYNC_REAP_SECONDS given to beat in test 2 (default 15)
MARGIN_S = 10.0  # worker start-up, polling, publish
SYNC_START_BUDGET_S = 10.0  # queued → RUNNING while every webhook pool process hangs
HANGING_DELIVERIES = 8
WEBHOOK_CONCURRENCY = 2
CREDENTIALS = {"client_id": "papi-client-123", "client_secret": "personio-secret-value"}
EMPLOYEES = load_fixture("personio", "employees")
TIME_OFFS = load_fixture("personio", "time_offs")
# What a complete sync stores: every employee, and every approved time-off (the adapter drops the rest).
EXPECTED_RECORDS = {
    "hris_employees": len(EMPLOYEES["data"]),
    "hris_absences": sum(1 for t in TIME_OFFS["data"] if t["attributes"].get("status") == "approved"),
}
SCOPE = {
    "hris_employees": {
        "availability": "ENABLED",
        "fields": {"first_name": "ENABLED", "last_name": "ENABLED", "email": "ENABLED"},
    },
    "hris_absences": {
        "availability": "ENABLED",
        "fields": {"employee_id": "ENABLED", "start_date": "ENABLED", "end_date": "ENABLED"},
    },
}
SERVICE_QUEUES = "celery,syncs,interactive"
TIME_OFFS_PATH = "/v1/company/time-offs"
RUN_SYNC_RECEIVED = re.compile(r"Task integrations\.syncs\.run_sync(?:_now)?\[([^]]+)\] received")


@pytest.fixture(autouse=True)
def _clear_cache():
    """Overrides conftest's: nothing here uses the test process's cache, and clearing it would
    FLUSHDB the shared Redis of REDIS_URL."""
    yield


class Stack:
    """A Redis of its own and the Celery processes started on it; the test process publishes to it."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.redis_port = _free_port()
        self.redis = Redis(self.redis_port, tmp_path)
        self.services: list[Service] = []
        self.fakes: list[FakeHRServer] = []
        self.app = Celery("worker-loss-test", set_as_current=False)
        self.app.conf.update(
            broker_url=f"redis://127.0.0.1:{self.redis_port}/0",
            broker_transport_options=dict(settings.REDIS_SOCKET_OPTIONS),
            broker_connection_retry_on_startup=True,
            task_default_queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            task_queues=settings.CELERY_TASK_QUEUES,
            task_routes=settings.CELERY_TASK_ROUTES,  # run_sync → syncs, attempt_delivery → webhooks
        )

    def publish(self, task: str, args) -> None:
        """Stands in for outbox.publish: the same task, routed as the web process routes it."""
        self.app.send_task(task, args=list(args))

    def env(self, **extra: str) -> dict[str, str]:
        env = _service_env(self.redis_port, _free_port())  # no web here; BASE_URL is unused
        env.update(SECRET_KEY="worker-loss-test-secret", **extra)
        return env

    def personio(self, employees_delay: float = 0.0, time_offs_delay: float = 0.0) -> FakeHRServer:
        """A fake Personio (base URL: its url + "/v1", as PERSONIO_BASE_URL)."""
        fake = FakeHRServer().start()
        self.fakes.append(fake)
        fake.route("POST", "/v1/auth", json=load_fixture("personio", "auth"))
        fake.route("GET", "/v1/company/employees", json=EMPLOYEES, delay=employees_delay)
        fake.route("GET", TIME_OFFS_PATH, json=TIME_OFFS, delay=time_offs_delay)
        return fake

    def worker(self, name: str, queues: str, concurrency: int, env: dict[str, str]) -> Service:
        service = Service(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "-Q",
                queues,
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"{name}-{os.getpid()}@%h",
            ],
            env,
            self.tmp_path / f"{name}.log",
        )
        self.services.append(service)
        return service

    def beat(self, env: dict[str, str]) -> Service:
        service = Service(
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
                str(self.tmp_path / "beat-schedule"),
            ],
            env,
            self.tmp_path / "beat.log",
        )
        self.services.append(service)
        return service

    def start(self, *services: Service) -> None:
        """Redis (if not yet up), then these, waiting for every worker to be ready."""
        if not self.redis.running:
            self.redis.start_and_wait()
        for service in services:
            service.start()
        for service in services:
            if service.name != "beat":
                assert _wait_for(lambda s=service: " ready." in s.log(), 60), f"{service.name} not ready\n{self.logs()}"

    def logs(self) -> str:
        fakes = "\n".join(
            f"--- fake Personio {f.url}: {[(r.method, r.path) for r in list(f.requests)][-20:]}" for f in self.fakes
        )
        return "\n".join([*(s.tail() for s in self.services), self.redis.tail(1000), fakes])

    def stop(self) -> None:
        for service in self.services:  # the broker last, so the others shut down against a live one
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - stop the others whatever happens to one
                pass
        try:
            self.app.close()
        finally:
            self.redis.stop()
            for fake in self.fakes:
                fake.stop()


@pytest.fixture
def stack(transactional_db, tmp_path, monkeypatch) -> Iterator[Stack]:
    """Torn down before the test database is flushed (it depends on transactional_db)."""
    _redis_server()  # skip (or fail, in CI) before anything starts
    stack = Stack(tmp_path)
    monkeypatch.setattr(outbox, "publish", stack.publish)
    try:
        yield stack
    finally:
        stack.stop()


def _personio_integration(environment, **kwargs):
    far = timezone.now() + timedelta(days=30)  # the scheduler never finds it due
    scope = ScopeConfigFactory(environment=environment, spec=SCOPE)
    return IntegrationFactory(
        environment=environment,
        tool="personio",
        state="ACTIVE",
        credentials=CREDENTIALS,
        scope_config=scope,
        next_sync_at=far,
        **kwargs,
    )


def _wait_sync(sync: Sync, condition: Callable[[Sync], bool], timeout: float, interval: float = 0.05) -> bool:
    def check() -> bool:
        sync.refresh_from_db()
        return condition(sync)

    return _wait_for(check, timeout, interval)


def _finished(sync: Sync) -> bool:
    return sync.status in FINISHED


def _record_counts(integration) -> Counter:
    return Counter(SyncedRecord.objects.filter(integration=integration).values_list("model", flat=True))


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])  # the field after the state, past "(comm)"


def _pid_gone(pid: int) -> bool:
    """No such process any more (or only its zombie, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _run_floor(stack: Stack, integration) -> float:
    """Seconds from queueing to SUCCEEDED of an unkilled sync, with everything else equal."""
    started = time.monotonic()
    sync, _ = syncs.queue_sync(integration.pk)
    _wait_sync(sync, _finished, SLOW_S + 30)
    elapsed = time.monotonic() - started
    assert sync.status == SyncStatus.SUCCEEDED and sync.attempts == 1, (
        f"the unkilled sync is {sync.status} {sync.error_message!r} (attempt {sync.attempts})\n{stack.logs()}"
    )
    return elapsed


def _start_slow_sync(stack: Stack, fake: FakeHRServer, integration) -> Sync:
    """Queue a sync and return once it is RUNNING, stored its employees and waits on the time-offs."""
    asked = len(fake.requests_to(TIME_OFFS_PATH))
    sync, already = syncs.queue_sync(integration.pk)
    assert not already

    def mid_run(s: Sync) -> bool:
        return (
            s.status == SyncStatus.RUNNING
            and bool(s.run_by)
            and s.models_done == 1
            and len(fake.requests_to(TIME_OFFS_PATH)) > asked
        )

    assert _wait_sync(sync, mid_run, 30), (
        f"sync never ran into the slow time-offs: {sync.status} run_by={sync.run_by!r}\n{stack.logs()}"
    )
    assert _record_counts(integration) == {"hris_employees": EXPECTED_RECORDS["hris_employees"]}
    return sync


def _assert_rerun_without_duplicates(stack: Stack, sync: Sync, integration, killed_run_by: str) -> None:
    assert sync.status == SyncStatus.SUCCEEDED, f"{sync.status} {sync.error_message!r}\n{stack.logs()}"
    assert sync.attempts == 2, f"attempts={sync.attempts}\n{stack.logs()}"
    assert sync.run_by and sync.run_by != killed_run_by, sync.run_by
    assert sync.records_per_model == EXPECTED_RECORDS, sync.records_per_model
    assert _record_counts(integration) == EXPECTED_RECORDS  # each record once
    remote_ids = SyncedRecord.objects.filter(integration=integration).values_list("model", "remote_id")
    assert len(set(remote_ids)) == len(remote_ids) == sum(EXPECTED_RECORDS.values())
    assert list(Sync.objects.filter(integration=integration).values_list("pk", flat=True)) == [sync.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_sync_whose_pool_process_is_killed_finishes_without_duplicates(stack, capsys):
    fake = stack.personio(time_offs_delay=SLOW_S)
    worker = stack.worker("pool-worker", SERVICE_QUEUES, 1, stack.env(PERSONIO_BASE_URL=fake.url + "/v1"))
    environment = EnvironmentFactory(slug="pool-kill", name="Pool kill")
    unkilled, integration = _personio_integration(environment), _personio_integration(environment)
    stack.start(worker)

    floor = _run_floor(stack, unkilled)
    sync = _start_slow_sync(stack, fake, integration)
    killed_run_by = sync.run_by
    host, _, pid_text = killed_run_by.rpartition(":")
    pid = int(pid_text)
    assert host == socket.gethostname(), killed_run_by
    # Only ever a process this test started: a pool process of its own worker.
    assert worker.proc is not None and _parent_pid(pid) == worker.proc.pid, (
        f"{killed_run_by} is not a pool process of the worker (pid {worker.proc and worker.proc.pid})"
    )

    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    _wait_sync(sync, _finished, POOL_KILL_BUDGET_S, 0.1)
    elapsed = time.monotonic() - killed
    assert sync.status in FINISHED, (
        f"sync still {sync.status} (run_by={sync.run_by!r}, attempt {sync.attempts}) "
        f"{elapsed:.1f} s after its pool process was killed\n{stack.logs()}"
    )
    _assert_rerun_without_duplicates(stack, sync, integration, killed_run_by)
    assert elapsed < POOL_KILL_BUDGET_S
    assert worker.running, stack.logs()  # the worker itself lived on and replaced its pool process
    # No beat, no reaper here: the worker requeued the very message and its next pool process took
    # the sync over at once, without waiting out the lease.
    received = Counter(RUN_SYNC_RECEIVED.findall(worker.log()))
    assert sorted(received.values()) == [1, 2], f"run_sync messages received: {received}\n{stack.logs()}"
    assert "WorkerLostError" in worker.log(), stack.logs()

    with capsys.disabled():  # shown even with output captured
        print(f"\nbench=worker_loss pool_kill_to_succeeded_s={elapsed:.1f} floor={floor:.1f}", flush=True)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_sync_whose_whole_worker_is_killed_runs_again_within_a_minute(stack, capsys):
    fake = stack.personio(time_offs_delay=SLOW_S)
    env = stack.env(
        PERSONIO_BASE_URL=fake.url + "/v1",
        SYNC_LEASE_SECONDS=str(LEASE_S),
        SYNC_REAP_SECONDS=str(REAP_S),
    )
    worker = stack.worker("whole-worker", SERVICE_QUEUES, 1, env)
    beat = stack.beat(env)
    environment = EnvironmentFactory(slug="worker-kill", name="Worker kill")
    unkilled, integration = _personio_integration(environment), _personio_integration(environment)
    stack.start(worker, beat)

    floor = _run_floor(stack, unkilled)
    sync = _start_slow_sync(stack, fake, integration)
    killed_run_by = sync.run_by
    pool_pid = int(killed_run_by.rpartition(":")[2])
    assert worker.proc is not None and _parent_pid(pool_pid) == worker.proc.pid, killed_run_by

    lease_held_until = sync.heartbeat_at + timedelta(seconds=LEASE_S)  # no renewal yet (every 10 s)
    # kill -9 of the whole worker: its main process and its pool, no chance to requeue anything.
    proc, worker.proc = worker.proc, None
    os.killpg(proc.pid, signal.SIGKILL)  # its own group (start_new_session): pgid == its pid
    killed = time.monotonic()
    proc.wait(timeout=10)
    assert _wait_for(lambda: _pid_gone(pool_pid), 10), f"pool process {pool_pid} outlived its worker"
    # As a supervisor would, start a fresh worker at once; the sync comes back when its lease ran out.
    fresh = stack.worker("fresh-worker", SERVICE_QUEUES, 1, env)
    stack.start(fresh)

    bound = LEASE_S + REAP_S + floor + MARGIN_S
    _wait_sync(sync, _finished, bound, 0.1)
    elapsed = time.monotonic() - killed
    assert sync.status in FINISHED, (
        f"sync still {sync.status} (run_by={sync.run_by!r}, attempt {sync.attempts}) "
        f"{elapsed:.1f} s after its worker was killed (bound {bound:.0f} s)\n{stack.logs()}"
    )
    _assert_rerun_without_duplicates(stack, sync, integration, killed_run_by)
    assert elapsed < bound
    # It came back through the reaper (the lease), not through a redelivered message.
    assert f"sync {sync.pk} lost its worker (attempt 1); queued again" in fresh.log(), stack.logs()
    # Not before the lease ran out.
    assert sync.ended_at > lease_held_until, f"ended {sync.ended_at}, lease held until {lease_held_until}"

    with capsys.disabled():
        print(
            f"\nbench=worker_loss worker_kill_to_succeeded_s={elapsed:.1f} lease_s={LEASE_S} reap_s={REAP_S} "
            f"run_s={floor:.1f}",
            flush=True,
        )


class HangingReceiver:
    """Accepts connections on 127.0.0.1 and never answers (until closed)."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.connections: list[socket.socket] = []
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hooks"

    def start(self) -> HangingReceiver:
        self.thread.start()
        return self

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        """Hang up on everyone (their deliveries fail at once) and accept no more."""
        self.closed = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for conn in list(self.connections):
            conn.close()
        self.thread.join(timeout=5)


def _sync_start_s(stack: Stack, integration) -> tuple[Sync, float]:
    """Queue a sync; seconds from queueing to its claim by a worker (its started_at)."""
    queued_at = timezone.now()
    sync, already = syncs.queue_sync(integration.pk)
    assert not already
    _wait_sync(sync, lambda s: s.status != SyncStatus.QUEUED, SYNC_START_BUDGET_S + 5, 0.02)
    assert sync.started_at is not None, f"sync still {sync.status}\n{stack.logs()}"
    return sync, (sync.started_at - queued_at).total_seconds()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_hanging_webhook_receiver_does_not_delay_syncs(stack, capsys):
    fake = stack.personio()  # fast
    env = stack.env(PERSONIO_BASE_URL=fake.url + "/v1")
    webhook_worker = stack.worker("webhook-worker", "webhooks", WEBHOOK_CONCURRENCY, env)
    sync_worker = stack.worker("sync-worker", SERVICE_QUEUES, 2, env)
    receiver = HangingReceiver().start()
    environment = EnvironmentFactory(slug="queue-isolation", name="Queue isolation")
    integration = _personio_integration(environment)
    # Only the events emitted below: the syncs' own sync-finished webhooks go nowhere.
    WebhookEndpointFactory(
        environment=environment, url=receiver.url, event_types=[WebhookEvent.INTEGRATION_STATE_CHANGED]
    )
    try:
        stack.start(webhook_worker, sync_worker)

        floor_sync, floor = _sync_start_s(stack, integration)
        assert _wait_sync(floor_sync, _finished, 15) and floor_sync.status == SyncStatus.SUCCEEDED, (
            f"{floor_sync.status} {floor_sync.error_message!r}\n{stack.logs()}"
        )

        with transaction.atomic():  # published after the commit, through the outbox, to `webhooks`
            for _ in range(HANGING_DELIVERIES):
                webhooks.emit(
                    environment.pk, WebhookEvent.INTEGRATION_STATE_CHANGED, webhooks.integration_data(integration)
                )
        # The webhook worker is now stuck on the receiver (15 s timeout each).
        assert _wait_for(lambda: len(receiver.connections) >= HANGING_DELIVERIES, 15, 0.02), (
            f"{len(receiver.connections)} connection(s) to the hanging receiver\n{stack.logs()}"
        )

        sync, sync_start = _sync_start_s(stack, integration)
        pending_at_start = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()
        assert sync_start < SYNC_START_BUDGET_S, f"sync started {sync_start:.1f} s after queueing\n{stack.logs()}"
        assert _wait_sync(sync, _finished, SYNC_START_BUDGET_S) and sync.status == SyncStatus.SUCCEEDED, (
            f"{sync.status} {sync.error_message!r}\n{stack.logs()}"
        )
        # The sync is done while not one delivery has got an answer: all still hanging or waiting.
        assert pending_at_start == HANGING_DELIVERIES, pending_at_start
        assert WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count() == HANGING_DELIVERIES
        assert not WebhookAttempt.objects.exists(), list(WebhookAttempt.objects.values_list("error", flat=True))
        # Sent by the webhook worker alone, in batches sent at once (integrations/webhooks.py): every
        # delivery is in flight, none twice.
        assert len(receiver.connections) == HANGING_DELIVERIES

        with capsys.disabled():
            print(
                f"\nbench=queue_isolation sync_start_s={sync_start:.2f} hanging_deliveries={HANGING_DELIVERIES} "
                f"floor={floor:.2f}",
                flush=True,
            )
    finally:
        receiver.close()  # the hanging deliveries fail at once, so the webhook worker stops promptly
