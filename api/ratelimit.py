"""Rate limits: a fixed one-minute window counted in Django's cache (Redis in production).

Two buckets: each API key (API_RATE_LIMIT_PER_MINUTE), and each client address for requests
that are not authenticated by a valid key (API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE), so guessing
keys or hammering the API without one is slowed down per address.

`cache.add` creates the window's counter once (atomic on Redis and locmem), `cache.incr` counts
(atomic too), so concurrent workers share one count per bucket and minute.
"""

from __future__ import annotations

import math
import re
import time

from django.conf import settings
from django.core.cache import cache

from config.cache import warn_unavailable

WINDOW_SECONDS = 60
_NOT_IN_ADDRESS = re.compile(r"[^0-9A-Za-z.:]")


def _now() -> float:
    return time.time()


def limit_per_minute() -> int:
    return settings.API_RATE_LIMIT_PER_MINUTE


def unauthenticated_limit_per_minute() -> int:
    return settings.API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE


def address_bucket(address: str) -> str:
    """The bucket of a client address (REMOTE_ADDR): `addr:` and the address, kept to safe characters."""
    return "addr:" + (_NOT_IN_ADDRESS.sub("_", address)[:64] or "unknown")


def hit(bucket: str, limit: int | None = None) -> int | None:
    """Count one request for `bucket`. Returns None if allowed (at most `limit`, by default the
    per-key limit, in this window), else the seconds until the window ends."""
    if limit is None:
        limit = limit_per_minute()
    now = _now()
    window = int(now // WINDOW_SECONDS)
    key = f"relink:api-rate:{bucket}:{window}"
    try:
        cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=WINDOW_SECONDS * 2)
            count = 1
    except Exception as exc:  # the cache is down: serve the request rather than fail the API
        warn_unavailable("rate limit, request allowed", exc)
        return None
    if count <= limit:
        return None
    return max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
