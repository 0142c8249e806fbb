"""Outgoing webhooks: the outbox, payloads, Standard Webhooks signing, and delivery with retries.

A change writes one WebhookDelivery per endpoint in its own transaction, with the task that sends
it in the task outbox (outbox.py): sent after commit, or once the broker is back. One event id per
real change, kept across retries and replays, so receivers can deduplicate on the `webhook-id`
header.

Delivery, at volume (tasks on the `webhooks` queue, so no receiver can delay a sync):
- A task claims due deliveries in a batch (WEBHOOK_DELIVERY_BATCH; one UPDATE … RETURNING, with
  SKIP LOCKED on PostgreSQL: concurrent claimers take different rows) — the delivery it was
  queued for first, then the oldest due — and sends them at once, each POST on a thread of its
  own, over one pooled, kept-alive, SSRF-guarded HTTP client per worker process
  (lib/clients.py, lib/targets.py). Each attempt is logged (WebhookAttempt) as it answers.
- A failed attempt is retried after RETRY_DELAYS (at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
  10 h): the retry waits in its row's next_attempt_at, and beat's retry_due_webhooks (every
  WEBHOOK_RETRY_SECONDS) queues deliver_due_webhooks tasks for what is due. No task carries an
  ETA or countdown, so none outlives the broker's visibility timeout and none is lost with it.
- A claim holds a delivery for CLAIM_LEASE: a worker that dies mid-send leaves it to be claimed
  again after that (at least once; receivers deduplicate on `webhook-id`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import KombuError
from standardwebhooks.webhooks import Webhook

from . import audit, outbox
from .lib import clients, crypto
from .lib.targets import check_url, guarded_client
from .models import (
    DeliveryStatus,
    Integration,
    Sync,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    new_event_id,
)

# Delay before attempt n+1 after attempt n failed (attempt 1 is sent at once).
RETRY_DELAYS = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A claimed delivery is not picked up again for this long: longer than one attempt can take (its
# batch is sent at once; WEBHOOK_HTTP_TIMEOUT, 15 s, bounds each of connect, send and each read),
# so a worker that dies mid-send is retried by the sweep instead of leaving the row stuck.
CLAIM_LEASE = timedelta(minutes=2)
# How much of a receiver's answer is read (the rest is not waited for) and kept on the attempt.
RESPONSE_READ_LIMIT = 64 * 1024
RESPONSE_KEPT = 1000
# Idle pooled connections are closed after this (or sooner, when the receiver closes them).
KEEPALIVE_SECONDS = 30.0
# deliver_due_webhooks stops taking new batches after this, and beat queues at most this many
# of them per run; one left waiting longer than DRAIN_TASK_EXPIRES behind a backlog is dropped.
DRAIN_BUDGET_SECONDS = 30.0
MAX_DRAIN_TASKS = 20
DRAIN_TASK_EXPIRES = 60
DELIVERY_FIELDS = ["attempts", "last_response_status", "last_error", "status", "delivered_at", "next_attempt_at"]

log = logging.getLogger(__name__)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def end_user(integration: Integration) -> dict[str, Any]:
    return {
        "organization_name": integration.end_user_organization_name,
        "creator_email": integration.end_user_email or None,
        "origin_id": integration.end_user_origin_id or None,
    }


def integration_data(integration: Integration) -> dict[str, Any]:
    return {
        "integration_tool": integration.tool,
        "integration_id": integration.id,
        "integration_category": integration.category,
        "end_user": end_user(integration),
        # The reference's enum is PENDING, FAILED, PASSED; Relink runs no manual QA review, so
        # every integration it reports is one that needs none: PASSED.
        "qa_status": "PASSED",
        "setup_status": integration.setup_status,
        "state": integration.state,
        "updated_at": _iso(integration.updated_at or timezone.now()),
    }


def integration_ref_data(integration: Integration, deleted_at: datetime | None = None) -> dict[str, Any]:
    """The data of `integration-created` and (with `deleted_at`) `integration-deleted`, exactly the
    reference's: id, tool, category, end user."""
    data: dict[str, Any] = {
        "id": integration.id,
        "tool": integration.tool,
        "category": integration.category,
        "end_user": end_user(integration),
    }
    if deleted_at is not None:
        data["deleted_at"] = _iso(deleted_at)
    return data


