"""Benchmark the /v1 API on a real gunicorn against a trivial view on the same server.

    DATABASE_URL=postgres://… REDIS_URL=redis://… manage.py bench_api [--seconds 5] [--clients 8]

What it does, in about 30 s:

- creates the database `relink_bench_api` (`--database`) on DATABASE_URL's server, migrates it
  and writes one environment, API key, scope config and integration into it; drops it at the end
  (`--keep-database` keeps it). The database DATABASE_URL names is not touched.
- collects the static files into a temporary STATIC_ROOT and starts gunicorn as in production
  (`config/gunicorn.conf.py`, DEBUG off, WHITENOISE_USE_FINDERS off, `--workers`/`--threads`) on a
  free 127.0.0.1 port with that database, REDIS_URL's Redis (the rate limit's counter; the limit is set
  out of reach so every request is counted and none refused) and `BENCH_VIEWS` on, which mounts
  `/bench/trivial`: a JSON view behind the same middleware (config/bench.py), the floor;
- drives it with `--clients` keep-alive connections (threads, spread over `--client-processes`
  processes so the client is not held back by one GIL): the trivial GET, `GET /v1/integrations/{id}`,
  the trivial POST (the same JSON body), `POST /v1/integrations/{id}/relink`; each for a warm-up
  second, then `--seconds` each, in `--rounds` round-robin slices so that an endpoint and its floor
  are measured under the same background load (a shared machine's load moves within seconds);
- downloads three hosted pages (a connect link's tool picker and tool page, a relink link's page)
  with their stylesheet and script as a browser accepting gzip would;
- stops the gunicorn it started and prints one line per figure:

    bench=api endpoint=get_integration req_s=… p50_ms=… p95_ms=… errors=0 floor_req_s=… ratio=…
    bench=connect_page page=connect html_bytes=… html_transferred_bytes=… assets=2 bytes=… transferred_bytes=… …

`ratio` is floor req/s ÷ endpoint req/s: how many times slower than the trivial view the endpoint
is on the same server, clients and machine. Results: docs/PERFORMANCE.md, "API".
"""

from __future__ import annotations

import gzip
import http.client
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections

from integrations.lib import bench
from integrations.lib.tokens import random_id
from integrations.models import ApiKey, Environment, Integration, ScopeConfig
from integrations.providers import get_provider

RELINK_BODY = json.dumps({"language": "de", "link_type": "EMBEDDED"}).encode()


