"""The operator's email digest: integrations that started failing, became INVALID or recovered.

Opt-in per member and environment (Your preferences): immediately (each run of the task sends
what changed since the last email) or daily (at most one email a day). The source is the audit
trail — `integration.auth_failing` (a streak started) and `integration.state_changed` into or out
of INVALID — so the digest says exactly what the integration pages say.

Once per change: `Membership.digest_sent_until` is the watermark. A run locks the due memberships
(SKIP LOCKED: two workers split them, never share one), sends, and moves the watermark in the same
transaction; a send that fails rolls the watermark back and the next run tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from .models import AuditEvent, DigestFrequency, Integration, IntegrationState, Membership
from .pages import integration_url

log = logging.getLogger(__name__)

DAILY = timedelta(hours=24)
CHANGES_SHOWN = 100
AUTH_FAILING = "integration.auth_failing"
STATE_CHANGED = "integration.state_changed"


@dataclass(frozen=True)
class Change:
    at: datetime
    integration_id: str
    organization: str
    tool: str
    kind: str  # "failing", "invalid", "recovered"
    url: str

    @property
    def label(self) -> str:
        return {
            "failing": "authentication started failing",
            "invalid": "syncs paused (Invalid)",
            "recovered": "recovered (Active again)",
        }[self.kind]


def _kind(event: AuditEvent) -> str | None:
    if event.action == AUTH_FAILING:
        return "failing"
    to, was = event.details.get("to"), event.details.get("from")
    if to == IntegrationState.INVALID:
        return "invalid"
    if was == IntegrationState.INVALID and to == IntegrationState.ACTIVE:
        return "recovered"
    return None


def changes(environment_id: int, after: datetime, until: datetime) -> list[Change]:
    """What happened to the environment's integrations in (after, until], oldest first."""
    events = list(
        AuditEvent.objects.filter(
            Q(action=AUTH_FAILING) | Q(action=STATE_CHANGED),
            environment_id=environment_id,
            created_at__gt=after,
            created_at__lte=until,
        ).order_by("created_at", "pk")[: CHANGES_SHOWN * 3]
    )
    integrations = {
        i.pk: i
        for i in Integration.objects.filter(pk__in={e.integration_id for e in events}).only(
            "id", "environment_id", "tool", "end_user_organization_name"
        )
    }
    found = []
    for event in events:
        kind = _kind(event)
        integration = integrations.get(event.integration_id)
        if kind is None or integration is None:
            continue
        found.append(
            Change(
                event.created_at,
                integration.pk,
                integration.end_user_organization_name,
                integration.tool_label,
                kind,
                integration_url(integration),
            )
        )
    return found[:CHANGES_SHOWN]


def due(now: datetime):
    """Memberships whose digest may go out now."""
    immediate = Q(digest=DigestFrequency.IMMEDIATE)
    daily = Q(digest=DigestFrequency.DAILY) & (
        Q(digest_sent_until__isnull=True) | Q(digest_sent_until__lte=now - DAILY)
    )
    return Membership.objects.filter(immediate | daily, user__is_active=True)


def _email(membership: Membership, found: list[Change]) -> EmailMultiAlternatives:
    environment = membership.environment
    ctx = {"environment": environment, "changes": found, "membership": membership, "base_url": settings.BASE_URL}
    subject = f"Relink · {environment.name}: {len(found)} integration change{'s' if len(found) != 1 else ''}"
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("integrations/email/digest.txt", ctx),
        to=[membership.user.email],
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(render_to_string("integrations/email/digest.html", ctx), "text/html")
    return message


@shared_task(name="integrations.digest.send_digests")
def send_digests(now: datetime | None = None) -> int:
    """Beat, every few minutes: each due member's digest, once. Returns how many emails went out."""
    now = now or timezone.now()
    sent = 0
    ids = list(due(now).values_list("pk", flat=True)[:1000])
    for membership_id in ids:
        with transaction.atomic():
            membership = (
                due(now)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("environment", "user")
                .filter(pk=membership_id)
                .first()
            )
            if membership is None:  # another worker has it, or it is no longer due
                continue
            after = membership.digest_sent_until or membership.created_at
            found = changes(membership.environment_id, after, now)
            if found:
                try:
                    _email(membership, found).send()
                except Exception as exc:  # the watermark stays: the next run sends these again
                    log.warning("digest to %s not sent: %s", membership.user.email, exc)
                    continue
                sent += 1
            Membership.objects.filter(pk=membership.pk).update(digest_sent_until=now)
    return sent
