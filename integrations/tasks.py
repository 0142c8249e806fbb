"""Housekeeping tasks of the integrations app that belong to no other module.

The other tasks live beside the code they run: syncs (run_sync, tick, reap_stuck_syncs), health
(check_integration, recheck_invalid_integrations), webhooks (attempt_delivery, deliver_due_webhooks,
retry_due_webhooks), outbox (flush_outbox); config.settings.CELERY_IMPORTS lists those modules.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import RequestLog

log = logging.getLogger(__name__)

PRUNE_BATCH = 5000


@shared_task
def prune_request_logs() -> int:
    """Delete request logs older than REQUEST_LOG_RETENTION_DAYS, a batch at a time."""
    cutoff = timezone.now() - timedelta(days=settings.REQUEST_LOG_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(RequestLog.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:PRUNE_BATCH])
        if not ids:
            break
        deleted += RequestLog.objects.filter(pk__in=ids).delete()[0]
    log.info("pruned %d request logs older than %s", deleted, cutoff.isoformat())
    return deleted


@shared_task(ignore_result=False)
def ping() -> str:
    """Round trip through the broker (and result backend); used by health checks and tests."""
    return "pong"
