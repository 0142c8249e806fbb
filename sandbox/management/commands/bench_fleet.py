"""Benchmark a fleet of syncs through a real Celery worker, and how long a person waits behind it.

    DATABASE_URL=postgres://… REDIS_URL=redis://127.0.0.1:6379/0 manage.py bench_fleet \\
        --integrations 1000 --employees 50

What it does:
- creates the database `relink_bench_fleet` (`--database`) on DATABASE_URL's server, migrates it and
  writes one environment with `--integrations` Sandbox HR companies of `--employees` employees each,
  and one integration per company (plus one kept out of the fleet); drops it at the end;
- uses Redis database `--redis-db` (default 13) of REDIS_URL's server as the broker, so no other
  worker takes the bench's tasks; deletes its queues there before and after;
- starts gunicorn (serving Sandbox HR, which the syncs read over real HTTP) and one Celery worker
  (`-Q interactive,celery,syncs`, `--concurrency`), as in production;
- fleet: makes every integration due and runs the scheduler tick, which queues one sync each;
  measures until all have finished: syncs/s and the worker's CPU time per sync (its processes'
  user + system time from /proc);
- floor: the same HTTP requests the syncs make (auth check and each model of the scope config,
  through the adapter) with `--concurrency` threads and no database: syncs/s;
- interactive: with the fleet queued again (a backlog of `--integrations` scheduled syncs), a sync
  queued as a person's (a completed link, Force sync) for the integration kept out: seconds from
  queueing it to RUNNING; floor: the same on the idle worker before the backlog.

Prints:
    bench=fleet integrations=… employees=… syncs_per_s=… worker_cpu_ms_per_sync=… floor_syncs_per_s=… ratio=…
    bench=interactive backlog=… queued_to_running_s=… floor_s=…
Results: docs/PERFORMANCE.md, "Fleet".
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils import timezone

from config.celery import app as celery_app
from integrations import scopes, syncs
from integrations.lib import bench
from integrations.lib.tokens import hash_secret, new_secret
from integrations.models import Environment, Integration, ScopeConfig, Sync, SyncStatus
from integrations.providers import get_provider
from sandbox.models import SANDBOX_KEY_PREFIX, SandboxApiKey, SandboxCompany, SandboxEmployee

QUEUES = "interactive,celery,syncs"


class Command(BaseCommand):
    help = "Benchmark a fleet of syncs through a real Celery worker, and a person's sync behind its backlog."

    def add_arguments(self, parser):
        parser.add_argument("--integrations", type=int, default=1000)
        parser.add_argument("--employees", type=int, default=50)
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes (and floor threads)")
        parser.add_argument("--database", default="relink_bench_fleet", help="created and dropped by the command")
        parser.add_argument("--redis-db", type=int, default=13, help="the broker's database number, the bench's own")
        parser.add_argument("--keep-database", action="store_true")
        parser.add_argument("--timeout", type=float, default=900, help="seconds the fleet may take")

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            raise CommandError("bench_fleet needs Redis: set REDIS_URL=redis://…")
        broker = _redis_db(settings.REDIS_URL, options["redis_db"])
        if broker.rstrip("/") == settings.REDIS_URL.rstrip("/"):
            raise CommandError("--redis-db must name a Redis database of the bench's own, not REDIS_URL's")
        celery_app.conf.update(broker_url=broker)  # this process publishes there (the tick, the person's sync)
        started = time.monotonic()
        processes = []
        with bench.own_database(options["database"], options["keep_database"]) as database:
            try:
                _purge(broker)
                port = bench.free_port()
                self._create_fleet(options["integrations"], options["employees"], port)
                connections.close_all()
                env = bench.process_env(database, port, REDIS_URL=broker, SYNC_HEARTBEAT_SECONDS="10")
                processes.append(bench.gunicorn(port, env))
                with tempfile.TemporaryDirectory() as folder:
                    processes.append(bench.celery_worker(env, QUEUES, options["concurrency"], Path(folder) / "ready"))
                    worker = processes[-1]
                    self.stdout.write(
                        f"machine: {os.cpu_count()} CPUs; worker --concurrency {options['concurrency']}; "
                        f"setup {time.monotonic() - started:.1f} s"
                    )
                    settings.BASE_URL = f"http://127.0.0.1:{port}"
                    idle = self._interactive()
                    floor = self._floor(options["concurrency"])
                    self._fleet(options, worker.pid, floor)
                    self._backlog_and_person(options["integrations"], idle)
            finally:
                for process in reversed(processes):
                    bench.stop(process)
                _purge(broker)
        self.stdout.write(f"total {time.monotonic() - started:.1f} s")

    # --- Data ----------------------------------------------------------------------------------

    def _create_fleet(self, count: int, employees: int, port: int) -> None:
        env = Environment.objects.create(slug="bench-fleet", name="Fleet benchmark", sync_interval=timedelta(hours=3))
        spec = scopes.everything_spec("HRIS")
        ScopeConfig.objects.create(environment=env, name="All HRIS data", category="HRIS", spec=spec, is_default=True)
        rng = random.Random(7)
        companies = SandboxCompany.objects.bulk_create(
            SandboxCompany(name=f"Fleet company {n}", slug=f"fleet-{n}", environment=env) for n in range(count + 1)
        )
        SandboxEmployee.objects.bulk_create(
            (
                SandboxEmployee(
                    company=company,
                    first_name=f"First{n}",
                    last_name=f"Last{n}",
                    email=f"e{n}@fleet-{company.pk}.example",
                    department=rng.choice(["Sales", "Ops", "R&D"]),
                    salary=rng.randrange(40_000, 120_000, 500),
                )
                for company in companies
                for n in range(employees)
            ),
            batch_size=5000,
        )
        keys, integrations = [], []
        far = timezone.now() + timedelta(days=30)
        for n, company in enumerate(companies):
            raw = new_secret(SANDBOX_KEY_PREFIX)
            keys.append(SandboxApiKey(company=company, prefix=raw[:10], key_hash=hash_secret(raw), label="bench"))
            integration = Integration(
                id=f"sandbox:fleet{n:019d}",
                environment=env,
                tool="sandbox",
                category="HRIS",
                end_user_organization_name=company.name,
                end_user_origin_id=f"fleet-{n}",
                next_sync_at=far,
            )
            integration.set_credentials({"api_key": raw})
            integrations.append(integration)
        SandboxApiKey.objects.bulk_create(keys, batch_size=2000)
        Integration.objects.bulk_create(integrations, batch_size=2000)

    # --- Measuring -----------------------------------------------------------------------------

    def _fleet_ids(self) -> list[str]:
        return list(
            Integration.objects.filter(environment__slug="bench-fleet")
            .exclude(end_user_origin_id=f"fleet-{self._person_index()}")
            .values_list("pk", flat=True)
        )

    def _person_index(self) -> int:
        return Integration.objects.filter(environment__slug="bench-fleet").count() - 1

    def _person(self) -> Integration:
        return Integration.objects.get(end_user_origin_id=f"fleet-{self._person_index()}")

    def _make_due(self, ids: list[str]) -> int:
        Integration.objects.filter(pk__in=ids).update(next_sync_at=timezone.now() - timedelta(seconds=1))
        return syncs.tick(batch_size=500, max_batches=10_000)

    def _fleet(self, options: dict, worker_pid: int, floor: float) -> None:
        ids = self._fleet_ids()
        cpu_before = bench.cpu_seconds(worker_pid)
        begin = time.monotonic()
        queued = self._make_due(ids)
        deadline = begin + options["timeout"]
        while True:
            done = Sync.objects.filter(integration_id__in=ids).exclude(status__in=["QUEUED", "RUNNING"]).count()
            if done >= queued or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        seconds = time.monotonic() - begin
        cpu = bench.cpu_seconds(worker_pid) - cpu_before
        succeeded = Sync.objects.filter(integration_id__in=ids, status=SyncStatus.SUCCEEDED).count()
        if done < queued:
            self.stderr.write(f"only {done} of {queued} syncs finished within {options['timeout']:.0f} s")
        rate = done / seconds
        self.stdout.write(
            f"bench=fleet integrations={len(ids)} employees={options['employees']} syncs={done} "
            f"succeeded={succeeded} seconds={seconds:.1f} syncs_per_s={rate:.1f} "
            f"worker_cpu_ms_per_sync={cpu * 1000 / max(done, 1):.1f} floor_syncs_per_s={floor:.1f} "
            f"ratio={floor / max(rate, 1e-9):.1f}"
        )

    def _floor(self, threads: int) -> float:
        """The syncs' HTTP requests through the adapter, no database, `threads` at a time."""
        provider = get_provider("sandbox")
        config = ScopeConfig.objects.get(environment__slug="bench-fleet")
        models = [(m, sorted(spec["fields"])) for m, spec in config.spec.items()]
        credentials = [i.get_credentials() for i in Integration.objects.filter(environment__slug="bench-fleet")]
        sample = credentials[: max(100, threads * 25)]
        position = iter(range(len(sample)))
        lock = threading.Lock()

        def run() -> None:
            while True:
                with lock:
                    n = next(position, None)
                if n is None:
                    return
                provider.check_auth(sample[n])
                for model, fields in models:
                    for _ in _read(provider, model, sample[n], fields):
                        pass

        begin = time.monotonic()
        workers = [threading.Thread(target=run) for _ in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        return len(sample) / (time.monotonic() - begin)

    def _interactive(self) -> float:
        """Seconds from a person's sync being queued to RUNNING."""
        person = self._person()
        Sync.objects.filter(integration=person).delete()
        begin = timezone.now()
        sync, _ = syncs.queue_sync(person.pk)
        waited = None
        while True:
            sync.refresh_from_db()
            if waited is None and sync.started_at is not None:
                waited = (sync.started_at - begin).total_seconds()
            if waited is not None and sync.status not in (SyncStatus.QUEUED, SyncStatus.RUNNING):
                return waited
            if (timezone.now() - begin).total_seconds() > 120:
                raise CommandError("the person's sync did not start and finish within 120 s")
            time.sleep(0.02)

    def _backlog_and_person(self, count: int, idle: float) -> None:
        ids = self._fleet_ids()
        Sync.objects.filter(integration_id__in=ids).delete()
        self._make_due(ids)
        time.sleep(1)  # the worker is busy with the backlog
        waited = statistics.median(self._interactive() for _ in range(3))
        self.stdout.write(f"bench=interactive backlog={count} queued_to_running_s={waited:.2f} floor_s={idle:.2f}")


def _read(provider, model: str, credentials: dict, fields: list[str]):
    """A model's records as the sync reads them: page by page where the adapter pages."""
    pages = getattr(provider, "fetch_pages", None)
    if pages is None:
        yield from provider.fetch(model, credentials, fields)
        return
    for page in pages(model, credentials, fields):
        yield from page.rows


def _redis_db(url: str, number: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{number}", parts.query, parts.fragment))


def _purge(broker: str) -> None:
    """Empty the bench's own broker database (its queues and unacked messages)."""
    redis.Redis.from_url(broker).flushdb()
