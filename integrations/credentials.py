"""An integration's stored credentials, made usable: refreshed first when the tool says so (OAuth).

Refresh tokens rotate: two callers refreshing with the same one would leave one of them (and perhaps
the grant) broken. Every caller that uses stored credentials — a sync's auth check, "check now", a
passthrough request — gets them here, so a refresh always runs with the integration's row locked,
on the credentials read under that lock, only if they still need it, and is committed before the
caller makes its own requests (outside the transaction).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .models import Integration
from .providers.base import Provider


def usable_credentials(integration: Integration, provider: Provider | None = None) -> dict[str, Any]:
    """The integration's stored credentials (read again from the database), refreshed and stored
    first when `provider.needs_refresh` says they must be.

    Raises what `provider.refresh` raises (`ProviderAuthFailed`: the tool refused the refresh;
    `ProviderUnavailable`: it could not answer); the stored credentials are then left as they were.
    """
    provider = provider or integration.provider
    integration.refresh_from_db(fields=["credentials_encrypted"])
    credentials = integration.get_credentials()
    if not provider.needs_refresh(credentials):
        return credentials
    with transaction.atomic():
        locked = Integration.objects.select_for_update().only("pk", "credentials_encrypted").get(pk=integration.pk)
        credentials = locked.get_credentials()
        if not provider.needs_refresh(credentials):
            return credentials  # refreshed by a concurrent caller meanwhile
        refreshed = provider.refresh(credentials)
        locked.set_credentials(refreshed)
        locked.save(update_fields=["credentials_encrypted", "updated_at"])
    integration.credentials_encrypted = locked.credentials_encrypted
    return refreshed
