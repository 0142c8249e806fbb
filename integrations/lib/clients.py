"""One HTTP client per process, shared by every request that process makes to the same kind of target.

Building an httpx.Client costs ~23 ms of CPU (its SSL context loads the CA bundle), and a client used
for one request never reuses a connection: every request pays a TCP (and TLS) handshake. A
`ProcessClient` builds its client once per process, lazily, on first use, and hands the same one to
every caller, so connections are pooled and kept alive between requests; `shared_ssl_context()`
gives every client of the process one SSL context.

Fork safety. Celery's prefork pool forks its worker processes from a parent that may already have
built a client (a task run eagerly, a module that warmed one up). A client's pool holds sockets and
TLS sessions that must never be used by two processes, so a client belongs to the process that
built it:
- each client remembers the pid that built it; in any other process `get()` builds a new one and
  drops the inherited one without closing it (closing would send a TLS close_notify on the
  parent's connections);
- `os.register_at_fork` drops every client (and its lock, which a parent thread may have held at
  the fork) in a new child at once; Celery's `worker_process_init` does the same for its pool;
- Celery's `worker_process_shutdown` (prefork) and `worker_shutdown` (solo, threads) close them.

A client is also rebuilt when the `key` it was built with changes (e.g. the settings its transport
depends on), so a pooled connection never outlives the policy it was opened under.

Clients built here never keep cookies: a cookie one customer's server set must never ride along on a
request made for another customer to the same host.

Used by webhook delivery (integrations/webhooks.py); made to be reused for provider calls.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import weakref
from collections.abc import Callable, Hashable
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import httpx
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

log = logging.getLogger(__name__)

_registry: weakref.WeakSet[ProcessClient] = weakref.WeakSet()


class ProcessClient:
    """A lazily built, per-process httpx.Client: `get()` returns the same client to every caller
    in this process (thread-safe), a new one in a forked child, and a new one after `close()`."""

    def __init__(self, name: str, build: Callable[[], httpx.Client], key: Callable[[], Hashable] | None = None):
        self.name = name
        self._build = build
        self._key = key or (lambda: None)
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pid: int | None = None
        self._built_with: Hashable = None
        _registry.add(self)

    def get(self) -> httpx.Client:
        pid, key = os.getpid(), self._key()
        client = self._client
        if client is not None and self._pid == pid and self._built_with == key and not client.is_closed:
            return client
        with self._lock:
            if self._pid != pid:
                self._client = None  # the parent's: never used, never closed here
            elif self._client is not None and (self._built_with != key or self._client.is_closed):
                self._client.close()
                self._client = None
            if self._client is None:
                self._client = never_keep_cookies(self._build())
                self._pid, self._built_with = pid, key
                log.debug("http client %s built in process %d", self.name, pid)
            return self._client

    def close(self) -> None:
        """Close this process's client (its pooled connections); the next `get()` builds a new one."""
        with self._lock:
            client, self._client = self._client, None
            if client is not None and self._pid == os.getpid():
                client.close()

    def reset_after_fork(self) -> None:
        """In a new child: forget the parent's client without touching its connections (and the
        lock, which a thread of the parent may have held at the fork)."""
        if self._pid != os.getpid():
            self._lock = threading.Lock()
            self._client = None
            self._pid = None


def never_keep_cookies(client: httpx.Client) -> httpx.Client:
    """Make `client` drop every cookie a response sets (a policy that allows no domain)."""
    client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return client


_ssl_context: tuple[int, ssl.SSLContext] | None = None
_ssl_lock = threading.Lock()


def shared_ssl_context() -> ssl.SSLContext:
    """This process's one verifying SSL context (certifi's CA bundle, as httpx's default)."""
    global _ssl_context
    pid = os.getpid()
    current = _ssl_context
    if current is not None and current[0] == pid:
        return current[1]
    with _ssl_lock:
        if _ssl_context is None or _ssl_context[0] != pid:
            _ssl_context = (pid, httpx.create_ssl_context())
        return _ssl_context[1]


def close_all() -> None:
    """Close every client this process built (worker shutdown)."""
    for client in list(_registry):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - shutting down: close the others whatever one does
            log.warning("could not close http client %s", client.name, exc_info=True)


def reset_all_after_fork() -> None:
    """Forget what the parent process built (its clients, its SSL context)."""
    global _ssl_context, _ssl_lock
    if _ssl_context is not None and _ssl_context[0] != os.getpid():
        _ssl_context, _ssl_lock = None, threading.Lock()
    for client in list(_registry):
        client.reset_after_fork()


os.register_at_fork(after_in_child=reset_all_after_fork)


@worker_process_init.connect
def _on_worker_process_init(**_: Any) -> None:
    reset_all_after_fork()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    close_all()
