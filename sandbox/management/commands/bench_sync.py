"""Benchmark syncs of Sandbox HR companies over real HTTP: time, memory, queries, rows written.

    DATABASE_URL=postgres://… manage.py bench_sync --employees 1000,10000,50000 [--probe 50,50000]

What it does:
- creates the database `relink_bench_sync` (`--database`) on DATABASE_URL's server, migrates it and
  writes one environment, a scope config reading employees (first and last name, email,
  department, salary) and, per size, a Sandbox HR company of that many employees (last changed a
  day ago) with an API key and an integration; drops it at the end (`--keep-database` keeps it);
- starts gunicorn as in production (config/gunicorn.conf.py, DEBUG off, one worker, two threads)
  on a free 127.0.0.1 port with that database: the syncs read Sandbox HR from it over real HTTP,
  page by page (100 employees a page);
- measures each size in a fresh process (so one size's memory does not hide the next one's), with
  `manage.py bench_sync --measure …` on the bench database and REDIS_URL unset (nothing is published
  to a broker: the outbox's publish is replaced by a collector):
  - the floor: the same pages fetched through the adapter, each row COPYed into a plain table as
    it arrives (one COPY) — what moving the data costs without Relink's sync around it;
  - the first sync (FULL: every row new): seconds, records/s, the growth of the process's resident
    memory above what it was before the sync (sampled every 2 ms), SQL statements (this process's
    connection; the heartbeat thread's own are not counted);
  - an unchanged FULL re-sync (every page read again, nothing changed upstream) and an unchanged
    DELTA re-sync (what the scheduler queues: Sandbox HR's `updated_after`): seconds, rows
    written (rows whose `updated_at` moved: every row a sync writes gets it), WAL bytes of the FULL
    one (server-wide: other sessions on the server count too);
- the worker's CPU time per sync of a 50-employee company (`time.process_time()` around
  `run_sync`, median of `--cpu-syncs` syncs after three warm-up ones), DELTA and FULL;
- the customer's credential POST on a connect link's hosted page, over HTTP to the same gunicorn
  as a browser would send it (the link created through `POST /v1/connect/create-link`; the page's
  verification then calls Sandbox HR on that gunicorn), median of `--probe-posts` after one warm-up,
  per company size in `--probe`. Each completed link queues a sync: gunicorn's broker is a
  filesystem one in a temporary directory, never read.

Prints a line per measurement:
    bench=sync employees=… first_s=… records_per_s=… peak_rss_mb=… queries=… resync_s=…
        resync_rows_written=… delta_s=… delta_rows_written=… resync_wal_kb=… floor_s=… fetch_s=… ratio=…
    bench=sync_cpu employees=50 delta_cpu_ms=… full_cpu_ms=… syncs=…
    bench=probe employees=… post_ms=… get_ms=…
`ratio` is first_s ÷ floor_s. Results: docs/PERFORMANCE.md, "Syncs".
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from integrations import outbox, syncs
from integrations.lib import bench
from integrations.models import ApiKey, Environment, Integration, ScopeConfig, Sync, SyncedRecord, SyncType
from integrations.providers import get_provider
from sandbox.models import SandboxCompany

FIELDS = ["first_name", "last_name", "email", "department", "salary"]
ENVIRONMENT = "bench-sync"
CPU_EMPLOYEES = 50
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


class Command(BaseCommand):
    help = "Benchmark syncs of generated Sandbox HR companies over real HTTP (see docs/PERFORMANCE.md)."

    def add_arguments(self, parser):
        parser.add_argument("--employees", default="1000,10000,50000", help="company sizes, comma-separated")
        parser.add_argument("--probe", default="50,50000", help="company sizes for the credential POST")
        parser.add_argument("--cpu-syncs", type=int, default=30)
        parser.add_argument("--probe-posts", type=int, default=5)
        parser.add_argument("--database", default="relink_bench_sync", help="created and dropped by the command")
        parser.add_argument("--keep-database", action="store_true")
        # Internal: one measurement in this (fresh) process, on the bench database.
        parser.add_argument("--measure", choices=["sync", "cpu"], help=argparse.SUPPRESS)
        parser.add_argument("--integration", help=argparse.SUPPRESS)
        parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if options["measure"]:
            result = MEASURES[options["measure"]](Integration.objects.get(pk=options["integration"]), options["count"])
            self.stdout.write(json.dumps(result))
            return
        sizes = _sizes(options["employees"])
        probe_sizes = _sizes(options["probe"])
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request of the probes otherwise
        with (
            bench.own_database(options["database"], options["keep_database"]) as database,
            tempfile.TemporaryDirectory(prefix="relink-bench-sync-") as broker_dir,
        ):
            port = bench.free_port()
            # No broker: REDIS_URL unset, and the filesystem transport's folders in a temporary directory.
            env = bench.process_env(database, port, REDIS_URL="", CELERY_FILESYSTEM_DIR=broker_dir)
            server = bench.gunicorn(port, env, workers=1, threads=2)
            try:
                made: dict[int, Integration] = {}

                def integration(size: int) -> Integration:
                    if size not in made:
                        made[size] = _company(size)
                    return made[size]

                for size in sizes:
                    result = _child(env, "sync", integration(size))
                    ratio = result["first_s"] / result["floor_s"]
                    self.stdout.write(
                        f"bench=sync employees={size} first_s={result['first_s']:.2f} "
                        f"records_per_s={size / result['first_s']:.0f} peak_rss_mb={result['peak_rss_mb']:.1f} "
                        f"queries={result['queries']} resync_s={result['resync_s']:.2f} "
                        f"resync_rows_written={result['resync_rows_written']} delta_s={result['delta_s']:.3f} "
                        f"delta_rows_written={result['delta_rows_written']} "
                        f"resync_wal_kb={result['resync_wal_kb']:.0f} floor_s={result['floor_s']:.2f} "
                        f"fetch_s={result['fetch_s']:.2f} ratio={ratio:.2f}"
                    )
                cpu = _child(env, "cpu", integration(CPU_EMPLOYEES), options["cpu_syncs"])
                self.stdout.write(
                    f"bench=sync_cpu employees={CPU_EMPLOYEES} delta_cpu_ms={cpu['delta_cpu_ms']:.1f} "
                    f"full_cpu_ms={cpu['full_cpu_ms']:.1f} syncs={options['cpu_syncs']}"
                )
                api_key = ApiKey.create(Environment.objects.get(slug=ENVIRONMENT), name="bench_sync")[1]
                for size in probe_sizes:
                    probe = _probe(env["BASE_URL"], api_key, integration(size), options["probe_posts"])
                    self.stdout.write(
                        f"bench=probe employees={size} post_ms={probe['post_ms']:.1f} get_ms={probe['get_ms']:.1f}"
                    )
            finally:
                bench.stop(server)


def _sizes(raw: str) -> list[int]:
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"not a list of sizes: {raw!r}") from None


def _company(size: int) -> Integration:
    """A Sandbox HR company of `size` employees (changed a day ago), its key and an integration."""
    environment, _ = Environment.objects.get_or_create(slug=ENVIRONMENT, defaults={"name": "Sync benchmark"})
    scope, _ = ScopeConfig.objects.get_or_create(
        environment=environment,
        name="Bench employees",
        defaults={
            "category": "HRIS",
            "spec": {"hris_employees": {"availability": "ENABLED", "fields": dict.fromkeys(FIELDS, "ENABLED")}},
        },
    )
    company = SandboxCompany.objects.create(name=f"Bench company {size}", environment=environment)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sandbox_sandboxemployee "
            "(company_id, first_name, last_name, email, department, salary, updated_at) "
            "SELECT %s, 'First' || g, 'Last' || g, 'employee' || g || '@bench.test', "
            "(ARRAY['Sales', 'Engineering', 'Support', 'Finance'])[1 + g %% 4], 40000 + g, "
            "now() - interval '1 day' FROM generate_series(1, %s) AS g",
            [company.pk, size],
        )
        cursor.execute("ANALYZE sandbox_sandboxemployee")
    _, raw = company.create_key()
    integration = Integration(
        environment=environment,
        tool="sandbox",
        category="HRIS",
        end_user_organization_name=company.name,
        scope_config=scope,
        next_sync_at=timezone.now() + timedelta(days=365),  # never due: only the bench runs its syncs
    )
    integration.set_credentials({"api_key": raw})
    integration.save()
    return integration


def _child(env: dict[str, str], measure: str, integration: Integration, count: int = 0) -> dict[str, Any]:
    """Run one measurement in a fresh process on the bench database; its last line is JSON."""
    argv = [sys.executable, "manage.py", "bench_sync", "--measure", measure, "--integration", integration.pk]
    argv += ["--count", str(count)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600, cwd=settings.BASE_DIR)
    if done.returncode != 0:
        raise CommandError(f"bench_sync --measure {measure} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Measurements, each in its own process ------------------------------------------------------


class _Peak:
    """The process's resident memory, sampled every 2 ms while running: the peak above `start`."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self.rss()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def _sample(self) -> None:
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> _Peak:
        self.start = self.peak = self.rss()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


