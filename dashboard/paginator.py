"""Pagination for big lists: the total count is cached briefly.

COUNT(*) over a 100k-integration environment costs ~20 ms on every page view; "page 3 of 2,000"
may lag a few seconds behind inserts without harm, while the rows themselves are always fresh.
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache
from django.core.paginator import Paginator
from django.utils.functional import cached_property

COUNT_TTL_SECONDS = 15


class CachedCountPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        sql, params = self.object_list.query.sql_with_params()
        key = "paginator-count:" + hashlib.sha256(f"{sql}|{params!r}".encode()).hexdigest()
        value = cache.get(key)
        if value is None:
            value = self.object_list.count()
            cache.set(key, value, COUNT_TTL_SECONDS)
        return value

    def page(self, number):
        """Rows are sliced by page size, never clamped to the (possibly stale) count."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)
