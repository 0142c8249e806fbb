"""Reconnect requests: Relink asks the end customer to reconnect, by email, before syncs pause and
until the integration is healthy again.

The schedule, for one failure streak (an integration's `auth_failing_since`), with the
environment's policy (Settings):
- "failing": `notify_first_after` (default 24 h) after authentication started failing, while the
  integration is still ACTIVE: "syncs will pause on <date>" (the start + the failure window);
- "invalid": once the integration is INVALID (syncs paused);
- "reminder-N": N days after it became INVALID, for each N of `notify_reminder_days`
  (default 1, 3, 7, 14).
Nothing is sent while the environment has reconnect requests off, the integration has them off,
is disabled, has no customer email, or is healthy again (the streak ended): the moment the
customer reconnects the schedule stops.

Exactly once per step: each step is a `ReconnectRequest` row, unique per (integration, streak,
step). The tick computes the latest step due and inserts its row; whoever inserts it sends it, so
two workers, overlapping ticks or a restarted beat never send a step twice. A tick that comes late
(beat down for days) sends only the latest step due, never a burst of the ones missed. A send
that fails is retried by later ticks (the row stays unsent, `attempts` counts), up to MAX_ATTEMPTS.

The magic link: one per streak, reused by every email of the streak so the customer never holds
two. Its token is derived (HMAC with SECRET_KEY) from the integration, the streak and a counter,
so a later email can carry the same link although only the token's hash is stored; a link that
was completed, revoked or expired (or a rotated SECRET_KEY) moves the counter on to a new link.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formataddr, parseaddr

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac

from integrations import audit
from integrations.lib.tokens import hash_secret
from integrations.models import Environment, Integration, IntegrationState

from .links import CreatedLink, create_relink_link
from .models import LIVE_STATUSES, ConnectionLink, LinkType, ReconnectRequest, ReconnectStep

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
NOT_NEEDED = "not sent: no longer needed"
LINKS_PER_STREAK = 20  # derived tokens tried before giving up (each completed/revoked link uses one)
TOKEN_SALT = "relink.connect_flow.reconnect_request"


@dataclass(frozen=True)
class Step:
    key: str  # "failing", "invalid", "reminder-3"
    kind: str  # ReconnectStep
    due_at: datetime


def schedule(integration: Integration, environment: Environment) -> list[Step]:
    """Every step of the integration's current failure streak, in order, with when it is due."""
    started = integration.auth_failing_since
    if started is None:
        return []
    steps = []
    first = started + environment.notify_first_after
    if integration.invalid_since is None or first < integration.invalid_since:
        steps.append(Step("failing", ReconnectStep.FAILING, first))
    if integration.invalid_since is not None:
        steps.append(Step("invalid", ReconnectStep.INVALID, integration.invalid_since))
        for days in sorted({int(d) for d in environment.notify_reminder_days or [] if int(d) > 0}):
            steps.append(
                Step(f"reminder-{days}", ReconnectStep.REMINDER, integration.invalid_since + timedelta(days=days))
            )
    return steps


def step_due(integration: Integration, environment: Environment, now: datetime) -> Step | None:
    """The latest step due now, if the integration may be asked at all."""
    if not wanted(integration, environment):
        return None
    due = [step for step in schedule(integration, environment) if step.due_at <= now]
    return due[-1] if due else None


def wanted(integration: Integration, environment: Environment) -> bool:
    return bool(
        environment.notify_customers
        and not integration.reconnect_requests_off
        and integration.enabled
        and integration.end_user_email
        and integration.auth_failing_since is not None
    )


def customer_language(integration: Integration, environment: Environment) -> str:
    """The language the customer last completed a link in, else the environment's default."""
    last = (
        ConnectionLink.objects.filter(integration=integration, completed_at__isnull=False)
        .order_by("-completed_at")
        .values_list("language", flat=True)
        .first()
    )
    return last or environment.notify_language or "en"


def pauses_at(integration: Integration, environment: Environment) -> datetime | None:
    if integration.auth_failing_since is None:
        return None
    return integration.invalid_since or integration.auth_failing_since + environment.auth_failure_window


# --- The streak's one magic link ----------------------------------------------------------------


def _derived_token(integration: Integration, counter: int) -> str:
    streak = integration.auth_failing_since.isoformat() if integration.auth_failing_since else ""
    value = f"{integration.pk}:{streak}:{counter}"
    return salted_hmac(TOKEN_SALT, value, algorithm="sha256").hexdigest()


def streak_link(integration: Integration, language: str) -> CreatedLink:
    """The streak's magic link: the same one while it can still be used, else a new one."""
    now = timezone.now()
    for counter in range(LINKS_PER_STREAK):
        token = _derived_token(integration, counter)
        link = ConnectionLink.objects.filter(token_hash=hash_secret(token)).first()
        if link is None:
            return create_relink_link(integration, link_type=LinkType.MAGIC_LINK, language=language, token=token)
        if link.status_at(now) in LIVE_STATUSES:
            return CreatedLink(link, token)
    raise RuntimeError(f"{integration.pk}: no unused reconnect-request link left for this streak")


# --- Sending -------------------------------------------------------------------------------------


def _claim(integration: Integration, step: Step, language: str) -> ReconnectRequest | None:
    """Insert the step's row; None if another worker (or an earlier tick) already did."""
    assert integration.auth_failing_since is not None
    try:
        with transaction.atomic():
            return ReconnectRequest.objects.create(
                integration=integration,
                streak_started_at=integration.auth_failing_since,
                step_key=step.key,
                step=step.kind,
                recipient=integration.end_user_email,
                language=language,
            )
    except IntegrityError:
        return None