class _Counted:
    """SQL statements this process's connection runs (`connection.execute_wrapper`)."""

    def __init__(self) -> None:
        self.queries = 0

    def __call__(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)


def _written_since(integration: Integration, moment) -> int:
    """Rows a sync wrote since `moment`: every row it inserts, changes, marks deleted or unmarks
    gets `updated_at` = now; a row it leaves alone keeps its own."""
    return SyncedRecord.objects.filter(integration=integration, updated_at__gte=moment).count()


def _no_broker() -> list[tuple[str, tuple]]:
    published: list[tuple[str, tuple]] = []
    outbox.publish = lambda task, args: published.append((task, tuple(args)))
    return published


def _run(integration: Integration, sync_type: str) -> Sync:
    sync = Sync.objects.create(integration=integration, type=sync_type, scope_config_id=integration.scope_config_id)
    done = syncs.run_sync(sync.pk)
    if done is None or done.status != "SUCCEEDED":
        raise CommandError(f"the bench sync did not succeed: {done and (done.status, done.error_message)}")
    return done


def _wal() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")
        return int(cursor.fetchone()[0])


def _floor(integration: Integration) -> tuple[float, float]:
    """Fetching the sync's pages through the adapter and COPYing each row into a plain table as it
    arrives (one COPY); and the fetch alone."""
    provider, credentials = get_provider("sandbox"), integration.get_credentials()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_sync_floor (remote_id text, data jsonb)")
        cursor.execute("TRUNCATE bench_sync_floor")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy("COPY bench_sync_floor (remote_id, data) FROM STDIN") as copy:
            for page in provider.fetch_pages("hris_employees", credentials, FIELDS):
                for row in page.rows:
                    copy.write_row((row["id"], json.dumps(row)))
    total = time.perf_counter() - started
    started = time.perf_counter()
    for _ in provider.fetch_pages("hris_employees", credentials, FIELDS):
        pass
    return total, time.perf_counter() - started


