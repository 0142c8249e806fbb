"""The cache is an optimisation: with Redis unreachable, pages compute what they need.

`FailSoftRedisCache` is Django's Redis cache whose reads miss and whose writes are dropped when
Redis cannot be reached, with a warning (at most one a minute per process) instead of an
exception. Counters are the exception: `incr`/`decr` still raise, since no made-up count is
right. The API rate limit counts in the same Redis with a script of its own (api/ratelimit.py) and
serves the request when the count is unknown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 60
_last_warning = 0.0


def warn_unavailable(operation: str, exc: Exception) -> None:
    """One warning a minute per process while the cache is down, not one per request."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY_SECONDS:
        _last_warning = now
        log.warning("cache unavailable (%s: %s: %s); serving without it", operation, type(exc).__name__, exc)


class FailSoftRedisCache(RedisCache):
    def _soft(self, operation: str, default: Any, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except (RedisError, OSError) as exc:
            warn_unavailable(operation, exc)
            return default

    def get(self, key, default=None, version=None):
        return self._soft("get", default, super().get, key, default, version)

    def get_many(self, keys, version=None):
        return self._soft("get_many", {}, super().get_many, keys, version)

    def has_key(self, key, version=None):
        return self._soft("has_key", False, super().has_key, key, version)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft("add", False, super().add, key, value, timeout, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft("set", None, super().set, key, value, timeout, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft("set_many", list(data), super().set_many, data, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft("touch", False, super().touch, key, timeout, version)

    def delete(self, key, version=None):
        return self._soft("delete", False, super().delete, key, version)

    def delete_many(self, keys, version=None):
        return self._soft("delete_many", None, super().delete_many, keys, version)

    def clear(self):
        return self._soft("clear", False, super().clear)
