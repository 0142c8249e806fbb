"""Outgoing webhooks: the outbox, payloads, Standard Webhooks signing, and delivery with retries.

A change writes one WebhookDelivery per endpoint in its own transaction, with the task that sends
it in the task outbox (outbox.py): sent after commit, or once the broker is back. One event id per
real change, kept across retries and replays, so receivers can deduplicate on the `webhook-id`
header.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from celery import shared_task
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from . import audit, outbox, sync_warnings
from .lib import crypto
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
TIMEOUT_SECONDS = 15
# A claimed delivery is not picked up again for this long (longer than one attempt can take),
# so a worker that dies mid-send is retried by the sweep instead of leaving the row stuck.
CLAIM_LEASE = timedelta(seconds=60)


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
        "qa_status": "NOT_NEEDED",
        "setup_status": integration.setup_status,
        "state": integration.state,
        "updated_at": _iso(integration.updated_at or timezone.now()),
    }


def sync_data(sync: Sync, log_url: str) -> dict[str, Any]:
    """The `sync-finished` data: the reference's fields, and — a Relink addition, present only
    when the sync finished with warnings, so a clean sync's payload is exactly the reference's —
    `warnings`: one entry per warning, `{"code", "message"}`, a VOLUME_DROP with `model`,
    `previous` (the usual count), `current` and `drop_percent` too (sync_warnings.entry)."""
    integration = sync.integration
    duration = sync.duration
    data: dict[str, Any] = {
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
    if sync.warnings:
        data["warnings"] = [sync_warnings.entry(w) for w in sync.warnings]
    return data


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


@shared_task(name="integrations.webhooks.attempt_delivery")
def attempt_delivery(delivery_id: int) -> WebhookDelivery | None:
    """Send one due delivery once, record the attempt, and schedule the next one if it failed.

    Returns None when the delivery is not due or another worker claimed it (safe to call twice).
    """
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + CLAIM_LEASE)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    body, headers = signed_request(delivery, signing_secrets(delivery.endpoint, now), now)
    started = time.monotonic()
    status_code, response_text, error = None, "", ""
    try:
        with guarded_client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.post(delivery.endpoint.url, content=body, headers=headers)
        status_code, response_text = response.status_code, response.text[:1000]
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    duration_ms = int((time.monotonic() - started) * 1000)

    delivery.attempts += 1
    delivery.last_response_status = status_code
    delivery.last_error = error or ("" if status_code and status_code < 300 else f"HTTP {status_code}")
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = timezone.now()
        delivery.next_attempt_at = None
        retry_in = None
    elif delivery.attempts < MAX_ATTEMPTS:
        retry_in = RETRY_DELAYS[delivery.attempts - 1]
        delivery.next_attempt_at = timezone.now() + retry_in
    else:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        retry_in = None
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            response_status=status_code,
            response_body=response_text,
            error=error,
            duration_ms=duration_ms,
        )
        delivery.save(
            update_fields=[
                "attempts",
                "last_response_status",
                "last_error",
                "status",
                "delivered_at",
                "next_attempt_at",
            ]
        )
        if retry_in is not None:  # the retry waits in the outbox until it is due
            outbox.send_on_commit(outbox.DELIVER_WEBHOOK, [(delivery.pk,)], available_at=delivery.next_attempt_at)
    return delivery


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
