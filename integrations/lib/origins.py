"""Web origins (`https://app.example.com`, `http://localhost:3000`): parsing what an operator types
and what is stored, for the CSP `frame-ancestors` of embedded connect pages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A host name or IPv4 address with an optional port, or a bracketed IPv6 address: nothing that
# could add a CSP directive (no space, `;` or `,`) or widen it (no `*`).
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def parse_origin(value: str) -> str:
    """`value` as a lower-case origin `scheme://host[:port]`, else ValueError saying why.

    A trailing `/` is tolerated (people paste `https://app.example.com/`); a path, query,
    fragment, user name, wildcard or a scheme other than http and https is refused."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("not a web address") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("an origin starts with https:// (or http://)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("an origin has no user name or password")
    if parts.path.strip("/") or parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError("an origin has no path: just the scheme, host and port")
    if "*" in parts.netloc:
        raise ValueError("wildcards are not allowed: list each origin")
    if not parts.hostname or not _HOST_RE.fullmatch(parts.netloc):
        raise ValueError("not a valid host name")
    if port is not None and not 0 < port < 65536:
        raise ValueError("the port must be between 1 and 65535")
    return f"{parts.scheme}://{parts.netloc}".lower()


def valid_origins(raw: object) -> list[str]:
    """The well-formed origins of a stored list, normalized and without duplicates; anything else
    (written before validation, or by hand) is dropped, never passed on."""
    origins: list[str] = []
    for value in raw if isinstance(raw, list) else []:
        if not isinstance(value, str):
            continue
        try:
            origin = parse_origin(value)
        except ValueError:
            continue
        if origin not in origins:
            origins.append(origin)
    return origins
