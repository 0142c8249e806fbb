"""Keep the integrations list's cached counts in step with the writes that change them."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from integrations.models import Integration

from .paginator import invalidate_counts

# The fields the list filters and searches on; a save touching none of them keeps every count.
COUNTED_FIELDS = frozenset(
    {"state", "enabled", "tool", "end_user_organization_name", "end_user_origin_id", "environment"}
)


def integration_count_namespace(environment_id: int) -> str:
    return f"integrations:{environment_id}"


@receiver(post_save, sender=Integration, dispatch_uid="dashboard-integration-saved")
def _integration_saved(sender, instance: Integration, created: bool, update_fields=None, **kwargs) -> None:
    if created or update_fields is None or COUNTED_FIELDS.intersection(update_fields):
        _invalidate_on_commit(instance.environment_id)


@receiver(post_delete, sender=Integration, dispatch_uid="dashboard-integration-deleted")
def _integration_deleted(sender, instance: Integration, **kwargs) -> None:
    _invalidate_on_commit(instance.environment_id)


def _invalidate_on_commit(environment_id: int) -> None:
    # After commit: invalidating earlier would let a concurrent request re-cache the old count.
    transaction.on_commit(lambda: invalidate_counts(integration_count_namespace(environment_id)))
