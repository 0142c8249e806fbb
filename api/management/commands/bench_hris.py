"""Benchmark paging GET /v1/hris/employees at 100,000 records: first, middle and last page.

    DATABASE_URL=postgres://… REDIS_URL=redis://… manage.py bench_hris [--records 100000] [--requests 200]

What it does, in about a minute:

- creates the database `relink_bench_hris` (`--database`) on DATABASE_URL's server, migrates it and
  writes one environment, API key, scope config (every employee field) and integration with
  `--records` synced employees (one INSERT … SELECT FROM generate_series, then ANALYZE); drops it at
  the end (`--keep-database` keeps it). The database DATABASE_URL names is not touched;
- counts the SQL statements of one request per page in this process (Django's test client,
  autocommit, after one request that writes the key's last_used_at) and EXPLAINs the page query of
  the last page (its plan must be a range scan of the `syncedrecord_unique` index);
- starts gunicorn as in production (DEBUG off) on a free 127.0.0.1 port with that database and
  REDIS_URL's Redis, `BENCH_VIEWS` on (`/bench/trivial`: a JSON view behind the same middleware,
  the floor), and sends `--requests` requests per target over one keep-alive connection, one at a
  time, round-robin (trivial, first, middle, last page) so that every target sees the same moments
  of a shared machine; per page size (`--page-sizes`, default 100 — the API's default — and 250,
  its maximum);
- also times a first page with `updated_after` that no record matches (a poll when nothing changed:
  the filter is checked on every record of the integration);
- stops the gunicorn it started and prints, per page size and position:

    bench=hris page=hris_employees position=first page_size=100 median_ms=… p95_ms=… queries=…
      floor_median_ms=… floor_p95_ms=… records=100000   (one line)

`queries` counts what the request sends to PostgreSQL (key lookup, page, request log) and must not
depend on the position. Results: docs/PERFORMANCE.md, "HRIS reads".
"""

from __future__ import annotations

import http.client
import os
import statistics
import time
from urllib.parse import urlencode

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.hris import make_cursor, read_cursor
from integrations import reads
from integrations.lib import bench
from integrations.lib.tokens import random_id
from integrations.models import ApiKey, Environment, Integration, ScopeConfig, SyncedRecord

FIELDS = ["first_name", "last_name", "email", "department", "salary"]
POSITIONS = ("first", "middle", "last")