def sync_data(sync: Sync, log_url: str) -> dict[str, Any]:
    """The `sync-finished` data, exactly the reference's fields. Warnings are not among them: a sync
    that had some finished PARTIALLY_FAILED (`sync_state`), and `log_url` (its integration's page,
    with the sync history) shows each one."""
    integration = sync.integration
    duration = sync.duration
    return {
        "sync_id": sync.id,
        "sync_state": sync.status,
        "sync_started_at": _iso(sync.started_at),
        "sync_ended_at": _iso(sync.ended_at),
        "sync_duration_seconds": round(duration.total_seconds()) if duration else None,
        "integration_id": integration.id,
        "integration_tool": integration.tool,
        "integration_category": integration.category,
        "end_user": end_user(integration),
        "log_url": log_url,
    }


def data_changed_data(integration: Integration, changed_models: Sequence[str]) -> dict[str, Any]:
    """The `data-changed` data: the integration and the models (`[{"name": "hris_employees"}]`)
    whose records a sync created, updated or marked deleted."""
    return {
        "integration_id": integration.id,
        "integration_tool": integration.tool,
        "integration_category": integration.category,
        "changed_models": [{"name": model} for model in changed_models],
    }


def emit(environment_id: int, event_type: str, data: dict[str, Any]) -> list[WebhookDelivery]:
    """Write one outbox row per interested endpoint; sending starts after the commit."""
    event_id = new_event_id()
    payload = {"id": event_id, "type": event_type, "data": data}
    # Only what routing needs: the signing secret stays in the database until a delivery is sent.
    endpoints = WebhookEndpoint.objects.filter(environment_id=environment_id, enabled=True).only("pk", "event_types")
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint, event_id=event_id, event_type=event_type, payload=payload, next_attempt_at=now
        )
        for endpoint in endpoints
        if endpoint.wants(event_type)
    )
    outbox.send_on_commit(outbox.DELIVER_WEBHOOK, [(d.pk,) for d in deliveries])
    return deliveries


def emit_integration_state_changed(integration: Integration) -> list[WebhookDelivery]:
    return emit(integration.environment_id, WebhookEvent.INTEGRATION_STATE_CHANGED, integration_data(integration))


def emit_integration_auth_failing(integration: Integration, pauses_at: datetime) -> list[WebhookDelivery]:
    """Relink's own event, when an integration's authentication starts failing: the reference's
    integration fields, `failing_since` (the first rejected check) and `pauses_at` (when syncs
    pause unless the credentials work again before)."""
    data = {
        "integration_tool": integration.tool,
        "integration_id": integration.id,
        "integration_category": integration.category,
        "end_user": end_user(integration),
        "state": integration.state,
        "failing_since": _iso(integration.auth_failing_since),
        "pauses_at": _iso(pauses_at),
        "error": integration.last_auth_error,
    }
    return emit(integration.environment_id, WebhookEvent.INTEGRATION_AUTH_FAILING, data)


# --- Endpoints (each change audited) -----------------------------------------------------------


