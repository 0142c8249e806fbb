"""What a finished sync warns about: the one writer and reader of `Sync.warnings`, and the
volume-drop rule (silent failures: a sync that "succeeds" with far fewer records than usual).

`Sync.warnings` stays a JSON list of plain strings, so the sync history shows each one as it is
and every reader that only displays them keeps working. A warning that carries numbers is written
in a fixed grammar by this module and read back by it (`VolumeDrop.parse`), and the dashboard words
it for people:

    stored:  "VOLUME_DROP: hris_employees: 12 records, usually 240 (down 95 %)"
    shown:   "Employees: 12 records in the last sync, usually 240 — a permission may have been removed upstream"

The `sync-finished` webhook carries no warnings (its payload is exactly the reference's): a sync
with warnings finishes PARTIALLY_FAILED, and its `log_url`, the integration's page, shows them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median_low

from .models import Integration, Sync, SyncStatus

VOLUME_DROP = "VOLUME_DROP"

# An integration with no scope config of its own and no default for its category reads no model.
# Its syncs still run their auth check (so its health stays known and the auth-failure rule
# applies), then end CANCELLED with this as warning and error: nothing was read, and nothing
# pretends it was.
NO_SCOPE_CONFIG = "No scope config: nothing to sync"


def model_not_granted(model: str, permission: str) -> str:
    """The tool refused a whole model (403)."""
    return f"permission {permission!r} for {model} not granted"


def field_withheld(model: str, field: str, permission: str) -> str:
    """The tool answered, but left a requested field out of every record."""
    return f"permission {permission!r} for {model}.{field} not granted: the field is missing from every record"


_VOLUME_DROP_TEXT = re.compile(
    rf"^{VOLUME_DROP}: (?P<model>[\w.-]+): (?P<current>\d+) records?, usually (?P<previous>\d+) "
)


@dataclass(frozen=True)
class VolumeDrop:
    """A model read far fewer records than usual: `previous` is the usual count (the median of
    the baseline syncs, see `volume_drops`), `current` this sync's."""

    model: str
    previous: int
    current: int

    @property
    def drop_percent(self) -> int:
        return round(100 * (self.previous - self.current) / self.previous) if self.previous else 0

    @property
    def message(self) -> str:
        records = "record" if self.current == 1 else "records"
        return f"{self.model}: {self.current} {records}, usually {self.previous} (down {self.drop_percent} %)"

    @property
    def text(self) -> str:
        """The warning as `Sync.warnings` stores it."""
        return f"{VOLUME_DROP}: {self.message}"

    @classmethod
    def parse(cls, warning: str) -> VolumeDrop | None:
        """The drop a stored warning describes; None for any other warning."""
        match = _VOLUME_DROP_TEXT.match(warning) if isinstance(warning, str) else None
        if match is None:
            return None
        return cls(match["model"], int(match["previous"]), int(match["current"]))


def volume_drops_in(warnings: Iterable[str]) -> list[VolumeDrop]:
    return [drop for drop in map(VolumeDrop.parse, warnings) if drop is not None]


# --- The volume-drop rule ---------------------------------------------------------------------

# Statuses of a sync that read every model its plan listed (some perhaps refused, field gaps):
# its counts are complete, so it can be judged and can serve as a baseline.
READ_EVERYTHING = (SyncStatus.SUCCEEDED, SyncStatus.PARTIALLY_FAILED)
BASELINE_SYNCS = 5  # the usual count is the median of this many recent counts of the model
BASELINE_SCAN = 25  # how many recent syncs are looked through for them


def volume_drops(sync: Sync) -> list[VolumeDrop]:
    """The models whose count in `sync` (all models read, counts in `records_per_model`, not yet
    finished) dropped by more than the environment's `volume_drop_percent` from a usual count of
    at least `volume_drop_min_records`. One indexed query (`sync_history_idx`).

    The usual count of a model is the median (the lower middle one for an even number) of its
    counts in the last BASELINE_SYNCS syncs that read it, among the last BASELINE_SCAN syncs that
    read everything (SUCCEEDED, or PARTIALLY_FAILED for another reason: a field withheld forever
    must not end drop detection), leaving out counts that were themselves flagged as a drop. So a
    permission lost upstream keeps warning sync after sync, and one normal count ends it. A drop
    that lasts BASELINE_SCAN syncs in a row (about three days at the default 3-hour interval)
    leaves no unflagged count to compare with: it stops warning and becomes the usual count.

    Like with like: only syncs run with the same scope config as `sync`, and started after that
    scope config last changed (`updated_at`: any save, a rename too), are a baseline. A scope
    config's spec is not kept per sync, so whether an older sync read a model with the same fields
    under another (or an older) spec cannot be known; rather than guess, the baseline starts again
    after a change — the first sync afterwards is never flagged, the next ones compare with it.
    A model `sync` did not read (no longer enabled, or refused) has no count and is not judged.
    """
    scope = sync.scope_config
    if scope is None or not sync.records_per_model:
        return []
    environment = sync.integration.environment
    rows = (
        Sync.objects.filter(
            integration_id=sync.integration_id,
            scope_config_id=scope.pk,
            status__in=READ_EVERYTHING,
            started_at__gte=scope.updated_at,
        )
        .exclude(pk=sync.pk)
        .order_by("-created_at")
        .values_list("records_per_model", "warnings")[:BASELINE_SCAN]
    )
    # (counts per model, the models flagged in that sync), newest first
    history = [(records or {}, {d.model for d in volume_drops_in(warnings or [])}) for records, warnings in rows]
    drops = []
    for model, current in sync.records_per_model.items():
        counts = [
            records[model]
            for records, flagged in history
            if isinstance(records.get(model), int) and model not in flagged
        ][:BASELINE_SYNCS]
        if not counts:
            continue
        usual = median_low(counts)
        if usual < environment.volume_drop_min_records:
            continue
        if (usual - current) * 100 > environment.volume_drop_percent * usual:
            drops.append(VolumeDrop(model, usual, current))
    return drops


def latest_volume_drops(integration: Integration) -> list[VolumeDrop]:
    """The drops of the integration's latest sync that read everything: its current warning,
    which the next normal sync clears. (A sync that failed or was cancelled since judged nothing,
    so it neither clears nor repeats a drop.)"""
    warnings = (
        Sync.objects.filter(integration_id=integration.pk, status__in=READ_EVERYTHING)
        .order_by("-created_at")
        .values_list("warnings", flat=True)
        .first()
    )
    return volume_drops_in(warnings or [])
