"""The one place outbound HTTP to providers goes through (a single choke point for tests).

`provider_client()` lends every caller of a process the same client (`integrations/lib/clients.py`:
built lazily in the process that first needs it, never used by a forked child, which builds its
own, closed at worker shutdown; thread-safe for sending, as gunicorn's threads do). One SSL context
per process instead of one per request (building one costs ~23 ms of CPU), and a connection pool
with keep-alive, so a sync's pages, and the next sync to the same host, reuse connections.

Nothing of one integration stays on the shared client: credentials and tokens go with each
request, and cookies are never kept. The timeout is `PROVIDER_HTTP_TIMEOUT`, read at every
request; redirects are not followed.

A request httpx cannot build because a header would hold characters HTTP headers cannot carry
(a credential with a non-ASCII character, sent as `Authorization: Bearer …`) raises
`RequestNotEncodable` rather than a bare UnicodeEncodeError; the adapters turn it into an
AUTH_FAILED outcome (the credentials are unusable), never a 500.
"""

from __future__ import annotations

import atexit
from contextlib import AbstractContextManager
from typing import Any

import httpx
from django.conf import settings

from . import clients

USER_AGENT = "Relink/1.0"
# Idle connections are kept this long for the next request to the same host. Servers close theirs
# after 2–5 s (gunicorn, nginx upstreams) to 60 s and more (load balancers); a connection the server
# has closed is noticed before it is reused.
KEEPALIVE_SECONDS = 15.0


class RequestNotEncodable(Exception):
    """The request could not be encoded (a header value outside ASCII). Names no value: it may be a secret."""


class ProviderClient(httpx.Client):
    """An httpx client that raises `RequestNotEncodable` and, unless given a timeout of its own,
    reads `PROVIDER_HTTP_TIMEOUT` at every request (so a changed setting needs no new client)."""

    def __init__(self, **kwargs: Any) -> None:
        self._timeout_from_settings = "timeout" not in kwargs
        kwargs.setdefault("follow_redirects", False)
        kwargs.setdefault("headers", {"User-Agent": USER_AGENT})
        super().__init__(**kwargs)

    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        if self._timeout_from_settings and kwargs.get("timeout", httpx.USE_CLIENT_DEFAULT) is httpx.USE_CLIENT_DEFAULT:
            kwargs["timeout"] = settings.PROVIDER_HTTP_TIMEOUT
        try:
            return super().build_request(*args, **kwargs)
        except UnicodeEncodeError:
            raise RequestNotEncodable("a request header holds characters HTTP headers cannot carry") from None

    def send(self, *args: Any, **kwargs: Any) -> httpx.Response:
        try:  # an auth flow adds its headers here
            return super().send(*args, **kwargs)
        except UnicodeEncodeError:
            raise RequestNotEncodable("a request header holds characters HTTP headers cannot carry") from None


def _build() -> httpx.Client:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_SECONDS)
    return ProviderClient(verify=clients.shared_ssl_context(), limits=limits)


_shared = clients.ProcessClient("providers", _build)


def shared_client() -> httpx.Client:
    """This process's provider client."""
    return _shared.get()


def close_shared_client() -> None:
    """Close this process's provider client and its pooled connections; the next call builds a
    new one (worker shutdown and exit do this; tests, to keep no connection across tests)."""
    _shared.close()


class _Lent(AbstractContextManager[httpx.Client]):
    """`with provider_client() as client:` on the shared client: leaving the block keeps it open."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def __enter__(self) -> httpx.Client:
        return self.client

    def __exit__(self, *exc: object) -> None:
        return None


def provider_client(**kwargs: Any) -> AbstractContextManager[httpx.Client]:
    """`with provider_client() as client: client.get(...)`: the process's shared client.

    With arguments (a transport, a timeout of its own, …): a client of its own that the `with`
    block closes, on the process's SSL context and keeping no cookies either.
    """
    if not kwargs:
        return _Lent(_shared.get())
    kwargs.setdefault("verify", clients.shared_ssl_context())
    return clients.never_keep_cookies(ProviderClient(**kwargs))


# Celery closes it at worker shutdown (lib/clients.py); any other process (gunicorn, manage.py) at exit.
atexit.register(close_shared_client)
