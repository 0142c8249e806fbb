"""Benchmark webhook delivery to a local receiver that answers 200.

    manage.py bench_webhooks --events 1000

Creates a database of its own (`relink_bench_webhooks` on DATABASE_URL's PostgreSQL server, or an
in-memory SQLite database), migrates it and drops it at the end. Starts a receiver in a process of
its own on a free 127.0.0.1 port (Python's threading HTTP server, HTTP/1.1 keep-alive, answering
every POST with 200) and stops it at the end. Creates one environment with one endpoint, emits
`--events` events to it, each in its own transaction as in production, then runs the delivery
path as a webhooks worker would: every task the outbox published (collected instead of sent to a
broker, as bench_scheduler does) is called in this process, in order. Private targets are allowed
for the run (the receiver is on loopback); the SSRF guard's transport is still the one used.

Prints, last line:
`bench=webhooks events=<n> deliveries_per_s=<d> floor_per_s=<f> ratio=<f/d>`
where the floor is the same signed POSTs sent one after the other through one shared
httpx.Client in the same run (the HTTP alone: no database, no signing), and `ratio` is how many
times slower than that floor delivery is.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Any

import httpx
from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.test.utils import override_settings

from integrations import audit, outbox, webhooks
from integrations.models import DeliveryStatus, Environment, WebhookDelivery, WebhookEndpoint, WebhookEvent

BENCH_DATABASE = "relink_bench_webhooks"

# The receiver, run with `python -c`: prints its port, then serves until terminated. GET /stats
# answers {"requests": n, "connections": n}.
RECEIVER = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {"requests": 0, "connections": 0}
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with lock:
            counts["connections"] += 1

    def _answer(self, body):
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            counts["requests"] += 1
        self._answer(b"ok")

    def do_GET(self):
        self._answer(json.dumps(counts).encode())

    def log_message(self, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 128
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"""


class Command(BaseCommand):
    help = "Deliver N webhook events to a local receiver and compare with a shared-client floor."

    def add_arguments(self, parser):
        parser.add_argument("--events", type=int, default=1000)
        parser.add_argument(
            "--batch", type=int, default=None, help="WEBHOOK_DELIVERY_BATCH for the run (default: the setting)"
        )
        parser.add_argument("--database", default=BENCH_DATABASE, help="name of the bench's own PostgreSQL database")

    def handle(self, *args: Any, events: int, batch: int | None, database: str, **options: Any) -> None:
        if events < 1:
            raise CommandError("--events must be at least 1")
        overrides: dict[str, Any] = {"WEBHOOK_ALLOW_PRIVATE_TARGETS": True}
        if batch:
            overrides["WEBHOOK_DELIVERY_BATCH"] = batch
        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        old_name = None
        try:
            port = int(receiver.stdout.readline())  # type: ignore[union-attr]
            url = f"http://127.0.0.1:{port}"
            if connection.vendor == "postgresql":
                connection.settings_dict.setdefault("TEST", {})["NAME"] = database
            old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
            httpx_log = logging.getLogger("httpx")
            level = httpx_log.level
            httpx_log.setLevel(logging.WARNING)  # a line per request would time the log, in both paths
            try:
                with override_settings(**overrides):
                    self._run(events, url)
            finally:
                httpx_log.setLevel(level)
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
            if old_name is not None:
                connection.creation.destroy_test_db(old_name, verbosity=0)

    def _run(self, events: int, url: str) -> None:
        env = Environment.objects.create(slug="bench-webhooks", name="Webhook benchmark")
        endpoint, _ = webhooks.create_endpoint(env.pk, f"{url}/hooks", audit.SYSTEM)
        published: list[tuple[str, tuple]] = []
        real_publish = outbox.publish
        outbox.publish = lambda task, args: published.append((task, tuple(args)))
        try:
            started = time.perf_counter()
            for n in range(events):
                with transaction.atomic():
                    webhooks.emit(env.pk, WebhookEvent.SYNC_FINISHED, {"sync_id": f"bench-{n}", "sync_state": "OK"})
            emit_s = time.perf_counter() - started
        finally:
            outbox.publish = real_publish

        # The worker: each published task, called here in order (a no-op for one a batch already sent).
        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        tasks = current_app.tasks
        with connection.execute_wrapper(count):
            started = time.perf_counter()
            for task, args in published:
                tasks[task](*args)
            delivery_s = time.perf_counter() - started
        delivered = WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count()
        if delivered != events:
            raise CommandError(f"{events - delivered} of {events} deliveries were not delivered")
        stats = httpx.get(f"{url}/stats").json()  # itself one more connection

        floor_s = self._floor(endpoint, url)
        per_s, floor_per_s = events / delivery_s, events / floor_s
        self.stdout.write(
            f"db={connection.vendor} batch={getattr(settings, 'WEBHOOK_DELIVERY_BATCH', 1)} "
            f"emit_s={emit_s:.2f} delivery_s={delivery_s:.2f} floor_s={floor_s:.2f} tasks={len(published)} "
            f"queries={queries} connections={stats['connections'] - 1}"
        )
        self.stdout.write(
            f"bench=webhooks events={events} deliveries_per_s={per_s:.0f} floor_per_s={floor_per_s:.0f} "
            f"ratio={floor_per_s / per_s:.2f}"
        )

    @staticmethod
    def _floor(endpoint: WebhookEndpoint, url: str) -> float:
        """The same signed POSTs, one after the other, through one shared client."""
        secrets = [endpoint.get_secret()]
        requests = [webhooks.signed_request(d, secrets) for d in WebhookDelivery.objects.order_by("pk")]
        with httpx.Client(timeout=15) as client:
            client.post(f"{url}/hooks", content=b"{}")  # the connection, opened before the clock starts
            started = time.perf_counter()
            for body, headers in requests:
                response = client.post(f"{url}/hooks", content=body, headers=headers)
                if response.status_code != 200:
                    raise CommandError(f"floor: the receiver answered {response.status_code}")
            return time.perf_counter() - started