def create_endpoint(
    environment_id: int, url: str, actor: audit.Actor, *, description: str = "", event_types: list[str] | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its `whsec_` signing secret (to show once). Raises TargetRefused for a URL
    Relink may not send to (lib/targets.py)."""
    check_url(url)
    endpoint = WebhookEndpoint(
        environment_id=environment_id, url=url, description=description, event_types=sorted(set(event_types or []))
    )
    secret = endpoint.set_new_secret()
    with transaction.atomic():
        endpoint.save()
        audit.record(
            environment_id,
            "webhook_endpoint.created",
            actor,
            endpoint_id=endpoint.pk,
            url=url,
            event_types=endpoint.event_types,
        )
    return endpoint, secret


EDITABLE_FIELDS = ("url", "description", "event_types")


def update_endpoint(
    endpoint: WebhookEndpoint, actor: audit.Actor, *, url: str, description: str, event_types: list[str]
) -> dict[str, dict[str, Any]]:
    """Change an endpoint's URL, description and event filter (empty: all events), audited with
    what changed ({field: {"from", "to"}}; never the secret). Returns the changes ({} if none, and
    then nothing is written). Raises TargetRefused for a URL Relink may not send to, like create."""
    check_url(url)
    wanted: dict[str, Any] = {"url": url, "description": description, "event_types": sorted(set(event_types))}
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().only("pk", *EDITABLE_FIELDS).get(pk=endpoint.pk)
        current = {"url": locked.url, "description": locked.description, "event_types": sorted(locked.event_types)}
        changes = {f: {"from": current[f], "to": v} for f, v in wanted.items() if current[f] != v}
        if changes:
            for field in changes:
                setattr(locked, field, wanted[field])
            locked.save(update_fields=list(changes))
            audit.record(
                endpoint.environment_id,
                "webhook_endpoint.updated",
                actor,
                endpoint_id=endpoint.pk,
                url=url,
                changed=changes,
            )
    for field in changes:
        setattr(endpoint, field, wanted[field])
    return changes


# --- Signing secrets: rotation with an overlap window --------------------------------------------

# How long the replaced secret may keep signing after a rotation (the dashboard offers a few).
MAX_SECRET_OVERLAP = timedelta(days=7)


def previous_secret_signs_until(endpoint: WebhookEndpoint, now: datetime | None = None) -> datetime | None:
    """When the replaced secret stops signing, while the overlap window is open; else None."""
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires is not None and expires > (now or timezone.now()):
        return expires
    return None


def _clear_previous_secret(endpoint: WebhookEndpoint, expires: datetime | None) -> int:
    """Forget the replaced secret, unless a rotation since has set a new one (matched on expiry)."""
    same = Q(previous_secret_expires_at=expires) if expires is not None else Q(previous_secret_expires_at=None)
    cleared = (
        WebhookEndpoint.objects.filter(same, pk=endpoint.pk)
        .exclude(previous_secret_encrypted="")
        .update(previous_secret_encrypted="", previous_secret_expires_at=None)
    )
    endpoint.previous_secret_encrypted, endpoint.previous_secret_expires_at = "", None
    return cleared


def signing_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> list[str]:
    """The secrets a delivery is signed with now: the current one first, then, while the overlap
    window after a rotation is open, the replaced one. A replaced secret whose window has closed is
    cleared here, on the first delivery after it (no periodic task needed)."""
    secrets = [endpoint.get_secret()]
    if previous_secret_signs_until(endpoint, now) is not None:
        secrets.append(crypto.decrypt_str(endpoint.previous_secret_encrypted))
    elif endpoint.previous_secret_encrypted or endpoint.previous_secret_expires_at:
        _clear_previous_secret(endpoint, endpoint.previous_secret_expires_at)
    return secrets


def rotate_secret(
    endpoint: WebhookEndpoint, actor: audit.Actor, overlap: timedelta, now: datetime | None = None
) -> str:
    """A new `whsec_` secret for the endpoint (returned, to show once). With an `overlap`, the
    current secret keeps signing next to the new one until now + overlap, so receivers can switch
    without a failed delivery; without, it stops at once. A secret replaced earlier whose window
    is still open stops signing now (only one previous secret is kept). Audited, never a secret."""
    if not timedelta(0) <= overlap <= MAX_SECRET_OVERLAP:
        raise ValueError(f"overlap must be between 0 and {MAX_SECRET_OVERLAP}")
    now = now or timezone.now()
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        dropped_previous = previous_secret_signs_until(locked, now) is not None
        if overlap:
            locked.previous_secret_encrypted = locked.secret_encrypted
            locked.previous_secret_expires_at = now + overlap
        else:
            locked.previous_secret_encrypted, locked.previous_secret_expires_at = "", None
        secret = locked.set_new_secret()
        locked.save(update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_expires_at"])
        audit.record(
            locked.environment_id,
            "webhook_endpoint.secret_rotated",
            actor,
            endpoint_id=locked.pk,
            url=locked.url,
            overlap_seconds=int(overlap.total_seconds()),
            previous_signs_until=_iso(locked.previous_secret_expires_at),
            replaced_open_overlap=dropped_previous,
        )
    endpoint.secret_encrypted = locked.secret_encrypted
    endpoint.previous_secret_encrypted = locked.previous_secret_encrypted
    endpoint.previous_secret_expires_at = locked.previous_secret_expires_at
    return secret


def end_secret_overlap(endpoint: WebhookEndpoint, actor: audit.Actor, now: datetime | None = None) -> bool:
    """Stop signing with the replaced secret now; False if its window was not open (nothing audited)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            WebhookEndpoint.objects.select_for_update()
            .only("pk", "environment", "url", "previous_secret_encrypted", "previous_secret_expires_at")
            .get(pk=endpoint.pk)
        )
        was_until = previous_secret_signs_until(locked, now)
        if locked.previous_secret_encrypted or locked.previous_secret_expires_at:
            _clear_previous_secret(locked, locked.previous_secret_expires_at)
        if was_until is not None:
            audit.record(
                locked.environment_id,
                "webhook_endpoint.secret_overlap_ended",
                actor,
                endpoint_id=locked.pk,
                url=locked.url,
                would_have_signed_until=_iso(was_until),
            )
    endpoint.previous_secret_encrypted, endpoint.previous_secret_expires_at = "", None
    return was_until is not None


