"""Benchmark the dashboard pages on a large environment.

    manage.py bench_dashboard --integrations 100000 --checks 1000000 [--requests 50]

Seeds a `benchdash` environment if it is missing (PostgreSQL: INSERT … SELECT generate_series),
then requests each page through Django's test client as a signed-in member (and the admin
changelist as a superuser) and prints one line per page:
`page=<name> median_ms=<m> p95_ms=<p> queries=<q>`.
"""

from __future__ import annotations

import statistics
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.paginator import invalidate_counts
from dashboard.signals import integration_count_namespace
from integrations.models import AuthCheck, Environment, Integration, Membership, Role, User

SLUG = "benchdash"
MEMBER = "bench-operator@example.com"
ADMIN = "bench-admin@example.com"


class Command(BaseCommand):
    help = "Measure dashboard page times and query counts on a large generated environment."

    def add_arguments(self, parser):
        parser.add_argument("--integrations", type=int, default=100_000)
        parser.add_argument("--checks", type=int, default=1_000_000)
        parser.add_argument("--requests", type=int, default=50)

    def handle(self, *args, integrations: int, checks: int, requests: int, **options):
        env, _ = Environment.objects.get_or_create(slug=SLUG, defaults={"name": "Dashboard benchmark"})
        self._seed(env, integrations, checks)
        member = self._user(MEMBER, superuser=False)
        Membership.objects.get_or_create(environment=env, user=member, defaults={"role": Role.EDITOR})
        admin = self._user(ADMIN, superuser=True)

        sample = Integration.objects.filter(environment=env, state="INVALID").order_by("pk").first()
        if sample is None:
            raise CommandError("The generated environment has no INVALID integration to open.")
        list_url = reverse("dashboard:integrations", kwargs={"env": SLUG})
        # (name, user, url, cold): a cold page has its cached list count dropped before every
        # request, i.e. what an operator pays when no one opened the same view in the last 15 s.
        pages = [
            ("integrations_list", member, list_url, False),
            ("integrations_list_cold_count", member, list_url, True),
            ("integrations_filtered", member, f"{list_url}?state=INVALID&tool=sandbox&q=Bench+organization+4", False),
            # A search matching a handful of rows in the whole environment (the trigram index's case).
            ("integrations_search", member, f"{list_url}?q=organization+4711", False),
            (
                "integration_page",
                member,
                reverse("dashboard:integration", kwargs={"env": SLUG, "integration_id": sample.pk}),
                False,
            ),
            ("admin_changelist", admin, reverse("admin:integrations_integration_changelist"), False),
        ]
        for name, user, url, cold in pages:
            client = Client(SERVER_NAME=settings.ALLOWED_HOSTS[0].lstrip(".") or "localhost")
            client.force_login(user)
            client.get(url)  # warm-up: caches, connection
            timings = []
            for _ in range(requests):
                if cold:
                    invalidate_counts(integration_count_namespace(env.pk))
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(url)
                    timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (name, response.status_code)
            timings.sort()
            p95 = timings[max(0, int(round(0.95 * len(timings))) - 1)]
            self.stdout.write(
                f"page={name} median_ms={statistics.median(timings):.1f} p95_ms={p95:.1f} queries={len(queries)}"
            )

    def _user(self, email: str, superuser: bool) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            create = User.objects.create_superuser if superuser else User.objects.create_user
            user = create(email, "bench-password")
        return user

    def _seed(self, env: Environment, integrations: int, checks: int) -> None:
        have = Integration.objects.filter(environment=env).count()
        if have >= integrations and AuthCheck.objects.filter(integration__environment=env).count() >= checks:
            return
        if connection.vendor != "postgresql":
            self.stderr.write("Seeding a large environment needs PostgreSQL (DATABASE_URL=postgres://...).")
            raise SystemExit(2)
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO integrations_integration
                  (id, environment_id, tool, category, end_user_organization_name, end_user_email,
                   end_user_origin_id, state, enabled, setup_status, opted_out_fields, credentials_encrypted,
                   created_at, updated_at, next_sync_at, last_sync_at, last_auth_check_at, last_auth_outcome,
                   last_auth_error, auth_failing_since, invalid_since)
                SELECT 'sandbox:dash' || lpad(g::text, 12, '0'), %s, 'sandbox', 'HRIS',
                       'Bench organization ' || g, 'hr' || g || '@example.com', 'dash-' || g,
                       CASE WHEN g %% 20 = 0 THEN 'INVALID' WHEN g %% 33 = 0 THEN 'INACTIVE' ELSE 'ACTIVE' END,
                       g %% 33 <> 0, 'COMPLETED', '[]'::jsonb, '',
                       now() - (g %% 1000) * interval '1 hour', now(), now() + interval '2 hours',
                       now() - interval '1 hour', now() - interval '1 hour',
                       CASE WHEN g %% 20 = 0 THEN 'AUTH_FAILED' ELSE 'OK' END,
                       CASE WHEN g %% 20 = 0 THEN '401 invalid API key' ELSE '' END,
                       CASE WHEN g %% 20 = 0 THEN now() - interval '4 days' END,
                       CASE WHEN g %% 20 = 0 THEN now() - interval '1 day' END
                FROM generate_series(%s, %s) AS g
                """,
                [env.pk, have + 1, integrations],
            )
            cursor.execute(
                """
                INSERT INTO integrations_authcheck
                  (integration_id, checked_at, outcome, http_status, error_code, error_message, duration_ms)
                SELECT 'sandbox:dash' || lpad((1 + c %% %s)::text, 12, '0'),
                       now() - (c / %s) * interval '3 hours',
                       CASE WHEN c %% 20 = 0 THEN 'AUTH_FAILED' ELSE 'OK' END,
                       CASE WHEN c %% 20 = 0 THEN 401 ELSE 200 END, '', '', 120
                FROM generate_series(0, %s - 1) AS c
                """,
                [integrations, integrations, checks],
            )
            cursor.execute("ANALYZE integrations_integration")
            cursor.execute("ANALYZE integrations_authcheck")
        self.stdout.write(
            f"seeded {integrations} integrations and {checks} auth checks in {time.monotonic() - started:.0f}s"
        )
