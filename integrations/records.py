"""Synced records: their one writer, a sync writing a model's records page by page.

A `ModelWriter` takes one model's read of one integration a page at a time, so a sync holds one
page in memory whatever the size of the company:

- each page is upserted in one statement that writes only the rows whose `data` changed, or that
  are new, or that come back after being marked deleted; an unchanged record is not written at all
  (no new row version, no WAL, `updated_at` kept), so `updated_at` is when the record last changed;
- the ids of a *complete* read (every record of the model, not only those changed since a date)
  are collected in a temporary table of the connection (never in this process's memory); when the
  read ends, the model's records it did not see are marked deleted upstream (`remote_deleted_at`,
  `updated_at` = now: a deletion is a change readers of `updated_at` must see). Rows are never
  deleted; a record that comes back is unmarked by its upsert.

A read that fails half-way keeps the pages it wrote (they are true) and marks nothing deleted.

PostgreSQL writes a page with one `INSERT … SELECT FROM jsonb_each(<the page>) ON CONFLICT … DO UPDATE
… WHERE` statement; other databases (SQLite in development and tests) compare in Python and write the
changed rows with the ORM: slower, same result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .models import SyncedRecord

TABLE = SyncedRecord._meta.db_table
# The ids a complete read has seen so far: a temporary table of the connection (the sync's own;
# the heartbeat thread has another), emptied when a complete read starts.
SEEN = "relink_sync_seen"


class ModelWriter:
    """One model's read of one integration, written page by page (`write`), then `finish`ed.

    `complete`: the read returns every record of the model (not only changes), so the records it
    did not return are gone upstream. Counters: `read` (records received, after removing an id
    repeated within a page), `written` (rows inserted, changed or unmarked), `deleted` (rows marked
    deleted by `finish`); `present` holds every field name a record carried (a field missing from
    all of them was withheld by the tool).
    """

    def __init__(self, integration_id: str, model: str, *, complete: bool) -> None:
        self.integration_id = integration_id
        self.model = model
        self.complete = complete
        self.read = 0
        self.written = 0
        self.deleted = 0
        self.present: set[str] = set()
        if complete:
            _reset_seen()

    def write(self, rows: Iterable[dict[str, Any]]) -> int:
        """Upsert one page; returns how many rows it wrote."""
        page: dict[str, dict[str, Any]] = {}
        for row in rows:
            page[str(row["id"])] = row  # an id twice in a page: the last one wins
            self.present.update(row)
        if not page:
            return 0
        self.read += len(page)
        now = timezone.now()
        if connection.vendor == "postgresql":
            written = self._write_postgresql(page, now)
        else:
            written = self._write_portable(page, now)
        self.written += written
        return written

    def finish(self) -> int:
        """After the last page: a complete read marks the records it did not see as deleted
        upstream. Returns how many it marked."""
        if not self.complete:
            return 0
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET remote_deleted_at = %s, updated_at = %s "
                f"WHERE integration_id = %s AND model = %s AND remote_deleted_at IS NULL "
                f"AND NOT EXISTS (SELECT 1 FROM {SEEN} s WHERE s.remote_id = {TABLE}.remote_id)",
                [now, now, self.integration_id, self.model],
            )
            self.deleted = max(cursor.rowcount, 0)
        return self.deleted

    @property
    def any_rows(self) -> bool:
        return self.read > 0

    def _write_postgresql(self, page: dict[str, dict[str, Any]], now: datetime) -> int:
        """One statement: remember the ids (complete reads), then insert the new and changed rows.

        Unchanged rows are filtered out before the INSERT (one unique-index probe per record: the
        LATERAL … LIMIT 1 keeps that plan whatever the table's statistics say, e.g. while a first
        sync fills it), so they are neither written nor locked; `ON CONFLICT … WHERE` repeats the
        test for a row inserted meanwhile.
        """
        remember = (
            f"seen AS (INSERT INTO {SEEN} (remote_id) SELECT remote_id FROM incoming ON CONFLICT DO NOTHING), "
            if self.complete
            else ""
        )
        sql = (
            f"WITH incoming AS (SELECT key AS remote_id, value AS data FROM jsonb_each(%s::jsonb)), {remember}"
            f"changed AS ("
            f"  SELECT i.remote_id, i.data FROM incoming i LEFT JOIN LATERAL ("
            f"    SELECT cur.data, cur.remote_deleted_at FROM {TABLE} cur"
            f"    WHERE cur.integration_id = %s AND cur.model = %s AND cur.remote_id = i.remote_id LIMIT 1"
            f"  ) cur ON true"
            f"  WHERE cur.data IS NULL OR cur.data IS DISTINCT FROM i.data OR cur.remote_deleted_at IS NOT NULL"
            f") "
            f"INSERT INTO {TABLE} AS r (integration_id, model, remote_id, data, first_seen_at, updated_at, "
            f"remote_deleted_at) "
            f"SELECT %s, %s, remote_id, data, %s, %s, NULL FROM changed "
            f"ON CONFLICT (integration_id, model, remote_id) DO UPDATE "
            f"SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at, remote_deleted_at = NULL "
            f"WHERE r.data IS DISTINCT FROM EXCLUDED.data OR r.remote_deleted_at IS NOT NULL"
        )
        # The page as one JSON object {remote_id: record}: one parameter to send and parse (an array
        # of JSON documents is escaped element by element, several times slower).
        document = json.dumps(page)
        params: list[Any] = [document, self.integration_id, self.model, self.integration_id, self.model, now, now]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return max(cursor.rowcount, 0)

    def _write_portable(self, page: dict[str, dict[str, Any]], now: datetime) -> int:
        """The same in Python and the ORM (SQLite)."""
        with transaction.atomic():
            if self.complete:
                with connection.cursor() as cursor:
                    cursor.executemany(f"INSERT OR IGNORE INTO {SEEN} (remote_id) VALUES (%s)", [(i,) for i in page])
            stored = {
                remote_id: (data, deleted_at)
                for remote_id, data, deleted_at in SyncedRecord.objects.filter(
                    integration_id=self.integration_id, model=self.model, remote_id__in=list(page)
                ).values_list("remote_id", "data", "remote_deleted_at")
            }
            changed = [
                SyncedRecord(
                    integration_id=self.integration_id,
                    model=self.model,
                    remote_id=remote_id,
                    data=row,
                    first_seen_at=now,
                    updated_at=now,
                    remote_deleted_at=None,
                )
                for remote_id, row in page.items()
                if remote_id not in stored or stored[remote_id][0] != row or stored[remote_id][1] is not None
            ]
            SyncedRecord.objects.bulk_create(
                changed,
                update_conflicts=True,
                unique_fields=["integration", "model", "remote_id"],
                update_fields=["data", "updated_at", "remote_deleted_at"],
            )
        return len(changed)


def _reset_seen() -> None:
    """An empty table of seen ids for a complete read (made once per database connection)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {SEEN} (remote_id text PRIMARY KEY)")
            cursor.execute(f"TRUNCATE {SEEN}")  # a new empty file: no dead rows left behind
        else:
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {SEEN} (remote_id text PRIMARY KEY)")
            cursor.execute(f"DELETE FROM {SEEN}")


def live_count(integration_id: str, model: str) -> int:
    """The model's records not marked deleted: what a sync that read only changes reports as the
    model's count (the count a complete read would have found, deletions since aside)."""
    live = SyncedRecord.objects.filter(integration_id=integration_id, model=model, remote_deleted_at__isnull=True)
    return live.count()