@dataclass(frozen=True)
class Target:
    name: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds

    def add(self, other: Result) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.seconds += other.seconds
        self.latencies += other.latencies

    def percentile_ms(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else 0.0


def _slice(pool: Any, port: int, target: Target, split: list[int], seconds: float) -> Result:
    """`target` driven for `seconds` by the pool's processes, `split[i]` connections in the i-th."""
    start = time.monotonic() + 0.1  # every process and thread starts together
    parts = pool.starmap(_drive_process, [(port, target, threads, start, seconds) for threads in split])
    return Result(
        requests=sum(p[0] for p in parts),
        errors=sum(p[1] for p in parts),
        seconds=seconds,
        latencies=[latency for p in parts for latency in p[2]],
    )


def _drive_process(port: int, target: Target, threads: int, begin: float, seconds: float):
    """One client process: `threads` keep-alive connections, each sending `target` back to back.
    Requests sent and answered inside [begin, begin + seconds] are counted."""
    end = begin + seconds
    outcomes: list[tuple[int, int, list[float]]] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        count = errors = 0
        while time.monotonic() < begin:
            time.sleep(0.001)
        while True:
            sent = time.monotonic()
            if sent >= end:
                break
            conn.request(target.method, target.path, body=target.body, headers=target.headers)
            response = conn.getresponse()
            response.read()
            done = time.monotonic()
            if begin <= sent and done <= end:
                count += 1
                errors += response.status >= 400
                latencies.append(done - sent)
        conn.close()
        outcomes.append((count, errors, latencies))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (
        sum(o[0] for o in outcomes),
        sum(o[1] for o in outcomes),
        [latency for o in outcomes for latency in o[2]],
    )


class Command(BaseCommand):
    help = "Benchmark GET /v1/integrations/{id} and POST …/relink against a trivial view on one gunicorn."

    def add_arguments(self, parser):
        parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per endpoint")
        parser.add_argument("--rounds", type=int, default=5, help="the seconds are split into this many slices")
        parser.add_argument("--warmup", type=float, default=1.0, help="seconds per endpoint before measuring")
        parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
        parser.add_argument("--client-processes", type=int, default=2)
        parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
        parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
        parser.add_argument("--database", default="relink_bench_api", help="created and dropped by the command")
        parser.add_argument("--keep-database", action="store_true")

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("bench_api needs PostgreSQL: set DATABASE_URL=postgres://…")
        if not settings.REDIS_URL:
            self.stderr.write("REDIS_URL is not set: the rate limit counts in each worker's memory, not in Redis")
        started = time.monotonic()
        server: subprocess.Popen | None = None
        static_root = tempfile.mkdtemp(prefix="relink-bench-static-")
        with bench.own_database(options["database"], options["keep_database"]) as database:
            try:
                key, integration_id, scope_config_id = self._create_data()
                connections.close_all()  # the client processes are forked: no shared connection
                port = bench.free_port()
                server = self._start_server(port, database, static_root, options["workers"], options["threads"])
                self.stdout.write(
                    f"machine: {os.cpu_count()} CPUs; server: gunicorn --workers {options['workers']} "
                    f"--threads {options['threads']}; clients: {options['clients']} in "
                    f"{options['client_processes']} processes; {options['seconds']:g} s per endpoint after "
                    f"{options['warmup']:g} s warm-up; setup {time.monotonic() - started:.1f} s"
                )
                self._run(port, key, integration_id, options)
                self._connect_pages(port, key, integration_id, scope_config_id)
            finally:
                if server is not None:
                    bench.stop(server)
                shutil.rmtree(static_root, ignore_errors=True)
        self.stdout.write(f"total {time.monotonic() - started:.1f} s")

    # --- Database and data ---------------------------------------------------------------------

    def _create_data(self) -> tuple[str, str, str]:
        env = Environment.objects.create(slug="bench-api", name="API benchmark")
        _, raw_key = ApiKey.create(env, "bench")
        # Every model and field of the tool, some optional: the connect page lists permissions and opt-outs.
        spec = {}
        for number, model in enumerate(get_provider("sandbox").models):
            fields = {name: "ENABLED" if number == 0 and i < 3 else "OPTIONAL" for i, name in enumerate(model.fields)}
            spec[model.name] = {"availability": "ENABLED" if number == 0 else "OPTIONAL", "fields": fields}
        scope_config = ScopeConfig.objects.create(environment=env, name="Employees", category="HRIS", spec=spec)
        integration = Integration.objects.create(
            id=f"sandbox:{random_id(24)}",
            environment=env,
            tool="sandbox",
            category="HRIS",
            end_user_organization_name="Bench customer GmbH",
            end_user_email="hr@bench.invalid",
            end_user_origin_id="bench-1",
            scope_config=scope_config,
        )
        return raw_key, integration.pk, scope_config.pk

    # --- The server ----------------------------------------------------------------------------

    def _start_server(self, port: int, database: str, static_root: str, workers: int, threads: int):
        """gunicorn as in production (README, "Running in production"), static files collected."""
        env = bench.process_env(
            database,
            port,
            REDIS_URL=settings.REDIS_URL,
            BENCH_VIEWS="true",
            API_RATE_LIMIT_PER_MINUTE=str(10**9),  # counted in Redis on every request, never refused
            STATIC_ROOT=static_root,
            WHITENOISE_USE_FINDERS="false",
        )
        collect = [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"]
        subprocess.run(collect, cwd=settings.BASE_DIR, env=env, check=True, timeout=120)
        return bench.gunicorn(port, env, workers, threads)

    # --- Measuring -----------------------------------------------------------------------------

    def _run(self, port: int, key: str, integration_id: str, options: dict[str, Any]) -> None:
        auth = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        json_post = {**auth, "Content-Type": "application/json"}
        path = f"/v1/integrations/{quote(integration_id, safe=':')}"
        targets = [
            Target("trivial_get", "GET", "/bench/trivial", auth),
            Target("get_integration", "GET", path, auth),
            Target("trivial_post", "POST", "/bench/trivial", json_post, RELINK_BODY),
            Target("relink", "POST", f"{path}/relink", json_post, RELINK_BODY),
        ]
        processes = max(1, min(options["client_processes"], options["clients"]))
        split = [options["clients"] // processes + (i < options["clients"] % processes) for i in range(processes)]
        results = {target.name: Result(0, 0, 0.0, []) for target in targets}
        # Forked once, before any measuring; they use no Django (its connections are closed).
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            for target in targets:
                _slice(pool, port, target, split, options["warmup"])  # not counted
            # Round-robin slices: each endpoint and its floor see the same moments of the machine.
            rounds = max(1, options["rounds"])
            for _ in range(rounds):
                for target in targets:
                    results[target.name].add(_slice(pool, port, target, split, options["seconds"] / rounds))
        self._line("trivial_get", results["trivial_get"])
        self._line("get_integration", results["get_integration"], results["trivial_get"])
        self._line("trivial_post", results["trivial_post"])
        self._line("relink", results["relink"], results["trivial_post"])

    def _line(self, endpoint: str, result: Result, floor: Result | None = None) -> None:
        line = (
            f"bench=api endpoint={endpoint} req_s={result.req_s:.0f} p50_ms={result.percentile_ms(0.5):.2f} "
            f"p95_ms={result.percentile_ms(0.95):.2f} errors={result.errors}"
        )
        if floor is not None:
            line += f" floor_req_s={floor.req_s:.0f} ratio={floor.req_s / max(result.req_s, 1e-9):.1f}"
        self.stdout.write(line)

    def _connect_pages(self, port: int, key: str, integration_id: str, scope_config_id: str) -> None:
        """What a customer's browser downloads for a hosted page opened from a link: the page and
        its stylesheet and script, plain and as transferred (gzip accepted): a connect link's tool
        picker, its page for a tool (permissions, opt-outs, the form), a relink link's page."""
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        connect = {
            "end_user_email": "hr@bench.invalid",
            "end_user_organization_name": "Bench customer GmbH",
            "scope_config_id": scope_config_id,
        }
        created = [
            ("picker", "/v1/connect/create-link", connect),
            ("connect", "/v1/connect/create-link", {**connect, "integration_tool": "sandbox"}),
            ("relink", f"/v1/integrations/{quote(integration_id, safe=':')}/relink", {}),
        ]
        for page, path, body in created:
            status, _, answer = _request(port, "POST", path, json.dumps(body).encode(), headers)
            if status != 200:
                raise CommandError(f"POST {path} answered {status}: {answer[:300]!r}")
            link_path = urlsplit(json.loads(answer)["data"]["link"]).path
            html, html_sent, _ = _download(port, link_path)
            assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html.decode())
            plain, sent, cache_control = len(html), html_sent, set()
            for asset in assets:
                content, asset_sent, asset_headers = _download(port, asset)
                plain += len(content)
                sent += asset_sent
                cache_control.add(asset_headers.get("cache-control", ""))
            self.stdout.write(
                f"bench=connect_page page={page} html_bytes={len(html)} html_transferred_bytes={html_sent} "
                f"assets={len(assets)} bytes={plain} transferred_bytes={sent} "
                f"assets_cache_control={'|'.join(sorted(cache_control)).replace(' ', '')}"
            )


def _download(port: int, path: str) -> tuple[bytes, int, dict[str, str]]:
    """GET `path` accepting gzip: the content, the bytes of the body on the wire, the headers."""
    status, headers, body = _request(port, "GET", path, headers={"Accept-Encoding": "gzip"})
    if status != 200:
        raise CommandError(f"GET {path} answered {status}")
    content = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
    return content, len(body), headers


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()
