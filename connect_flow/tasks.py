from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from integrations import audit

from .models import ConnectionLink

log = logging.getLogger(__name__)


@shared_task
def record_expired_links(batch_size: int = 1000) -> int:
    """Write one `link.expired` audit event per link whose expiry passed unused.

    Locks the candidate rows with SKIP LOCKED (PostgreSQL; SQLite serialises writers), so
    overlapping runs never record a link twice.
    """
    now = timezone.now()
    with transaction.atomic():
        links = list(
            ConnectionLink.objects.select_for_update(skip_locked=True)
            .filter(
                expires_at__lte=now,
                completed_at__isnull=True,
                revoked_at__isnull=True,
                expiry_recorded_at__isnull=True,
            )
            .only("id", "environment_id", "integration_id", "link_type", "kind")[:batch_size]
        )
        ConnectionLink.objects.filter(pk__in=[link.pk for link in links]).update(expiry_recorded_at=now)
        audit.record_many(
            audit.event(
                link.environment_id,
                "link.expired",
                integration_id=link.integration_id or "",
                at=now,
                link_id=link.id,
                link_type=link.link_type,
                kind=link.kind,
            )
            for link in links
        )
    log.info("recorded %d expired links", len(links))
    return len(links)