class Command(BaseCommand):
    help = "Benchmark the first, a middle and the last page of GET /v1/hris/employees at 100k records."

    def add_arguments(self, parser):
        parser.add_argument("--records", type=int, default=100_000)
        parser.add_argument("--requests", type=int, default=200, help="measured requests per page and size")
        parser.add_argument("--page-sizes", default="100,250")
        parser.add_argument("--database", default="relink_bench_hris", help="created and dropped by the command")
        parser.add_argument("--keep-database", action="store_true")

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("bench_hris needs PostgreSQL: set DATABASE_URL=postgres://…")
        started = time.monotonic()
        sizes = [int(s) for s in options["page_sizes"].split(",") if s.strip()]
        server = None
        with bench.own_database(options["database"], options["keep_database"]) as database:
            try:
                key, integration_id = self._create_data(options["records"])
                self.stdout.write(f"data: {options['records']} employees written in {time.monotonic() - started:.1f} s")
                cursors = {size: self._cursors(integration_id, size, options["records"]) for size in sizes}
                queries = {size: self._queries(key, integration_id, cursors[size], size) for size in sizes}
                self.stdout.write(f"plan of the last page: {self._plan(integration_id, cursors[sizes[-1]]['last'])}")
                connections.close_all()
                port = bench.free_port()
                env = bench.process_env(
                    database,
                    port,
                    REDIS_URL=settings.REDIS_URL,
                    BENCH_VIEWS="true",
                    API_RATE_LIMIT_PER_MINUTE=str(10**9),
                )
                server = bench.gunicorn(port, env, workers=2, threads=4)
                self.stdout.write(f"machine: {os.cpu_count()} CPUs; gunicorn --workers 2 --threads 4; one client")
                for size in sizes:
                    self._measure(port, key, integration_id, size, cursors[size], queries[size], options)
            finally:
                if server is not None:
                    bench.stop(server)
        self.stdout.write(f"total {time.monotonic() - started:.1f} s")

    def _create_data(self, records: int) -> tuple[str, str]:
        environment = Environment.objects.create(slug="bench-hris", name="HRIS read benchmark")
        _, raw_key = ApiKey.create(environment, "bench")
        spec = {"hris_employees": {"availability": "ENABLED", "fields": dict.fromkeys(FIELDS, "ENABLED")}}
        scope = ScopeConfig.objects.create(environment=environment, name="Employees", category="HRIS", spec=spec)
        integration = Integration.objects.create(
            id=f"sandbox:{random_id(24)}",
            environment=environment,
            tool="sandbox",
            category="HRIS",
            end_user_organization_name="Bench customer GmbH",
            scope_config=scope,
            last_sync_at=timezone.now(),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {SyncedRecord._meta.db_table} "
                "(integration_id, model, remote_id, data, first_seen_at, updated_at) "
                "SELECT %s, 'hris_employees', g::text, jsonb_build_object('id', g, 'first_name', 'First' || g, "
                "'last_name', 'Last' || g, 'email', 'employee' || g || '@bench.test', "
                "'department', (ARRAY['Sales', 'Engineering', 'Support', 'Finance'])[1 + g %% 4], "
                "'salary', 40000 + g), now(), now() FROM generate_series(1, %s) AS g",
                [integration.pk, records],
            )
            cursor.execute(f"ANALYZE {SyncedRecord._meta.db_table}")
        return raw_key, integration.pk

    def _cursors(self, integration_id: str, size: int, records: int) -> dict[str, str | None]:
        """The cursor of the first page (none), of the page in the middle and of the last page."""
        ordered = SyncedRecord.objects.filter(integration_id=integration_id, model="hris_employees").order_by(
            "remote_id"
        )

        def after(offset: int) -> str | None:
            row = ordered.values_list("remote_id", flat=True)[offset : offset + 1]
            return make_cursor("hris_employees", row[0]) if row else None

        last_start = ((records - 1) // size) * size
        middle_start = (records // 2 // size) * size
        return {"first": None, "middle": after(middle_start - 1), "last": after(last_start - 1)}

    def _path(self, size: int, cursor: str | None) -> str:
        params = {"page_size": size, **({"cursor": cursor} if cursor else {})}
        return f"/v1/hris/employees?{urlencode(params)}"

    def _queries(self, key: str, integration_id: str, cursors: dict[str, str | None], size: int) -> dict[str, int]:
        client = Client(HTTP_HOST="localhost")
        headers = {"Authorization": f"Bearer {key}", "X-Integration-Id": integration_id}
        client.get(self._path(size, None), headers=headers)  # writes the key's last_used_at
        counts = {}
        for position in POSITIONS:
            with CaptureQueriesContext(connection) as captured:
                response = client.get(self._path(size, cursors[position]), headers=headers)
            if response.status_code != 200:
                raise CommandError(f"{position} page answered {response.status_code}: {response.content[:300]!r}")
            next_cursor = response.json()["data"]["next"]
            if (position == "last") != (next_cursor is None):
                raise CommandError(f"the {position} page's next cursor is {next_cursor!r}")
            counts[position] = len(captured)
        return counts

    def _plan(self, integration_id: str, cursor: str | None) -> str:
        after = read_cursor(reads.EMPLOYEES, cursor) if cursor else None
        qs = SyncedRecord.objects.filter(
            integration_id=integration_id, model="hris_employees", remote_deleted_at__isnull=True
        )
        if after is not None:
            qs = qs.filter(remote_id__gt=after)
        plan = qs.order_by("remote_id").values_list("remote_id", "data")[:101].explain()
        return " | ".join(line.strip() for line in plan.splitlines()[:3])

    def _measure(self, port, key, integration_id, size, cursors, queries, options) -> None:
        headers = {"Authorization": f"Bearer {key}", "X-Integration-Id": integration_id, "Accept": "application/json"}
        targets = {"floor": "/bench/trivial", **{p: self._path(size, cursors[p]) for p in POSITIONS}}
        # A reader polling for changes when there are none: `updated_after` checks every record.
        targets["nothing_changed"] = self._path(size, None) + "&updated_after=2999-01-01T00:00:00.000Z"
        latencies: dict[str, list[float]] = {name: [] for name in targets}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for round_number in range(options["requests"] + 10):  # 10 warm-up rounds, not counted
            for name, path in targets.items():
                sent = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                elapsed = time.perf_counter() - sent
                if response.status != 200:
                    raise CommandError(f"{name} answered {response.status}")
                if round_number >= 10:
                    latencies[name].append(elapsed * 1000)
        conn.close()
        floor = latencies["floor"]
        changed = latencies["nothing_changed"]
        self.stdout.write(
            f"bench=hris page=hris_employees filter=updated_after matches=0 page_size={size} "
            f"median_ms={statistics.median(changed):.2f} p95_ms={_p95(changed):.2f} records={options['records']}"
        )
        for position in POSITIONS:
            values = latencies[position]
            self.stdout.write(
                f"bench=hris page=hris_employees position={position} page_size={size} "
                f"median_ms={statistics.median(values):.2f} p95_ms={_p95(values):.2f} queries={queries[position]} "
                f"floor_median_ms={statistics.median(floor):.2f} floor_p95_ms={_p95(floor):.2f} "
                f"records={options['records']}"
            )


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
