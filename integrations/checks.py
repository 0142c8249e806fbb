"""System checks. `manage.py check --database default` (run by `make demo` before starting)
fails when the configured FERNET_KEYS cannot decrypt the stored secrets."""

from django.core.checks import Error, Tags, register
from django.db import DatabaseError

from .lib.crypto import UndecryptableSecret, decrypt_str
from .models import ENCRYPTED_COLUMNS


@register(Tags.database)
def stored_secrets_decrypt(app_configs, databases=None, **kwargs):
    if not databases:
        return []
    errors = []
    for model, field in ENCRYPTED_COLUMNS:
        try:
            token = model._default_manager.exclude(**{field: ""}).order_by("-pk").values_list(field, flat=True).first()
        except DatabaseError:  # tables not migrated yet
            return []
        if token is None:
            continue
        try:
            decrypt_str(token)
        except UndecryptableSecret:
            errors.append(
                Error(
                    f"Stored {model._meta.verbose_name} secrets cannot be decrypted with FERNET_KEYS.",
                    hint="Restore the key that encrypted them (keep it after the new first key) and run "
                    "`manage.py rotate_fernet_keys` before removing it.",
                    id="relink.E001",
                )
            )
    return errors
