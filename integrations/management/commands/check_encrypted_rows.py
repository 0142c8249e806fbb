"""Try to decrypt every stored secret with the configured FERNET_KEYS and list the rows that fail.

Run it before removing an old key, and after `rotate_fernet_keys` reports skipped rows. It reads
each encrypted column in pk-ordered batches (only the pk and the token), prints one line per
column, and exits non-zero if any row cannot be decrypted. Only pks are printed, never a token.

Why a command and not the system check: `manage.py check --database default` runs on every start
and deploy, so it must stay cheap whatever the tables' size; it samples the rows at both ends of
each column and its error points here. A full scan decrypts every row (tens of microseconds each),
which is fine on demand but not on every `check`.
"""

from django.core.management.base import BaseCommand, CommandError

from integrations.checks import SCAN_BATCH_SIZE, scan_column
from integrations.models import ENCRYPTED_COLUMNS


class Command(BaseCommand):
    help = "Decrypt every stored secret with FERNET_KEYS and list the rows that fail (exits non-zero if any)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=SCAN_BATCH_SIZE, help="rows per query")

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        bad = 0
        for model, column in ENCRYPTED_COLUMNS:
            scan = scan_column(model, column, batch_size)
            self.stdout.write(scan.summary())  # column by column: a long scan shows its progress
            bad += len(scan.undecryptable)
        if bad:
            raise CommandError(
                f"{bad} stored secret(s) cannot be decrypted with FERNET_KEYS. Restore the key that "
                "encrypted them (after the first key), then run `manage.py rotate_fernet_keys`."
            )
