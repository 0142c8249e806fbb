"""What the benchmark commands share: a database of their own, a free port, Relink's processes
(gunicorn as in production, a Celery worker) started with that database, and stopping exactly what
they started. Not imported by the application at run time."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_cursor():
    """A cursor on the server's maintenance database (PostgreSQL's creation class has one)."""
    return connection.creation._nodb_cursor()  # type: ignore[attr-defined]


@contextlib.contextmanager
def own_database(name: str, keep: bool = False) -> Iterator[str]:
    """Create (again) database `name` on DATABASE_URL's server, migrate it, point this process's
    connection at it; drop it afterwards unless `keep`. Yields its DATABASE_URL for subprocesses."""
    if connection.vendor != "postgresql":
        raise CommandError("the benchmarks need PostgreSQL: set DATABASE_URL=postgres://…")
    original = connection.settings_dict["NAME"]
    if name == original:
        raise CommandError("the benchmark needs a database of its own, not DATABASE_URL's")
    quoted = connection.ops.quote_name(name)
    with _server_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {quoted}")
    try:
        connections.close_all()
        connection.settings_dict["NAME"] = name
        call_command("migrate", verbosity=0, interactive=False)
        yield database_url(name)
    finally:
        connections.close_all()
        connection.settings_dict["NAME"] = original
        if not keep:
            with _server_cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


def database_url(name: str) -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(name)}"


def process_env(database: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a Relink process in production mode on the bench's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        SECRET_KEY=settings.SECRET_KEY,
        FERNET_KEYS=",".join(settings.FERNET_KEYS),
        DATABASE_URL=database,
        ALLOWED_HOSTS="127.0.0.1",
        BASE_URL=f"http://127.0.0.1:{port}",
        LOG_LEVEL="WARNING",
        WHITENOISE_USE_FINDERS="true",
    )
    env.update(extra)
    return env


def start(argv: list[str], env: dict[str, str], ready: Callable[[], bool], what: str) -> subprocess.Popen:
    """Start a process in a session of its own (so it and its children can be stopped together) and
    wait until `ready()`; CommandError with the end of its output if it exits or takes > 60 s."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        argv, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            log.seek(0)
            raise CommandError(f"{what} did not start:\n" + log.read().decode(errors="replace")[-3000:])
        time.sleep(0.2)
    return process


def gunicorn(port: int, env: dict[str, str], workers: int = 2, threads: int = 4) -> subprocess.Popen:
    argv = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads)]
    return start(argv, env, lambda: _answers(port), "gunicorn")


def celery_worker(env: dict[str, str], queues: str, concurrency: int, ready_file: Path) -> subprocess.Popen:
    """A Celery worker as in production; `ready_file` is touched once it consumes (celery's
    worker_ready signal is not reachable from outside, so the worker is asked with `inspect ping`)."""
    argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues]
    argv += ["--concurrency", str(concurrency), "--loglevel", "WARNING", "--hostname", f"bench{os.getpid()}@%h"]

    def pinged() -> bool:
        answer = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "config", "inspect", "ping", "--timeout", "1"],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            timeout=30,
        )
        if b"pong" in answer.stdout:
            ready_file.touch()
            return True
        return False

    return start(argv, env, pinged, "the Celery worker")


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def stop(process: subprocess.Popen) -> None:
    """Stop a process started here, and its children (its session)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants still running (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _descendants(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                child = int(entry.name)
                found += [child, *_descendants(child)]
    return found