def set_endpoint_enabled(endpoint: WebhookEndpoint, enabled: bool, actor: audit.Actor) -> bool:
    """Pause or resume an endpoint; False if it already was so (nothing written)."""
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=not enabled).update(enabled=enabled)
        if changed:
            action = "webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled"
            audit.record(endpoint.environment_id, action, actor, endpoint_id=endpoint.pk, url=endpoint.url)
    endpoint.enabled = enabled
    return bool(changed)


def delete_endpoint(endpoint: WebhookEndpoint, actor: audit.Actor) -> None:
    """Delete an endpoint with its deliveries and their attempts."""
    with transaction.atomic():
        audit.record(
            endpoint.environment_id, "webhook_endpoint.deleted", actor, endpoint_id=endpoint.pk, url=endpoint.url
        )
        endpoint.delete()


def signed_request(
    delivery: WebhookDelivery, secret: str | Sequence[str], now: datetime | None = None
) -> tuple[bytes, dict[str, str]]:
    """The exact body and the Standard Webhooks headers for one attempt. With several secrets (a
    rotation's overlap window) `webhook-signature` carries one signature per secret, space-separated
    ("v1,<new> v1,<old>"): a receiver verifying with any one of them accepts the message."""
    body = json.dumps(delivery.payload, separators=(",", ":"))
    sent_at = now or timezone.now()
    secrets = [secret] if isinstance(secret, str) else list(secret)
    headers = {
        "content-type": "application/json",
        "user-agent": "Relink-Webhooks/1.0",
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(delivery.event_id, sent_at, body) for s in secrets),
    }
    return body.encode(), headers


# --- Delivery -----------------------------------------------------------------------------------


def _build_client() -> httpx.Client:
    """The process's client for webhooks: pooled, kept alive, SSRF-guarded on every new connection."""
    batch = settings.WEBHOOK_DELIVERY_BATCH
    return guarded_client(
        verify=clients.shared_ssl_context(),
        # A batch is sent at once: never make one of its requests wait for a connection.
        limits=httpx.Limits(
            max_connections=max(100, batch),
            max_keepalive_connections=max(20, batch),
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
        timeout=settings.WEBHOOK_HTTP_TIMEOUT,
        follow_redirects=False,
    )


# Rebuilt (its pooled connections closed) if the target policy changes: a connection opened while
# private targets were allowed is never reused once they are not.
def _client_key() -> tuple[bool, float, int]:
    return settings.WEBHOOK_ALLOW_PRIVATE_TARGETS, settings.WEBHOOK_HTTP_TIMEOUT, settings.WEBHOOK_DELIVERY_BATCH


_client = clients.ProcessClient("webhooks", _build_client, key=_client_key)


def http_client() -> httpx.Client:
    """This process's webhook client (integrations/lib/clients.py: one per process, fork-safe)."""
    return _client.get()


@dataclass
class _Outcome:
    attempted_at: datetime
    status_code: int | None
    response_text: str
    error: str
    duration_ms: int


def _read_some(response: httpx.Response, deadline: float) -> str:
    """At most RESPONSE_READ_LIMIT bytes of the body, read until `deadline`; a bigger or slower body
    is cut off (its connection is then closed rather than pooled)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_READ_LIMIT or time.monotonic() > deadline:
            break
    raw = b"".join(chunks)[:RESPONSE_READ_LIMIT]
    try:
        return raw.decode(response.encoding or "utf-8", errors="replace")[:RESPONSE_KEPT]
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")[:RESPONSE_KEPT]


def _send(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Outcome:
    """One POST (any thread: touches no database). Never raises: an error is the attempt's outcome."""
    attempted_at = timezone.now()
    started = time.monotonic()
    status_code, text, error = None, "", ""
    try:
        with client.stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
            text = _read_some(response, started + timeout)
            status_code = response.status_code
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    except Exception as exc:  # e.g. httpx.InvalidURL: this delivery's failure, not its batch's
        log.warning("webhook POST to %s failed unexpectedly", url, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"[:500]
    return _Outcome(attempted_at, status_code, text, error, int((time.monotonic() - started) * 1000))


def _claim(limit: int, now: datetime, first: int | None = None) -> list[int]:
    """Claim up to `limit` due deliveries — `first` if it is due, then the oldest due — in one
    statement: their next_attempt_at moves CLAIM_LEASE ahead, so no other claimer takes them
    until then. On PostgreSQL the due rows are locked with SKIP LOCKED, so concurrent claimers take
    different rows and none waits; SQLite runs one writing statement at a time."""
    table = connection.ops.quote_name(WebhookDelivery._meta.db_table)
    due = f"SELECT id FROM {table} WHERE status = '{DeliveryStatus.PENDING.value}' AND next_attempt_at <= %s"
    at = connection.ops.adapt_datetimefield_value(now)
    skip_locked = connection.features.has_select_for_update_skip_locked
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    parts, params = [f"{due} ORDER BY next_attempt_at LIMIT %s{lock}"], [at, limit]
    if first is not None:
        parts = [f"{due} AND id = %s{lock}", f"{due} AND id <> %s ORDER BY next_attempt_at LIMIT %s{lock}"]
        params = [at, first, at, first, limit - 1]
    if skip_locked:  # ARRAY(...) runs each locking subquery exactly once, whatever plan the UPDATE gets
        claimed = "id = ANY(" + " || ".join(f"ARRAY({part})" for part in parts) + ")"
    else:
        claimed = " OR ".join(f"id IN ({part})" for part in parts)
    sql = f"UPDATE {table} SET next_attempt_at = %s WHERE {claimed} RETURNING id"
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(now + CLAIM_LEASE), *params])
        claimed_ids = [row[0] for row in cursor.fetchall()]
    if first in claimed_ids:  # its own task's delivery first
        claimed_ids.remove(first)
        claimed_ids.insert(0, first)
    return claimed_ids


