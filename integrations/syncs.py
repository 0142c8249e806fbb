"""Syncs: queueing (one open sync per integration), running, and the scheduler tick.

Every sync starts with an auth check that goes through the health rule (health.record_auth_check).

A sync streams each model page by page into `records.ModelWriter`, which writes only what changed
and marks what a complete read no longer returns as deleted; the models it changed that way are
kept in `Sync.changed_models` and sent in `data-changed` when the sync ends, whatever its status
(a re-read of unchanged data changes nothing and sends nothing). What a sync reads:

- FULL: every model completely.
- DELTA (the scheduler's): for the models the tool can filter by change date
  (`Provider.delta_models`), only the records changed since the previous read of that model
  (`DELTA_OVERLAP` earlier, for clocks and records changed while it read); everything else
  completely, writing only what changed. A complete read is still needed to see deletions, so a
  DELTA sync runs as FULL (and says so: its `type` becomes FULL) when no FULL sync under its scope
  config succeeded in the last FULL_READ_EVERY, e.g. the first sync, or the first after a change
  of scope config.

`Sync.records_per_model` is, per model, the records a complete read returned; for a model read as
changes only, the records Relink holds for it that are not marked deleted (its live count), so the
volume-drop rule compares like with like and never takes a small delta for a drop.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import outbox, records, webhooks
from .health import audit, check_and_record, describe_error
from .lib.crypto import UndecryptableSecret
from .models import (
    OPEN_SYNC_STATUSES,
    Integration,
    IntegrationState,
    ScopeConfig,
    Sync,
    SyncStatus,
    SyncType,
    WebhookEvent,
)
from .pages import integration_url
from .providers import Outcome
from .providers.base import ModelPermissionDenied, Provider, ProviderAuthFailed, ProviderError
from .scopes import ScopeSpec, effective_scope_config, effective_scope_config_ids
from .sync_warnings import NO_SCOPE_CONFIG, READ_EVERYTHING, field_withheld, model_not_granted, volume_drops

log = logging.getLogger(__name__)

JITTER = 0.1  # next sync at interval ± 10 %, so a fleet connected at once spreads out
STUCK_AFTER = timedelta(minutes=30)  # a RUNNING sync older than this is failed by the reaper
REQUEUE_AFTER = timedelta(minutes=15)  # a QUEUED sync older than this had its task lost: resend
MAX_ATTEMPTS = 3  # a sync whose worker died this many times is failed rather than run again
FULL_READ_EVERY = timedelta(hours=24)  # a DELTA sync runs as FULL when no FULL sync succeeded for this long
DELTA_OVERLAP = timedelta(minutes=10)  # a delta read starts this long before the previous read did


class NotSyncable(Exception):
    """Only ACTIVE integrations sync: an INVALID one waits for its customer to reconnect, an
    INACTIVE one was disabled."""

    def __init__(self, state: str) -> None:
        super().__init__(f"the integration is {state}")
        self.state = state


def _enqueue(sync_ids: list[str], *, interactive: bool = False) -> None:
    """Run these syncs once the current transaction commits (through the outbox: never lost).
    `interactive`: a person is waiting (a completed link, Force sync): the interactive queue,
    which workers serve before the scheduler's (settings: CELERY_TASK_QUEUES)."""
    task = outbox.RUN_SYNC_NOW if interactive else outbox.RUN_SYNC
    outbox.send_on_commit(task, [(sync_id,) for sync_id in sync_ids])


