"""Benchmark one scheduler tick on a large fleet.

    manage.py bench_scheduler --integrations 1000000 --due 1000

Creates the fleet in a separate `bench` environment if it is missing (PostgreSQL: one
INSERT … SELECT generate_series), makes exactly `--due` integrations due, runs one tick and
prints `bench=scheduler_tick claimed=<n> seconds=<s> queries=<q> floor=<s>` as its last line.
The tick's outbox rows are written, claimed and deleted as in production; only the publish to the
broker is replaced by a collector, so no worker is needed and no bench task is left in the queue.
`floor` is the same number of `SELECT 1` round trips, timed in the same run: the part of the
tick's time that is the database connection rather than its work. The bench's queued syncs are
deleted afterwards. Use a database of its own, so a re-run measures the same fleet.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations import outbox
from integrations.models import Environment, Integration, Sync
from integrations.syncs import tick

BENCH_SLUG = "bench"


class Command(BaseCommand):
    help = "Run one scheduler tick over a large generated fleet and print its cost."

    def add_arguments(self, parser):
        parser.add_argument("--integrations", type=int, default=1_000_000)
        parser.add_argument("--due", type=int, default=1000)
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, integrations: int, due: int, batch_size: int, **options):
        env, _ = Environment.objects.get_or_create(slug=BENCH_SLUG, defaults={"name": "Scheduler benchmark"})
        existing = Integration.objects.filter(environment=env).count()
        if existing < integrations:
            started = time.monotonic()
            self._create(env, existing, integrations)
            self.stdout.write(f"created {integrations - existing} integrations in {time.monotonic() - started:.1f}s")
        self._make_due(env, due)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE integrations_integration")
                cursor.execute("ANALYZE integrations_sync")

        published: list[tuple[str, tuple]] = []
        real_publish = outbox.publish
        outbox.publish = lambda task, args: published.append((task, tuple(args)))
        try:
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                claimed = tick(batch_size=batch_size, max_batches=10_000)
                seconds = time.perf_counter() - started
        finally:
            outbox.publish = real_publish
        floor = self._round_trips(len(queries))
        Sync.objects.filter(integration__environment=env, status="QUEUED").delete()
        self.stdout.write(
            f"fleet={Integration.objects.filter(environment=env).count()} db={connection.vendor} "
            f"batch_size={batch_size} published={len(published)}"
        )
        self.stdout.write(
            f"bench=scheduler_tick claimed={claimed} seconds={seconds:.3f} queries={len(queries)} floor={floor:.3f}"
        )

    @staticmethod
    def _round_trips(count: int) -> float:
        with connection.cursor() as cursor:
            started = time.perf_counter()
            for _ in range(count):
                cursor.execute("SELECT 1")
                cursor.fetchone()
            return time.perf_counter() - started

    def _create(self, env: Environment, start: int, total: int) -> None:
        """Integrations not due for hours, spread over three hours like a real fleet."""
        if connection.vendor == "postgresql":
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    """
                    INSERT INTO integrations_integration
                      (id, environment_id, tool, category, end_user_organization_name, end_user_email,
                       end_user_origin_id, state, enabled, setup_status, opted_out_fields,
                       credentials_encrypted, created_at, updated_at, next_sync_at,
                       last_auth_outcome, last_auth_error)
                    SELECT 'sandbox:bench' || lpad(g::text, 11, '0'), %s, 'sandbox', 'HRIS',
                           'Bench organization ' || g, '', 'bench-' || g,
                           CASE WHEN g %% 50 = 0 THEN 'INVALID' WHEN g %% 70 = 0 THEN 'INACTIVE' ELSE 'ACTIVE' END,
                           g %% 70 <> 0, 'COMPLETED', '[]'::jsonb, '', now(), now(),
                           now() + interval '1 hour' + (g %% 10800) * interval '1 second', '', ''
                    FROM generate_series(%s, %s) AS g
                    """,
                    [env.pk, start + 1, total],
                )
            return
        now = timezone.now()
        batch = []
        for g in range(start + 1, total + 1):
            batch.append(
                Integration(
                    id=f"sandbox:bench{g:011d}",
                    environment=env,
                    tool="sandbox",
                    category="HRIS",
                    end_user_organization_name=f"Bench organization {g}",
                    end_user_origin_id=f"bench-{g}",
                    next_sync_at=now + timedelta(hours=1, seconds=g % 10800),
                )
            )
            if len(batch) == 5000:
                Integration.objects.bulk_create(batch)
                batch = []
        Integration.objects.bulk_create(batch)

    def _make_due(self, env: Environment, due: int) -> None:
        """Exactly `due` ACTIVE integrations due now, the rest hours away."""
        now = timezone.now()
        with transaction.atomic():
            Sync.objects.filter(integration__environment=env, status__in=["QUEUED", "RUNNING"]).delete()
            Integration.objects.filter(environment=env, next_sync_at__lte=now + timedelta(minutes=30)).update(
                next_sync_at=now + timedelta(hours=2)
            )
            ids = list(
                Integration.objects.filter(environment=env, state="ACTIVE")
                .order_by("end_user_origin_id")
                .values_list("pk", flat=True)[:due]
            )
            Integration.objects.filter(pk__in=ids).update(next_sync_at=now - timedelta(minutes=1))
