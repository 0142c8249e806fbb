"""Rate limits: a fixed one-minute window counted in Django's cache (Redis in production).

Two buckets: each API key (API_RATE_LIMIT_PER_MINUTE), and each client address for requests
that are not authenticated by a valid key (API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE), so guessing
keys or hammering the API without one is slowed down per address.

On Redis (production) a request costs one round trip: a Lua script increments the window's
counter and, when that created it, sets its expiry — atomically, so concurrent workers share one
count per bucket and minute and no counter is left without an expiry. Other caches (locmem, the
development default) count with `cache.add` and `cache.incr`, atomic there too.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any
from weakref import WeakKeyDictionary

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from config.cache import warn_unavailable

WINDOW_SECONDS = 60
_NOT_IN_ADDRESS = re.compile(r"[^0-9A-Za-z.:]")

# KEYS[1]: the window's counter; ARGV[1]: its lifetime in seconds. Returns the count with this hit.
COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""
# Per cache client (each thread has its own): a redis-py client and COUNT_SCRIPT registered with it
# (sent as EVALSHA; EVAL once per server). Django's cache builds a new client per call, which costs
# more than the round trip.
_clients: WeakKeyDictionary[Any, tuple[Any, Any]] = WeakKeyDictionary()


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
        count = _count(key, timeout=WINDOW_SECONDS * 2)
    except Exception as exc:  # the cache is down: serve the request rather than fail the API
        warn_unavailable("rate limit, request allowed", exc)
        return None
    if count <= limit:
        return None
    return max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))


def _count(key: str, timeout: int) -> int:
    """Add one to the counter `key` (created with a lifetime of `timeout` seconds) and return it."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):  # one round trip
        found = _clients.get(cache._cache)
        if found is None:
            client = cache._cache.get_client(key, write=True)
            found = _clients[cache._cache] = (client, client.register_script(COUNT_SCRIPT))
        client, script = found
        return int(script(keys=[cache.make_and_validate_key(key)], args=[timeout], client=client))
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=timeout)
        return 1
