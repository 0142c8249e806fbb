"""Where Relink may send a webhook: public addresses only, unless WEBHOOK_ALLOW_PRIVATE_TARGETS.

An endpoint URL is chosen by an environment's owner, and Relink POSTs to it from inside the
deployment's network. Without a guard an owner could make it call internal services (a
server-side request forgery): a database admin on 10.0.0.5, a cloud metadata service on
169.254.169.254, Relink's own Redis on 127.0.0.1. So a target must resolve to public addresses
only; loopback, private, link-local (incl. metadata), multicast, reserved and unspecified
addresses are refused.

The check runs twice: when the endpoint is saved (a clear form error), and at delivery time on
the address the connection is actually made to — `guarded_client()` resolves the host, checks
every address and connects to a checked one, so a DNS name that answers a public address at save
time and 127.0.0.1 later (DNS rebinding) is refused too. TLS still verifies the certificate for
the URL's host name. A long-lived client pools connections: the check runs on every new
connection it opens, and a kept-alive one is reused only for the host it was checked and opened
for.

The demo and the tests deliver to receivers on 127.0.0.1: they set WEBHOOK_ALLOW_PRIVATE_TARGETS.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings


class TargetRefused(ValueError):
    """The URL's host is, or resolves to, an address Relink does not send webhooks to."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(address: IPAddress) -> str:
    """Why `address` may not be a webhook target ("" if it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (such as a cloud metadata service)"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified or not address.is_global:
        return "not a public address"
    return ""


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve") from exc
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses to connect to for `host`, all allowed; raises TargetRefused naming the first
    that is not (or a host that does not resolve). With private targets allowed: the host itself,
    resolved as usual when connecting."""
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        return [host]
    addresses = _resolve(host, port)
    for address in addresses:
        reason = refusal(address)
        if reason:
            shown = host if host == str(address) else f"{host} ({address})"
            raise TargetRefused(f"{shown} is {reason}; webhooks go to public addresses only")
    return [str(address) for address in addresses]


def check_url(url: str) -> None:
    """Raise TargetRefused unless `url`'s host resolves to allowed addresses only (on save)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    checked_addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


class _GuardedBackend(httpcore.SyncBackend):
    """Connects to a checked address of the host, never to one resolved again afterwards."""

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        try:
            addresses = checked_addresses(host, port)
        except TargetRefused as exc:
            raise httpx.ConnectError(str(exc)) from None
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, *args, **kwargs)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host}: no address to connect to")


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(
        self, *, verify: ssl.SSLContext | bool = True, limits: httpx.Limits | None = None, **kwargs: Any
    ) -> None:
        limits = limits or httpx.Limits()
        super().__init__(verify=verify, limits=limits, **kwargs)
        # httpx has no public hook for the network backend; its connection pool takes one. The
        # pool keeps the transport's SSL context (certificate checks against the URL's host) and
        # its limits (pooling, keep-alive).
        pool = self._pool
        self._pool = httpcore.ConnectionPool(
            ssl_context=pool._ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=pool._http1,
            http2=pool._http2,
            retries=pool._retries,
            network_backend=_GuardedBackend(),
        )


def guarded_client(
    *, verify: ssl.SSLContext | bool = True, limits: httpx.Limits | None = None, **kwargs: Any
) -> httpx.Client:
    """An httpx client whose every connection goes to an allowed address (see the module docstring).

    The check runs on each new connection the client's pool opens; a pooled keep-alive connection
    is one that was checked when it was opened. A long-lived client must be rebuilt when
    WEBHOOK_ALLOW_PRIVATE_TARGETS changes (integrations/lib/clients.py does, through its key)."""
    return httpx.Client(transport=_GuardedTransport(verify=verify, limits=limits), **kwargs)