def _measure_sync(integration: Integration, _: int) -> dict[str, Any]:
    _no_broker()
    counted = _Counted()
    get_provider("sandbox").probe("hris_employees", integration.get_credentials(), FIELDS)  # a warm server
    floor_s, fetch_s = _floor(integration)

    with connection.execute_wrapper(counted), _Peak() as peak:
        started = time.perf_counter()
        first = _run(integration, SyncType.FULL)
        first_s = time.perf_counter() - started
    expected = first.records_per_model.get("hris_employees")
    if SyncedRecord.objects.filter(integration=integration, remote_deleted_at=None).count() != expected:
        raise CommandError("the first sync did not store every record")
    queries = counted.queries
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE integrations_syncedrecord")  # as autovacuum would, before the next sync

    wal = _wal()
    before = timezone.now()
    started = time.perf_counter()
    _run(integration, SyncType.FULL)
    resync_s = time.perf_counter() - started
    resync_wal = _wal() - wal
    resync_rows = _written_since(integration, before)

    before = timezone.now()
    started = time.perf_counter()
    delta = _run(integration, SyncType.DELTA)
    delta_s = time.perf_counter() - started
    if delta.type != SyncType.DELTA:
        raise CommandError("the DELTA re-sync ran as FULL")
    delta_rows = _written_since(integration, before)
    return {
        "first_s": first_s,
        "peak_rss_mb": peak.growth_mb,
        "queries": queries,
        "resync_s": resync_s,
        "resync_rows_written": resync_rows,
        "resync_wal_kb": resync_wal / 1024,
        "delta_s": delta_s,
        "delta_rows_written": delta_rows,
        "floor_s": floor_s,
        "fetch_s": fetch_s,
    }