def queue_sync(
    integration_id: str, sync_type: str = SyncType.DELTA, *, actor_user=None, actor_api_key=None
) -> tuple[Sync, bool]:
    """Queue a sync now, or return the one already queued or running: (sync, already_queued).
    Raises NotSyncable for an integration that is not ACTIVE.

    The integration row is locked so this never races the scheduler tick; the partial unique
    constraint on open syncs is the last line of defence. A new sync moves the next scheduled one
    an interval away, as the tick does, so a forced or post-connect sync is not followed at once
    by a scheduled one. With an actor (an operator's or an API key's force sync) a new sync is
    written to the integration's audit trail.
    """
    with transaction.atomic():
        integration = (
            Integration.objects.select_for_update(of=("self",)).select_related("environment").get(pk=integration_id)
        )
        if integration.state != IntegrationState.ACTIVE:
            raise NotSyncable(integration.state)
        existing = (
            Sync.objects.filter(integration=integration, status__in=OPEN_SYNC_STATUSES)
            .annotate(dead=ExpressionWrapper(_dead_run(timezone.now()), output_field=BooleanField()))
            .first()
        )
        if existing and existing.dead:
            existing.integration = integration  # loaded above, with its environment
            # Its worker died: run it again (not "already queued"), or fail it after MAX_ATTEMPTS.
            if _revive(existing):
                return existing, False
            existing = None
        if existing:
            return existing, True
        try:
            with transaction.atomic():
                sync = Sync.objects.create(
                    integration=integration,
                    type=sync_type,
                    scope_config_id=effective_scope_config_ids([integration])[integration.pk],
                )
        except IntegrityError:
            return Sync.objects.get(integration=integration, status__in=OPEN_SYNC_STATUSES), True
        integration.next_sync_at = next_sync_time(sync.created_at, integration.environment.sync_interval)
        integration.save(update_fields=["next_sync_at"])
        if actor_user or actor_api_key:
            audit(
                integration,
                "sync.forced",
                actor_user=actor_user,
                actor_api_key=actor_api_key,
                sync_id=sync.pk,
                type=sync_type,
            )
        _enqueue([sync.id], interactive=True)
    return sync, False


def next_sync_time(now: datetime, interval: timedelta, rng: random.Random | None = None) -> datetime:
    factor = 1 + (rng or random).uniform(-JITTER, JITTER)
    return now + interval * factor


@shared_task(name="integrations.syncs.tick")
def tick(
    now: datetime | None = None,
    batch_size: int = 500,
    max_batches: int = 20,
    enqueue: Callable[[list[str]], None] = _enqueue,
) -> int:
    """Claim due integrations in batches and queue one sync for each. Returns how many.

    Per batch, in one transaction: lock due rows with SKIP LOCKED (other ticks skip them),
    move their next_sync_at forward, insert the QUEUED syncs and their outbox rows; publish
    after commit (`enqueue`, which tests and the benchmark replace).
    Only ACTIVE integrations (enabled, not INVALID) without an open sync are due.
    Cost: a few indexed queries per batch, independent of the fleet size.
    """
    now = now or timezone.now()
    claimed = 0
    open_sync = Sync.objects.filter(integration=OuterRef("pk"), status__in=OPEN_SYNC_STATUSES)
    for _ in range(max_batches):
        with transaction.atomic():
            due = list(
                Integration.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(state=IntegrationState.ACTIVE, next_sync_at__lte=now)
                .exclude(Exists(open_sync))
                .select_related("environment")
                .only("id", "category", "scope_config_id", "next_sync_at", "environment__sync_interval")
                .order_by("next_sync_at")[:batch_size]
            )
            if not due:
                break
            for integration in due:
                integration.next_sync_at = next_sync_time(now, integration.environment.sync_interval)
            _save_next_sync_times(due)
            scopes = effective_scope_config_ids(due)  # the integration's own, else its default: one query
            syncs = Sync.objects.bulk_create(
                [Sync(integration_id=i.id, scope_config_id=scopes[i.id], created_at=now) for i in due],
                ignore_conflicts=True,
            )
            enqueue([s.id for s in syncs])
        claimed += len(due)
        if len(due) < batch_size:
            break
    log.info("scheduler tick claimed %d integrations", claimed)
    return claimed


def _save_next_sync_times(integrations: list[Integration]) -> None:
    """One UPDATE for the whole batch (PostgreSQL: join on unnest'ed arrays, no giant CASE)."""
    if connection.vendor != "postgresql":
        Integration.objects.bulk_update(integrations, ["next_sync_at"])
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE integrations_integration AS i SET next_sync_at = v.next_sync_at "
            "FROM unnest(%s::varchar[], %s::timestamptz[]) AS v(id, next_sync_at) WHERE i.id = v.id",
            [[i.id for i in integrations], [i.next_sync_at for i in integrations]],
        )


def _finish(sync: Sync, status: str, error: str = "") -> Sync:
    _finish_running(sync, status, error)
    return sync


