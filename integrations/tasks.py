"""Celery tasks of the integrations app. Tasks take primary keys and re-check state."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import outbox
from .models import DeliveryStatus, RequestLog, WebhookDelivery

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


@shared_task
def deliver_webhook(delivery_id: int) -> None:
    from .webhooks import attempt_delivery

    attempt_delivery(delivery_id)


# A delivery still pending this long after it was due lost its task inside the broker (its
# publish is the outbox's job); shorter would resend tasks that are merely waiting for a worker.
LOST_DELIVERY_AFTER = timedelta(minutes=2)


@shared_task
def retry_due_webhooks(batch_size: int = 500) -> int:
    """Safety net for deliveries whose task was lost inside the broker (e.g. a Redis restart)."""
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.filter(
                status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now() - LOST_DELIVERY_AFTER
            )
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        outbox.send_on_commit(outbox.DELIVER_WEBHOOK, [(pk,) for pk in ids])
    return len(ids)


@shared_task
def scheduler_tick() -> int:
    """Beat, every minute: claim due integrations and queue their syncs."""
    from .syncs import tick

    claimed = tick()
    log.info("scheduler tick claimed %d integrations", claimed)
    return claimed


@shared_task
def run_sync(sync_id: str) -> None:
    from .syncs import run_sync as run

    run(sync_id)


@shared_task
def reap_stuck_syncs() -> None:
    from .syncs import reap_stuck_syncs as reap

    failed, resent = reap()
    log.info("reaper failed %d stuck syncs, resent %d queued syncs", failed, resent)


@shared_task
def check_integration_auth(integration_id: str) -> None:
    from .syncs import check_integration

    check_integration(integration_id)


@shared_task
def recheck_invalid_integrations() -> int:
    """Daily: re-check INVALID integrations so one whose customer fixed the credentials heals."""
    from .syncs import invalid_due_for_recheck

    with transaction.atomic():
        ids = invalid_due_for_recheck()
        outbox.send_on_commit(outbox.CHECK_AUTH, [(pk,) for pk in ids])
    return len(ids)
