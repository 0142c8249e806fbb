"""Per-API-key rate limit: a fixed one-minute window counted in Django's cache (Redis in production).

`cache.add` creates the window's counter once (atomic on Redis and locmem), `cache.incr` counts
(atomic too), so concurrent workers share one count per key and minute.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache

from config.cache import warn_unavailable

WINDOW_SECONDS = 60


def _now() -> float:
    return time.time()


def limit_per_minute() -> int:
    return settings.API_RATE_LIMIT_PER_MINUTE


def hit(bucket: str) -> int | None:
    """Count one request for `bucket`. Returns None if allowed, else the seconds until the window ends."""
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