def _finish_running(sync: Sync, status: str, error: str = "") -> bool:
    """RUNNING → `status`, once: the integration's last sync time, its data freshness, the
    `data-changed` webhook (if the sync changed records: `Sync.changed_models`) and the
    `sync-finished` webhook, in one transaction.

    Conditional on the sync still RUNNING under the same attempt, so a run and the reaper never
    both finish it, nor does a run presumed dead finish its successor's attempt: a run that
    outlived its lease keeps the records it wrote, but its late result changes nothing else and
    sends no second webhook.
    """
    ended_at = timezone.now()
    with transaction.atomic():
        finished = Sync.objects.filter(pk=sync.pk, status=SyncStatus.RUNNING, attempts=sync.attempts).update(
            status=status,
            ended_at=ended_at,
            error_message=error[:500],
            models_total=sync.models_total,
            models_done=sync.models_done,
            records_per_model=sync.records_per_model,
            warnings=sync.warnings,
            changed_models=sync.changed_models,
        )
        if not finished:
            log.warning("sync %s was already finished; dropping its late %s", sync.pk, status)
            sync.refresh_from_db()
            return False
        sync.status, sync.ended_at, sync.error_message = status, ended_at, error[:500]
        integration_qs = Integration.objects.filter(pk=sync.integration_id)
        integration_qs.update(last_sync_at=ended_at)
        if status == SyncStatus.SUCCEEDED:
            # Only a sync run with the current scope config makes the data current again.
            integration_qs.filter(scope_config_id=sync.scope_config_id).update(data_expired_at=None)
        # `sync.integration` (with its environment) was loaded by the caller; the webhooks read
        # only fields a sync does not change.
        environment_id = sync.integration.environment_id
        if sync.changed_models:  # whatever the status: pages written before a failure are real changes
            webhooks.emit(
                environment_id,
                WebhookEvent.DATA_CHANGED,
                webhooks.data_changed_data(sync.integration, sync.changed_models),
            )
        webhooks.emit(
            environment_id,
            WebhookEvent.SYNC_FINISHED,
            webhooks.sync_data(sync, integration_url(sync.integration)),
        )
    return True


def _lease() -> timedelta:
    return timedelta(seconds=settings.SYNC_LEASE_SECONDS)