def _record(results: list[tuple[WebhookDelivery, _Outcome]]) -> None:
    """Log each attempt and move each delivery on (delivered, retried at next_attempt_at, or
    failed): one UPDATE per distinct outcome (a batch that all got a 200 is one), one INSERT."""
    now = timezone.now()
    changes: dict[tuple[Any, ...], list[WebhookDelivery]] = {}
    for delivery, outcome in results:
        status_code = outcome.status_code
        delivery.attempts += 1
        delivery.last_response_status = status_code
        delivery.last_error = outcome.error or ("" if status_code and status_code < 300 else f"HTTP {status_code}")
        if status_code is not None and 200 <= status_code < 300:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
        elif delivery.attempts < MAX_ATTEMPTS:  # beat's retry_due_webhooks sends it when due
            delivery.next_attempt_at = now + RETRY_DELAYS[delivery.attempts - 1]
        else:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
        changes.setdefault(tuple(getattr(delivery, f) for f in DELIVERY_FIELDS), []).append(delivery)
    with transaction.atomic():
        updated = sum(
            WebhookDelivery.objects.filter(pk__in=[d.pk for d in group]).update(
                **dict(zip(DELIVERY_FIELDS, values, strict=True))
            )
            for values, group in changes.items()
        )
        live = {d.pk for d, _ in results}
        if updated < len(results):  # an endpoint deleted meanwhile took its deliveries with it
            live = set(WebhookDelivery.objects.filter(pk__in=live).values_list("pk", flat=True))
        WebhookAttempt.objects.bulk_create(
            WebhookAttempt(
                delivery=delivery,
                attempted_at=outcome.attempted_at,
                response_status=outcome.status_code,
                response_body=outcome.response_text,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
            for delivery, outcome in results
            if delivery.pk in live
        )


def deliver_due(limit: int | None = None, first: int | None = None) -> list[WebhookDelivery]:
    """Claim up to `limit` (WEBHOOK_DELIVERY_BATCH) due deliveries — `first` among them if it is
    due — and send them at once, each on its own thread over the process's pooled client; each
    attempt is recorded as soon as it has its answer. Returns the deliveries sent, updated."""
    now = timezone.now()
    ids = _claim(limit or settings.WEBHOOK_DELIVERY_BATCH, now, first)
    if not ids:
        return []
    by_id = WebhookDelivery.objects.select_related("endpoint").in_bulk(ids)
    deliveries = [by_id[pk] for pk in ids if pk in by_id]
    secrets: dict[str, list[str]] = {}
    jobs = []
    for delivery in deliveries:
        if delivery.endpoint_id not in secrets:
            secrets[delivery.endpoint_id] = signing_secrets(delivery.endpoint, now)
        body, headers = signed_request(delivery, secrets[delivery.endpoint_id], now)
        jobs.append((delivery, delivery.endpoint.url, body, headers))
    client, timeout = http_client(), settings.WEBHOOK_HTTP_TIMEOUT
    if len(jobs) == 1:
        delivery, url, body, headers = jobs[0]
        _record([(delivery, _send(client, url, body, headers, timeout))])
        return deliveries
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="webhook") as pool:
        pending = {pool.submit(_send, client, url, body, headers, timeout): d for d, url, body, headers in jobs}
        while pending:  # record what has answered while slower receivers are still waited for
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            _record([(pending.pop(future), future.result()) for future in done])
    return deliveries


