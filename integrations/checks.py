"""System checks, and the full scan of the encrypted columns they sample.

`manage.py check --database default` (run by `make demo` before starting, and on deploys) fails
when the configured FERNET_KEYS cannot decrypt the stored secrets. It runs on every `check`, so it
only samples the rows at both ends of each column's primary key; `manage.py check_encrypted_rows`
calls `scan_column` to try every row, in batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.core.checks import Error, Tags, register
from django.db import DatabaseError, models

from .lib.crypto import UndecryptableSecret, decrypt_str
from .models import ENCRYPTED_COLUMNS

SCAN_BATCH_SIZE = 500


def column_label(model: type[models.Model], column: str) -> str:
    """How reports name an encrypted column, e.g. `integrations.credentials`."""
    return f"{model._meta.verbose_name_plural}.{column.removesuffix('_encrypted')}"


def encrypted_rows(model: type[models.Model], column: str) -> models.QuerySet:
    """The rows that hold a token in `column` (an empty string means no secret was ever stored)."""
    return model._default_manager.exclude(**{column: ""})


def decrypts(token: str) -> bool:
    try:
        decrypt_str(token)
    except UndecryptableSecret:
        return False
    return True


def iter_batches(model: type[models.Model], column: str, batch_size: int) -> Iterator[list[tuple[str, str]]]:
    """(pk, token) pairs in pk order, `batch_size` at a time.

    Keyset pagination rather than OFFSET or a server-side cursor: each batch is one short indexed
    query, so a scan of a large table holds no transaction open and behaves the same on SQLite,
    PostgreSQL and behind a connection pooler. Only the pk and the token are loaded.
    """
    last_pk = None
    while True:
        qs = encrypted_rows(model, column).order_by("pk")
        if last_pk is not None:
            qs = qs.filter(pk__gt=last_pk)
        rows = list(qs.values_list("pk", column)[:batch_size])
        if not rows:
            return
        yield rows
        last_pk = rows[-1][0]


@dataclass
class ColumnScan:
    label: str
    rows: int = 0
    undecryptable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line naming the bad rows by pk only: never a token or a secret."""
        line = f"{self.label}: {self.rows} rows, {len(self.undecryptable)} undecryptable"
        return f"{line}: {', '.join(self.undecryptable)}" if self.undecryptable else line


def scan_column(model: type[models.Model], column: str, batch_size: int = SCAN_BATCH_SIZE) -> ColumnScan:
    """Try to decrypt every row of one encrypted column."""
    scan = ColumnScan(column_label(model, column))
    for batch in iter_batches(model, column, batch_size):
        scan.rows += len(batch)
        scan.undecryptable.extend(str(pk) for pk, token in batch if not decrypts(token))
    return scan


def _sample(model: type[models.Model], column: str) -> list[str]:
    """The tokens at both ends of the pk order: two indexed lookups, whatever the table's size."""
    qs = encrypted_rows(model, column).values_list(column, flat=True)
    return [token for token in (qs.order_by("pk").first(), qs.order_by("-pk").first()) if token is not None]


@register(Tags.database)
def stored_secrets_decrypt(app_configs, databases=None, **kwargs):
    if not databases:
        return []
    errors = []
    for model, column in ENCRYPTED_COLUMNS:
        try:
            tokens = _sample(model, column)
        except DatabaseError:  # tables not migrated yet
            return []
        if all(decrypts(token) for token in tokens):
            continue
        errors.append(
            Error(
                f"Stored {model._meta.verbose_name} secrets cannot be decrypted with FERNET_KEYS. This check "
                "samples a few rows; run `manage.py check_encrypted_rows` for a full scan listing every bad row.",
                hint="Restore the key that encrypted them (keep it after the new first key) and run "
                "`manage.py rotate_fernet_keys` before removing it.",
                id="relink.E001",
            )
        )
    return errors