def _dead_run(now: datetime) -> Q:
    """RUNNING, but its worker stopped proving it is alive (killed, lost its database, …)."""
    cutoff = now - _lease()
    return Q(status=SyncStatus.RUNNING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_gone(run_by: str) -> bool:
    """`run_by` names a process of this host that no longer exists: a worker's pool process was
    killed mid-run and its task, requeued by the worker, came back here. No need to wait out
    the lease then. (Another host's process cannot be checked: the lease decides.)"""
    host, _, pid = run_by.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    return False


@contextmanager
def _heartbeat(sync: Sync) -> Iterator[None]:
    """While the run is in progress, a thread renews its lease every SYNC_HEARTBEAT_SECONDS (on
    its own database connection), so a long provider call never looks like a dead worker; when
    the worker dies, the heartbeats stop and the lease runs out."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.SYNC_HEARTBEAT_SECONDS):
                Sync.objects.filter(pk=sync.pk, status=SyncStatus.RUNNING, attempts=sync.attempts).update(
                    heartbeat_at=timezone.now()
                )
        except Exception:  # the run goes on; at worst its lease runs out and it is run again
            log.exception("heartbeat of sync %s stopped", sync.pk)
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=beat, name=f"sync-heartbeat-{sync.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _revive(sync: Sync) -> bool:
    """A dead run back to QUEUED and its task sent again; after MAX_ATTEMPTS, FAILED instead.
    True if it was requeued. Conditional on the attempt, so two reapers requeue it once."""
    if sync.attempts >= MAX_ATTEMPTS:
        _finish_running(sync, SyncStatus.FAILED, f"failed: its worker stopped {sync.attempts} times")
        return False
    with transaction.atomic():
        requeued = Sync.objects.filter(pk=sync.pk, status=SyncStatus.RUNNING, attempts=sync.attempts).update(
            status=SyncStatus.QUEUED, heartbeat_at=None
        )
        if requeued:
            log.warning("sync %s lost its worker (attempt %d); queued again", sync.pk, sync.attempts)
            sync.status = SyncStatus.QUEUED
            _enqueue([sync.pk])
    return bool(requeued)


@shared_task(name="integrations.syncs.run_sync")
def run_sync(sync_id: str) -> Sync | None:
    """Run one queued sync. Safe to call twice: only the call that claims it proceeds.

    Steps: claim (QUEUED → RUNNING, or a RUNNING sync whose lease ran out: the redelivered task of
    a dead worker); auth check through the health rule; fetch each model of the scope config the
    sync was queued with (the integration's effective one: its own, else its category's default;
    with none at all the sync ends CANCELLED with the NO_SCOPE_CONFIG warning); upsert records
    (idempotent, so a rerun duplicates nothing); compare each model's count with its usual one
    (a VOLUME_DROP warning for a count far below it, sync_warnings.volume_drops); finish with a
    final status — PARTIALLY_FAILED when there are warnings — and the `sync-finished` webhook,
    after `data-changed` when records changed (`_note_changes`). A heartbeat renews the lease meanwhile.
    """
    now = timezone.now()
    claimed = _claim(sync_id, Q(status=SyncStatus.QUEUED) | _dead_run(now), now)
    if not claimed:  # running elsewhere, finished — or its pool process was killed just now
        current = Sync.objects.filter(pk=sync_id, status=SyncStatus.RUNNING).values("run_by", "attempts").first()
        if current and _process_gone(current["run_by"]):
            claimed = _claim(sync_id, Q(status=SyncStatus.RUNNING, **current), now)
    if not claimed:
        return None
    sync = Sync.objects.select_related("integration__environment", "scope_config").get(pk=sync_id)
    with _heartbeat(sync):
        try:
            return _run(sync)
        except UndecryptableSecret:
            return _finish(
                sync, SyncStatus.FAILED, "the stored credentials cannot be decrypted with the configured FERNET_KEYS"
            )
        except Exception:
            # Never leave it RUNNING for a bug: fail it, then let Celery log the traceback. (If the
            # database itself is gone, this fails too and the lease brings the sync back.)
            _finish(sync, SyncStatus.FAILED, "internal error while syncing; see the worker log")
            raise


def _claim(sync_id: str, claimable: Q, now: datetime) -> int:
    """Take the run of a sync matching `claimable`: a new attempt, by this process."""
    return (
        Sync.objects.filter(claimable, pk=sync_id)
        .exclude(attempts__gte=MAX_ATTEMPTS, status=SyncStatus.RUNNING)
        .update(
            status=SyncStatus.RUNNING,
            started_at=Coalesce(F("started_at"), now),
            run_by=_this_process(),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            models_done=0,
            records_per_model={},
            warnings=[],
        )
    )


def _run(sync: Sync) -> Sync:
    integration = sync.integration
    if integration.state != IntegrationState.ACTIVE:
        return _finish(sync, SyncStatus.CANCELLED, f"integration is {integration.state}")

    provider = integration.provider
    credentials = integration.get_credentials()
    result = check_and_record(integration, credentials)
    credentials = result.updated_credentials or credentials
    if result.outcome is Outcome.AUTH_FAILED:
        return _finish(sync, SyncStatus.AUTHENTICATION_FAILED, describe_error(result))
    if result.outcome is Outcome.UNAVAILABLE:
        return _finish(sync, SyncStatus.FAILED, f"{provider.label} unavailable: {result.message}")

    scope = sync.scope_config
    if scope is None:  # queued before a default was set, or its scope config was deleted since
        scope = effective_scope_config(integration)
        if scope is not None:
            sync.scope_config = scope
            sync.save(update_fields=["scope_config"])
    if scope is None:
        sync.warnings.append(NO_SCOPE_CONFIG)
        return _finish(sync, SyncStatus.CANCELLED, NO_SCOPE_CONFIG)
    spec = ScopeSpec.parse(scope.spec)
    plan = spec.fetch_plan(provider, integration.opted_out_fields)
    since = delta_starts(sync, scope, provider, [model for model, _ in plan])
    sync.models_total = len(plan)
    sync.save(update_fields=["models_total", "type"])
    for model, fields in plan:
        writer = records.ModelWriter(integration.pk, model, complete=model not in since)
        try:
            for page in provider.fetch_pages(model, credentials, fields, since=since.get(model)):
                writer.write(page.rows)
                _note_changes(sync, writer)
        except ModelPermissionDenied as exc:
            sync.warnings.append(model_not_granted(model, exc.permission))
        except ProviderAuthFailed as exc:
            return _finish(sync, SyncStatus.AUTHENTICATION_FAILED, str(exc))
        except ProviderError as exc:
            return _finish(sync, SyncStatus.FAILED, str(exc))
        else:
            writer.finish()
            _note_changes(sync, writer)
            count = writer.read if writer.complete else records.live_count(integration.pk, model)
            sync.records_per_model[model] = count
            for field_name, permission in provider.withheld_of(model, fields, writer.present, writer.any_rows):
                sync.warnings.append(field_withheld(model, field_name, permission))
        sync.models_done += 1
        sync.save(update_fields=["models_done", "records_per_model", "warnings"])
    sync.warnings.extend(drop.text for drop in volume_drops(sync))
    return _finish(sync, SyncStatus.PARTIALLY_FAILED if sync.warnings else SyncStatus.SUCCEEDED)


def _note_changes(sync: Sync, writer: records.ModelWriter) -> None:
    """Once the writer's model has records this sync created, updated or marked deleted
    (`written`, `deleted`), add it to `sync.changed_models`, on the row at once (one UPDATE per
    model): a run that fails or dies later still made those changes, and whoever finishes the
    sync — this run, a later attempt, the reaper — reports them in `data-changed`."""
    if (writer.written or writer.deleted) and writer.model not in sync.changed_models:
        sync.changed_models.append(writer.model)
        Sync.objects.filter(pk=sync.pk, status=SyncStatus.RUNNING, attempts=sync.attempts).update(
            changed_models=sync.changed_models
        )


def delta_starts(sync: Sync, scope: ScopeConfig, provider: Provider, models: list[str]) -> dict[str, datetime]:
    """For a DELTA sync, the models to read as changes only, each with the date to read from:
    the start of the newest recent sync (same scope config, read everything) that read the model,
    less DELTA_OVERLAP. Empty for a FULL sync — and for a DELTA sync with no FULL sync of its scope
    config succeeded within FULL_READ_EVERY, which then runs as FULL (`sync.type` changed, saved
    by the caller). Two indexed queries (`sync_history_idx`).
    """
    if sync.type == SyncType.FULL:
        return {}
    recent = Sync.objects.filter(
        integration_id=sync.integration_id,
        scope_config_id=scope.pk,
        status__in=READ_EVERYTHING,
        started_at__gte=max(scope.updated_at, timezone.now() - FULL_READ_EVERY),
    ).exclude(pk=sync.pk)
    if not recent.filter(type=SyncType.FULL).exists():
        sync.type = SyncType.FULL
        return {}
    delta_capable = [model for model in models if model in provider.delta_models]
    if not delta_capable:
        return {}
    starts: dict[str, datetime] = {}
    for started, counts in recent.order_by("-created_at").values_list("started_at", "records_per_model")[:50]:
        for model in delta_capable:
            if started is not None and model not in starts and model in (counts or {}):
                starts[model] = started - DELTA_OVERLAP
        if len(starts) == len(delta_capable):
            break
    return starts


@shared_task(name="integrations.syncs.run_sync_now")
def run_sync_now(sync_id: str) -> Sync | None:
    """`run_sync` for a sync a person is waiting for: routed to the interactive queue."""
    return run_sync(sync_id)


@shared_task(name="integrations.syncs.reap_stuck_syncs")
def reap_stuck_syncs(now: datetime | None = None, batch_size: int = 1000) -> tuple[int, int]:
    """Every SYNC_REAP_SECONDS: run again the syncs whose worker died (lease expired), fail those
    RUNNING for too long anyway (each with its `sync-finished` webhook, like any other end), and
    resend syncs whose task was lost while QUEUED. Returns (failed, sent again)."""
    now = now or timezone.now()
    running = Sync.objects.select_related("integration__environment")
    stuck = running.filter(status=SyncStatus.RUNNING, started_at__lt=now - STUCK_AFTER).order_by("started_at")
    failed = sum(
        _finish_running(sync, SyncStatus.FAILED, "timed out: no progress, failed by the reaper")
        for sync in stuck[:batch_size]
    )
    revived = 0
    for sync in running.filter(_dead_run(now)).order_by("heartbeat_at")[:batch_size]:
        if _revive(sync):
            revived += 1
        else:
            failed += sync.status == SyncStatus.FAILED
    # QUEUED this long although its task was published: the message was lost inside the broker
    # (e.g. a Redis restart without persistence). A publish that failed is the outbox's, not this.
    with transaction.atomic():
        stale = list(
            Sync.objects.filter(status=SyncStatus.QUEUED, created_at__lt=now - REQUEUE_AFTER).values_list(
                "pk", flat=True
            )[:batch_size]
        )
        _enqueue(stale)
    log.info("reaper: %d syncs failed, %d lost their worker, %d resent", failed, revived, len(stale))
    return failed, revived + len(stale)