@shared_task(name="integrations.webhooks.attempt_delivery")
def attempt_delivery(delivery_id: int) -> WebhookDelivery | None:
    """Send this delivery once if it is due, together with up to WEBHOOK_DELIVERY_BATCH - 1 other
    due deliveries (one claim, one batch sent at once); a failed attempt waits for its retry in
    its row (next_attempt_at), which beat's retry_due_webhooks picks up.

    Returns this delivery after its attempt, or None when it was not due or another worker had
    claimed it (safe to call twice; the deliveries it took from other tasks make those no-ops).
    """
    sent = deliver_due(first=delivery_id)
    return next((d for d in sent if d.pk == delivery_id), None)


@shared_task(name="integrations.webhooks.deliver_due_webhooks")
def deliver_due_webhooks(budget_seconds: float = DRAIN_BUDGET_SECONDS) -> int:
    """Deliver due deliveries, batch after batch, until none is due or `budget_seconds` have passed
    (then the next beat run sends another of these). Returns how many were sent."""
    started = time.monotonic()
    total = 0
    while True:
        sent = len(deliver_due())
        total += sent
        if sent < settings.WEBHOOK_DELIVERY_BATCH or time.monotonic() - started >= budget_seconds:
            return total


def replay(delivery: WebhookDelivery) -> None:
    """Send a delivery again, now, with the same event id (one more attempt)."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.PENDING, next_attempt_at=timezone.now()
        )
        outbox.send_on_commit(outbox.DELIVER_WEBHOOK, [(delivery.pk,)])


def send_test_event(endpoint: WebhookEndpoint) -> WebhookDelivery:
    """One test delivery to this endpoint only, through the normal signed path."""
    event_id = new_event_id()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=event_id,
            event_type=WebhookEvent.INTEGRATION_CREATED,
            payload={"id": event_id, "type": "test", "data": {"message": "Test event from Relink"}},
            next_attempt_at=timezone.now(),
        )
        outbox.send_on_commit(outbox.DELIVER_WEBHOOK, [(delivery.pk,)])
    return delivery


# A delivery still pending this long after it was due lost its task inside the broker (its
# publish is the outbox's job); shorter would resend tasks that are merely waiting for a worker.
LOST_DELIVERY_AFTER = timedelta(minutes=2)


@shared_task(name="integrations.webhooks.retry_due_webhooks")
def retry_due_webhooks(max_tasks: int = MAX_DRAIN_TASKS) -> int:
    """Beat, every WEBHOOK_RETRY_SECONDS: hand the due retries — and deliveries whose task was
    lost inside the broker — to the webhooks queue, one deliver_due_webhooks task per batch
    (at most `max_tasks`). Runs no delivery itself, and no task it sends carries a delay: a retry
    waits in its row until due, never in the broker (whose visibility timeout would hand a long
    ETA task out twice). Returns how many deliveries were found due."""
    now = timezone.now()
    batch = settings.WEBHOOK_DELIVERY_BATCH
    due = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now).filter(
        Q(attempts__gt=0) | Q(next_attempt_at__lte=now - LOST_DELIVERY_AFTER)
    )
    count = due[: batch * max_tasks].count()
    try:
        for _ in range(-(-count // batch)):
            # Expires: one that waited this long behind a backlog has been overtaken by later runs.
            deliver_due_webhooks.apply_async(expires=DRAIN_TASK_EXPIRES)
    except (KombuError, OSError) as exc:  # the broker is down: the rows wait, the next run retries
        log.warning("webhooks: could not queue due deliveries (%s: %s); the next run will", type(exc).__name__, exc)
    return count