def send(request_id: int) -> bool:
    """Send (or resend after a failure) one reconnect request; True if it went out now.

    The row is locked (SKIP LOCKED) and re-read: a request another worker is sending, or has sent,
    is left alone, so a step goes out once however the claim and the retries interleave. The
    integration is re-checked too: a customer who reconnected meanwhile gets nothing."""
    with transaction.atomic():
        request = (
            ReconnectRequest.objects.select_for_update(skip_locked=True).filter(pk=request_id, sent_at=None).first()
        )
        if request is None:
            return False
        integration = Integration.objects.select_related("environment").get(pk=request.integration_id)
        environment = integration.environment
        if not wanted(integration, environment) or integration.auth_failing_since != request.streak_started_at:
            request.error = NOT_NEEDED
            request.save(update_fields=["error"])
            return False
        created = streak_link(integration, request.language)
        request.link = created.link
        request.attempts += 1
        try:
            _email(integration, environment, request, created).send()
        except Exception as exc:  # SMTP refused, timed out, unreachable: retried by later ticks
            log.warning("reconnect request %s to %s not sent: %s", request.pk, request.recipient, exc)
            request.error = str(exc)[:500] or exc.__class__.__name__
            request.save(update_fields=["link", "attempts", "error"])
            return False
        request.sent_at, request.error = timezone.now(), ""
        request.save(update_fields=["link", "attempts", "error", "sent_at"])
        audit.record(
            environment.pk,
            "reconnect_request.sent",
            audit.Actor(label="system"),
            integration_id=integration.pk,
            step=request.step_key,
            recipient=request.recipient,
            language=request.language,
            link_id=created.link.pk,
        )
    return True


def _email(
    integration: Integration, environment: Environment, request: ReconnectRequest, created: CreatedLink
) -> EmailMultiAlternatives:
    brand = environment.notify_sender_name or environment.name
    ctx = {
        "integration": integration,
        "environment": environment,
        "brand": brand,
        "step": request.step,
        "reminder": request.step == ReconnectStep.REMINDER,
        "language": request.language,
        # Dates in UTC, as the email says ("… UTC"): the customer's zone is unknown.
        "failing_since": _utc(integration.auth_failing_since),
        "pauses_at": _utc(pauses_at(integration, environment)),
        "paused": integration.state == IntegrationState.INVALID,
        "url": created.url,
        "expires_at": _utc(created.link.expires_at),
    }
    with translation.override(request.language):
        subject = render_to_string("connect_flow/email/reconnect_subject.txt", ctx).strip()
        text = render_to_string("connect_flow/email/reconnect.txt", ctx)
        html = render_to_string("connect_flow/email/reconnect.html", ctx)
    sender_address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=text,
        from_email=formataddr((brand, sender_address)),
        to=[request.recipient],
        reply_to=[environment.notify_reply_to] if environment.notify_reply_to else None,
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(html, "text/html")
    return message


def _utc(moment: datetime | None) -> datetime | None:
    return timezone.localtime(moment, UTC) if moment else None


# --- The periodic task ---------------------------------------------------------------------------


def candidates():
    """Integrations that may be asked: failing, enabled, with an email, in an environment that
    asks. Indexed by the failing streak (few rows), never a scan of the fleet."""
    return (
        Integration.objects.filter(
            auth_failing_since__isnull=False,
            enabled=True,
            reconnect_requests_off=False,
            environment__notify_customers=True,
        )
        .exclude(end_user_email="")
        .select_related("environment")
        .defer("credentials_encrypted")
    )


@shared_task(name="connect_flow.notifications.send_reconnect_requests")
def send_reconnect_requests(now: datetime | None = None) -> int:
    """Beat, every few minutes: send each integration's latest step due, once; retry sends that
    failed (or whose worker died between the claim and the send). Returns how many went out."""
    now = now or timezone.now()
    sent = 0
    tried = []
    for integration in candidates().iterator(chunk_size=500):
        step = step_due(integration, integration.environment, now)
        if step is None:
            continue
        request = _claim(integration, step, customer_language(integration, integration.environment))
        if request is not None:
            tried.append(request.pk)
            sent += send(request.pk)
    unsent = (
        ReconnectRequest.objects.filter(sent_at=None, attempts__lt=MAX_ATTEMPTS)
        .exclude(error=NOT_NEEDED)
        .exclude(pk__in=tried)  # not again in the same tick
        .order_by("created_at")
        .values_list("pk", flat=True)[:200]
    )
    for request_id in list(unsent):
        sent += send(request_id)
    return sent


def set_requests_off(integration: Integration, off: bool, actor: audit.Actor) -> bool:
    """An operator turns reconnect requests off (or on again) for one integration; False if it
    already was. Audited as `reconnect_requests.turned_off` / `.turned_on`."""
    changed = (
        Integration.objects.filter(pk=integration.pk)
        .exclude(reconnect_requests_off=off)
        .update(reconnect_requests_off=off)
    )
    if changed:
        integration.reconnect_requests_off = off
        action = "reconnect_requests.turned_off" if off else "reconnect_requests.turned_on"
        audit.record(integration.environment_id, action, actor, integration_id=integration.pk)
    return bool(changed)


def requests_for(integration: Integration, limit: int = 20) -> list[ReconnectRequest]:
    """The integration's reconnect requests, newest first (its page shows them)."""
    return list(ReconnectRequest.objects.filter(integration=integration).select_related("link")[:limit])