def _measure_cpu(integration: Integration, count: int) -> dict[str, Any]:
    """CPU time of this process per sync: what a worker process spends (the server is another process)."""
    _no_broker()
    for _ in range(3):  # warm-up: imports, connections, the first FULL read
        _run(integration, SyncType.DELTA)
    result = {}
    for sync_type in (SyncType.DELTA, SyncType.FULL):
        spent = []
        for _ in range(count):
            sync = Sync.objects.create(
                integration=integration, type=sync_type, scope_config_id=integration.scope_config_id
            )
            started = time.process_time()
            syncs.run_sync(sync.pk)
            spent.append(time.process_time() - started)
        result[f"{sync_type.lower()}_cpu_ms"] = statistics.median(spent) * 1000
    return result


def _probe(base_url: str, api_key: str, integration: Integration, count: int) -> dict[str, Any]:
    """The customer's credential POST on a new connect link's page, over HTTP (verify: auth check,
    account, one small page per model; then complete the link), and the GET of the page before it."""
    raw = integration.get_credentials()["api_key"]
    posts, gets = [], []
    with httpx.Client(base_url=base_url, timeout=120) as browser:
        for attempt in range(count + 1):  # the first one warms up
            created = browser.post(
                "/v1/connect/create-link",
                headers={"Authorization": f"Bearer {api_key}"},
                json={
                    "end_user_email": "hr@bench.test",
                    "end_user_organization_name": f"Probe {attempt}",
                    "integration_category": "HRIS",
                    "integration_tool": "sandbox",
                    "scope_config_id": integration.scope_config_id,
                    "link_type": "MAGIC_LINK",
                },
            )
            if created.status_code != 200:
                raise CommandError(f"create-link answered {created.status_code}: {created.text[:500]}")
            path = urlsplit(created.json()["data"]["link"]).path
            started = time.perf_counter()
            page = browser.get(path)
            gets.append(time.perf_counter() - started)
            token = FORM_TOKEN.search(page.text)
            if page.status_code != 200 or token is None:
                raise CommandError(f"the connect page answered {page.status_code}")
            form = {"form_token": html.unescape(token.group(1)), "tool": "sandbox", "api_key": raw}
            started = time.perf_counter()
            answer = browser.post(path, data=form)
            posts.append(time.perf_counter() - started)
            if answer.status_code != 200 or "Connection successful" not in answer.text:
                raise CommandError(f"the credential POST did not connect ({answer.status_code})")
    return {"post_ms": statistics.median(posts[1:]) * 1000, "get_ms": statistics.median(gets[1:]) * 1000}


MEASURES = {"sync": _measure_sync, "cpu": _measure_cpu}
