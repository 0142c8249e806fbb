"""The task outbox: work committed with a Celery task to run is never lost to a broker outage,
and a broker outage never turns committed work into an error.

Why an outbox rather than "publish after commit": publishing after commit can fail (the broker is
down, the process dies between the two), and then the committed work waits for a sweep that may
be far away or, for work with no row of its own ("check now"), never comes. Publishing before
commit would send tasks for work that may roll back. So:

1. `send_on_commit(task, args_list)` writes one OutboxMessage per task **in the caller's
   transaction**: a message exists exactly when its work was committed.
2. After the commit the same process publishes them at once and deletes them. They are written
   already claimed by it (a short lease), so the sweep leaves them alone unless the lease runs out
   (the process died) or the publish failed (the claim is released). A broker error is logged as a
   warning and goes no further; the caller answers with what it committed.
3. Beat runs `flush_outbox` every OUTBOX_FLUSH_SECONDS (10 s): it publishes what is due and
   unclaimed (a failed publish, a process that died after its commit, a retry whose time came),
   oldest first. After an outage the work goes out at beat's first flush once beat and the
   worker have reconnected: kombu retries a lost broker with a growing pause (2 s, 4 s, … at
   most 30 s), so that is ~10 s after a short outage and at most ~40 s after a long one.

Delayed work is never an ETA message in the broker (a broker restart would lose it, and one
delayed past Redis's visibility timeout would be handed out twice): `available_at` holds a
message back until its time, and webhook retries wait in their own rows (next_attempt_at), which
beat's retry_due_webhooks picks up when due (integrations/webhooks.py).

Exactly once, from the worker's point of view: a row is published by the one process that
claimed it and then deleted. A process that dies between publishing and deleting leaves the row
to be published again after its lease; every task is idempotent (a sync runs only from QUEUED,
a webhook delivery is claimed before it is sent), so the work is still done once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import current_app, shared_task
from celery.exceptions import NotRegistered
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import KombuError

from .models import OutboxMessage

log = logging.getLogger(__name__)

# Registered task names, so the domain publishes without importing the task modules.
RUN_SYNC = "integrations.syncs.run_sync"
RUN_SYNC_NOW = "integrations.syncs.run_sync_now"  # the same, on the interactive queue
CHECK_AUTH = "integrations.health.check_integration"
DELIVER_WEBHOOK = "integrations.webhooks.attempt_delivery"

# Longer than a publish can take (a broker that answers slowly is retried within this).
CLAIM_LEASE = timedelta(seconds=30)
# A message naming a task this code does not have (renamed or removed by an upgrade) waits this long
# before it is tried again, so it never holds up the messages behind it.
UNKNOWN_TASK_RETRY = timedelta(days=1)
FLUSH_BATCH = 500


def send_on_commit(task: str, args_list: Iterable[Sequence[Any]], *, available_at: datetime | None = None) -> None:
    """Queue `task(*args)` for each args in `args_list`, published once the current transaction
    commits (at once, or by the sweep if the broker is down, or at `available_at`)."""
    now = timezone.now()
    when = available_at or now
    immediate = when <= now
    lease = now + CLAIM_LEASE if immediate else None  # this process publishes them after the commit
    messages = OutboxMessage.objects.bulk_create(
        OutboxMessage(task=task, args=list(args), created_at=now, available_at=when, claimed_until=lease)
        for args in args_list
    )
    if messages and immediate:
        transaction.on_commit(lambda: _publish_after_commit(messages))


def publish(task: str, args: Sequence[Any]) -> None:
    """The one place that hands a task to Celery (eager in tests, the broker otherwise)."""
    app = current_app
    if task not in app.tasks:
        app.loader.import_default_modules()  # a web process has not imported every tasks module
    app.tasks[task].apply_async(tuple(args))


def _publish_after_commit(messages: list[OutboxMessage]) -> None:
    try:
        _publish(messages)
    except Exception:  # the work is committed: never turn it into the caller's error
        if current_app.conf.task_always_eager:
            raise  # eager (tests): the task ran right here, and its error is the test's to see
        log.warning(
            "outbox: could not publish %d task(s) after commit; flush_outbox will", len(messages), exc_info=True
        )


def _claim(limit: int) -> list[OutboxMessage]:
    """Up to `limit` due, unclaimed messages, oldest first, claimed for this process (SKIP LOCKED:
    concurrent sweeps take different rows)."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(available_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .order_by("available_at", "pk")[:limit]
        )
        if rows:
            OutboxMessage.objects.filter(pk__in=[r.pk for r in rows]).update(claimed_until=now + CLAIM_LEASE)
    return rows


def _publish(rows: list[OutboxMessage]) -> tuple[int, bool]:
    """Publish claimed messages in order and delete the published ones; on a broker error, stop and
    release the claim on the rest. Returns (published, broker_ok)."""
    now = timezone.now()
    sent: list[int] = []
    error: Exception | None = None
    unsent: list[int] = []
    try:
        for i, row in enumerate(rows):
            try:
                publish(row.task, row.args)
            except (KombuError, OSError) as exc:  # broker down: stop, keep this row and the rest for the sweep
                error = exc
                unsent = [r.pk for r in rows[i:]]
                break
            except NotRegistered:
                log.error("outbox: no task %r here; message %d set aside for a day", row.task, row.pk)
                OutboxMessage.objects.filter(pk=row.pk).update(
                    claimed_until=None,
                    available_at=now + UNKNOWN_TASK_RETRY,
                    attempts=F("attempts") + 1,
                    last_error=f"no task named {row.task!r}",
                )
                continue
            sent.append(row.pk)
    finally:  # whatever else goes wrong, what was published is never published again
        OutboxMessage.objects.filter(pk__in=sent).delete()
    if error is not None:
        OutboxMessage.objects.filter(pk__in=unsent).update(
            claimed_until=None, attempts=F("attempts") + 1, last_error=f"{type(error).__name__}: {error}"[:500]
        )
        log.warning(
            "outbox: broker unavailable (%s: %s); %d task(s) kept for flush_outbox",
            type(error).__name__,
            error,
            len(unsent),
        )
    return len(sent), error is None


@shared_task(name="integrations.outbox.flush_outbox")
def flush_outbox(batch_size: int = FLUSH_BATCH, max_batches: int = 20) -> int:
    """Beat, every few seconds: publish what is due and was not published after its commit."""
    total = 0
    for _ in range(max_batches):
        rows = _claim(batch_size)
        if not rows:
            break
        published, broker_ok = _publish(rows)
        total += published
        if not broker_ok or len(rows) < batch_size:
            break
    if total:
        log.info("outbox: published %d task(s)", total)
    return total
