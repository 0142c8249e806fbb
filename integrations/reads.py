"""Reading synced records back, a page at a time: what the unified read API (`/v1/hris/…`) serves.

Record ids. Every record a reader sees has an id of Relink's: stable (the same record always has
the same id, across syncs, deletions and reconnects), globally unique (two integrations' records
never share one) and computed, not stored. It encodes the record's remote id behind a short tag of
its integration and model — `base64url(tag ‖ remote id)`, the tag being the first 6 bytes of
SHA-256 of "<integration id>|<model>" — so:

- an `ids` filter decodes to remote ids and is answered by the `(integration, model, remote_id)`
  unique index, like `remote_ids`;
- a reference to another record is its id without a lookup: an absence's `employee_id` is the id
  of its employee whether or not employees are synced, and a department is a group whose id
  decodes back to its name (`group_ids`);
- an id of another integration or model decodes to nothing here (its tag differs).
The remote id is no secret (the same answer carries it as `remote_id`).

Paging is keyset on the remote id, through the sync's own upsert index `syncedrecord_unique`
(integration, model, remote_id): every page — the first, the 400th — is one range scan of that
index for `limit + 1` rows, whatever the number of records before it, and reading needs no index
of its own (another index on these rows would cost every sync's writes, and could lure the
planner away from the unique index for the sync's upserts). A reader meets each record at most
once; one added upstream while it pages may sort before its position and is met by its next
read (`updated_after`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db.models import Q, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from .models import SyncedRecord

EMPLOYEES = "hris_employees"
ABSENCES = "hris_absences"
GROUPS = "hris_groups"  # departments, which Relink's tools give as a name on the employee
EMPLOYMENTS = "hris_employments"  # the salary, which Relink's tools give on the employee

TAG_BYTES = 6


@lru_cache(maxsize=4096)
def _tag(integration_id: str, model: str) -> bytes:
    return hashlib.sha256(f"{integration_id}|{model}".encode()).digest()[:TAG_BYTES]


def record_id(integration_id: str, model: str, remote_id: Any) -> str:
    """The id readers see for the record `remote_id` of `model` in the integration."""
    raw = _tag(integration_id, model) + str(remote_id).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def remote_id_of(integration_id: str, model: str, value: str) -> str | None:
    """The remote id `value` (an id from `record_id`) stands for, or None if it is no id of this
    integration's `model` (another integration's, another model's, or no id at all)."""
    if not value or len(value) > 400:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        remote_id = raw[TAG_BYTES:].decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if raw[:TAG_BYTES] != _tag(integration_id, model) or not remote_id:
        return None
    if record_id(integration_id, model, remote_id) != value:  # one spelling per id
        return None
    return remote_id


@dataclass(frozen=True)
class Filters:
    """What a reader asks for; every given filter must match (AND), values of one filter OR.

    `remote_ids`: None for no filter, else the remote ids allowed (an empty list matches
    nothing: e.g. `ids` that decode to no record of this integration). `text_in`: a JSON key of
    the record's data and the values it may have (compared as text); `text_iexact_in`: the same,
    case-insensitively. `on_or_after` / `on_or_before`: a JSON key holding a `yyyy-MM-dd` date and
    the bound (inclusive).
    """

    include_deleted: bool = False
    updated_after: datetime | None = None
    remote_ids: list[str] | None = None
    text_in: dict[str, list[str]] = field(default_factory=dict)
    text_iexact_in: dict[str, list[str]] = field(default_factory=dict)
    on_or_after: dict[str, str] = field(default_factory=dict)
    on_or_before: dict[str, str] = field(default_factory=dict)
    nothing: bool = False  # a filter no record can match (an unsupported filter, not ignored)


@dataclass(frozen=True)
class Row:
    remote_id: str
    data: dict[str, Any]
    updated_at: datetime
    remote_deleted_at: datetime | None


@dataclass(frozen=True)
class RecordPage:
    rows: list[Row]
    next_after: str | None  # the remote id to continue after, None on the last page


def read_page(
    integration_id: str, model: str, *, after: str | None, limit: int, filters: Filters | None = None
) -> RecordPage:
    """Up to `limit` of the integration's `model` records whose remote id sorts after `after`, in
    remote id order, matching `filters`: one query of `limit + 1` rows (the extra one says whether
    there is a next page)."""
    filters = filters or Filters()
    if filters.nothing or (filters.remote_ids is not None and not filters.remote_ids):
        return RecordPage([], None)
    qs = SyncedRecord.objects.filter(integration_id=integration_id, model=model)
    if after is not None:
        qs = qs.filter(remote_id__gt=after)
    if not filters.include_deleted:
        qs = qs.filter(remote_deleted_at__isnull=True)
    if filters.updated_after is not None:
        qs = qs.filter(updated_at__gt=filters.updated_after)
    if filters.remote_ids is not None:
        qs = qs.filter(remote_id__in=filters.remote_ids)
    # One comparison per value, ORed (not `__in`, which SQLite's JSON functions cannot take).
    for lookup, wanted in (("exact", filters.text_in), ("iexact", filters.text_iexact_in)):
        for key, values in wanted.items():
            any_of = Q()
            for value in values:
                any_of |= Q(**{f"_{key}__{lookup}": value})
            qs = qs.alias(**{f"_{key}": _text(key)}).filter(any_of)
    # A date the record does not have (an open-ended absence) is no reason to leave it out.
    for key, day in filters.on_or_after.items():
        qs = qs.alias(**{f"_{key}": _text(key)})
        qs = qs.filter(Q(**{f"_{key}__gte": day}) | Q(**{f"_{key}__isnull": True}))
    for key, day in filters.on_or_before.items():
        qs = qs.alias(**{f"_{key}": _text(key)})
        qs = qs.filter(Q(**{f"_{key}__lte": day}) | Q(**{f"_{key}__isnull": True}))
    found = list(
        qs.order_by("remote_id").values_list("remote_id", "data", "updated_at", "remote_deleted_at")[: limit + 1]
    )
    rows = [Row(*values) for values in found[:limit]]
    return RecordPage(rows, rows[-1].remote_id if len(found) > limit else None)


def _text(key: str) -> Cast:
    """The record's `data[key]` as text (a number as its digits). Cast, so that SQLite compares it
    with a plain parameter: its JSON key lookups would parse the parameter as JSON."""
    return Cast(KT(f"data__{key}"), TextField())


def remote_ids_of(integration_id: str, model: str, ids: Sequence[str]) -> list[str]:
    """The remote ids the given record ids stand for (ids that stand for none are left out)."""
    return [r for r in (remote_id_of(integration_id, model, i) for i in ids) if r is not None]
