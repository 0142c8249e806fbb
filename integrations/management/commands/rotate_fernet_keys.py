"""Re-encrypt every stored secret under the first key of FERNET_KEYS.

Works in batches ordered by primary key, one transaction per batch, so it can be interrupted and
run again: rows already under the first key are skipped. A row that no key can decrypt is left
as it is and the command carries on, so one bad row never blocks the rest; the skipped rows are
listed at the end (model, pk, column — never a token) and the command exits non-zero. Restore the
key that encrypted them (after the first key) and run it again to rotate them too.

Rotate keys in three steps:
1. put the new key first in FERNET_KEYS, keep the old ones after it, deploy;
2. run this command (and `check_encrypted_rows`) until it exits 0;
3. remove the old keys.
"""

from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from integrations.checks import column_label
from integrations.lib import crypto
from integrations.models import ENCRYPTED_COLUMNS

ROTATED, CURRENT, UNDECRYPTABLE = "rotated", "already_current", "undecryptable"


def rotate_row(model: type[models.Model], column: str, pk: str, token: str) -> str:
    """Re-encrypt one row under the first key; says which of the three outcomes it was."""
    if crypto.is_under_primary_key(token):
        return CURRENT
    try:
        rotated = crypto.rotate(token)
    except crypto.UndecryptableSecret:
        return UNDECRYPTABLE  # nothing written: the row keeps its token for a later run with its key
    model._default_manager.filter(pk=pk).update(**{column: rotated})
    return ROTATED


def rotate_batch(model: type[models.Model], column: str, after_pk: str | None, size: int) -> list[tuple[str, str]]:
    """Rotate the next `size` rows after `after_pk`, locked for the batch; returns (pk, outcome) per row.

    Undecryptable rows raise nothing, so they never roll back the rows rotated with them.
    """
    with transaction.atomic():
        qs = model._default_manager.exclude(**{column: ""}).order_by("pk")
        if after_pk is not None:
            qs = qs.filter(pk__gt=after_pk)
        rows = list(qs.select_for_update().values_list("pk", column)[:size])
        return [(pk, rotate_row(model, column, pk, token)) for pk, token in rows]


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets under the first key in FERNET_KEYS (batched, resumable); "
        "skips and lists rows no key can decrypt, and then exits non-zero."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        skipped: list[tuple[str, str, str]] = []  # (model label, pk, column)
        seen: set[type[models.Model]] = set()
        for model, column in ENCRYPTED_COLUMNS:
            counts = self.rotate_column(model, column, batch_size, skipped)
            # A model's first column by its name ("webhook endpoints"), any further one with the
            # column ("webhook endpoints.previous_secret": the secret replaced by a rotation).
            label = column_label(model, column) if model in seen else model._meta.verbose_name_plural
            seen.add(model)
            self.stdout.write(
                f"{label}: rotated={counts[ROTATED]} "
                f"already_current={counts[CURRENT]} undecryptable={counts[UNDECRYPTABLE]}"
            )
        if skipped:
            self.report_skipped(skipped)

    def rotate_column(
        self, model: type[models.Model], column: str, batch_size: int, skipped: list[tuple[str, str, str]]
    ) -> Counter[str]:
        counts: Counter[str] = Counter()
        last_pk = None
        while outcomes := rotate_batch(model, column, last_pk, batch_size):
            for pk, outcome in outcomes:
                counts[outcome] += 1
                if outcome == UNDECRYPTABLE:
                    skipped.append((model._meta.label, str(pk), column))
            last_pk = outcomes[-1][0]
        return counts

    def report_skipped(self, skipped: list[tuple[str, str, str]]) -> None:
        self.stdout.write("Not rotated (no key in FERNET_KEYS decrypts them):")
        for label, pk, column in skipped:
            self.stdout.write(f"  {label} pk={pk} column={column}")
        raise CommandError(
            f"{len(skipped)} row(s) skipped. Restore the key that encrypted them (after the first key in "
            "FERNET_KEYS) and run `manage.py rotate_fernet_keys` again; the rows already rotated stay rotated."
        )
