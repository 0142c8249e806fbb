"""Re-encrypt every stored secret under the first key of FERNET_KEYS.

Works in batches ordered by primary key, one transaction per batch, so it can be interrupted and
run again: rows already under the first key are skipped. Rotate keys in three steps:
1. put the new key first in FERNET_KEYS, keep the old ones after it, deploy;
2. run this command;
3. remove the old keys.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from integrations.lib import crypto
from integrations.models import ENCRYPTED_COLUMNS


class Command(BaseCommand):
    help = "Re-encrypt stored secrets under the first key in FERNET_KEYS (batched, resumable)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        for model, field in ENCRYPTED_COLUMNS:
            rotated = skipped = 0
            last_pk = None
            while True:
                with transaction.atomic():
                    qs = model._default_manager.exclude(**{field: ""}).order_by("pk")
                    if last_pk is not None:
                        qs = qs.filter(pk__gt=last_pk)
                    rows = list(qs.select_for_update().values_list("pk", field)[:batch_size])
                    if not rows:
                        break
                    for pk, token in rows:
                        if crypto.is_under_primary_key(token):
                            skipped += 1
                            continue
                        model._default_manager.filter(pk=pk).update(**{field: crypto.rotate(token)})
                        rotated += 1
                    last_pk = rows[-1][0]
            self.stdout.write(f"{model._meta.verbose_name_plural}: rotated={rotated} already_current={skipped}")
