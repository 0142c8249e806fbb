"""The health rule: the one place that turns an authentication check into state.

DESIGN "Integration state": a streak starts at the first AUTH_FAILED after the last OK. When a
check is AUTH_FAILED and the streak started the environment's auth-failure window (72 hours unless
its owner chose another) or more before it, the integration becomes INVALID. An OK ends the streak
and makes an INVALID integration ACTIVE again. UNAVAILABLE neither starts, extends nor ends a
streak — unless the environment counts transient errors, and then it is a failure like AUTH_FAILED.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from . import audit as audit_trail
from . import outbox, webhooks
from .audit import Actor
from .credentials import usable_credentials
from .models import AuditEvent, AuthCheck, Environment, Integration, IntegrationState, WebhookEvent
from .providers import Outcome
from .providers.base import AuthResult, ProviderError

log = logging.getLogger(__name__)

RECHECK_INVALID_AFTER = timedelta(hours=23)  # an INVALID integration is re-checked once a day


@dataclass(frozen=True)
class HealthPolicy:
    """An environment's parameters of the health rule (`Environment.auth_failure_window` and
    `.transient_errors_count`, set by its owner within integrations.environments' bounds).
    The defaults are the rule as DESIGN states it."""

    window: timedelta = timedelta(hours=72)  # failing this long makes an integration INVALID
    transient_errors_count: bool = False  # UNAVAILABLE counts as AUTH_FAILED

    @classmethod
    def of(cls, environment: Environment) -> HealthPolicy:
        return cls(environment.auth_failure_window, environment.transient_errors_count)

    @property
    def window_hours(self) -> int:
        return int(self.window.total_seconds() // 3600)

    @property
    def window_days(self) -> int | None:
        """The window in whole days; None when it is not a whole number of days (quote hours then)."""
        return self.window.days if self.window % timedelta(days=1) == timedelta(0) else None

    def pauses_at(self, failing_since: datetime) -> datetime:
        """When a streak that started at `failing_since` makes the integration INVALID (at the
        first failed check from then on)."""
        return failing_since + self.window


DEFAULT_POLICY = HealthPolicy()


def apply_check_to_streak(
    integration: Integration, outcome: Outcome, at: datetime, policy: HealthPolicy = DEFAULT_POLICY
) -> None:
    """Update the streak fields (`auth_failing_since`, `invalid_since`) in memory for one check,
    under the environment's `policy` (`HealthPolicy.of(environment)`).

    Works on anything with those two attributes (the demo seeder replays history through it).
    """
    if outcome is Outcome.UNAVAILABLE and policy.transient_errors_count:
        outcome = Outcome.AUTH_FAILED
    if outcome is Outcome.OK:
        integration.auth_failing_since = None
        integration.invalid_since = None
    elif outcome is Outcome.AUTH_FAILED:
        if integration.auth_failing_since is None:
            integration.auth_failing_since = at
        if integration.invalid_since is None and at >= policy.pauses_at(integration.auth_failing_since):
            integration.invalid_since = at
    # UNAVAILABLE (not counted): the provider's problem; the streak is left exactly as it was.


def record_auth_check(
    integration_id: str,
    result: AuthResult,
    *,
    duration_ms: int = 0,
    checked_at: datetime | None = None,
) -> None:
    """Record one authentication check and apply the health rule, atomically.

    Steps, in one transaction with the integration row locked (so concurrent checks serialise):
    1. insert the AuthCheck row;
    2. store refreshed credentials returned by the provider, if any, and the upstream account the
       check named if none was recorded yet (integrations connected before accounts were);
    3. apply the streak rule under the environment's policy and derive the state;
    4. on a real state change: audit event and `integration-state-changed` outbox rows.
    """
    at = checked_at or timezone.now()
    with transaction.atomic():
        integration = (
            Integration.objects.select_for_update(of=("self",)).select_related("environment").get(pk=integration_id)
        )
        old_state, was_failing = integration.state, integration.auth_failing_since is not None
        AuthCheck.objects.create(
            integration=integration,
            checked_at=at,
            outcome=result.outcome.value,
            http_status=result.http_status,
            error_code=result.error_code[:100],
            error_message=result.message[:500],
            duration_ms=duration_ms,
        )
        fields = [
            "last_auth_check_at",
            "last_auth_outcome",
            "last_auth_error",
            "auth_failing_since",
            "invalid_since",
            "state",
            "updated_at",
        ]
        if result.updated_credentials is not None:
            integration.set_credentials(result.updated_credentials)
            fields.append("credentials_encrypted")
        if result.outcome is Outcome.OK and result.account is not None and not integration.upstream_account:
            # Connected before accounts were recorded: the first OK check that names one records it.
            integration.upstream_account = result.account.id
            integration.upstream_account_label = result.account.label
            fields += ["upstream_account", "upstream_account_label"]
        integration.last_auth_check_at = at
        integration.last_auth_outcome = result.outcome.value
        integration.last_auth_error = describe_error(result)
        apply_check_to_streak(integration, result.outcome, at, HealthPolicy.of(integration.environment))
        integration.state = integration.derived_state()
        if old_state == IntegrationState.INVALID and integration.state == IntegrationState.ACTIVE:
            integration.next_sync_at = at  # healed: sync at the next tick
            fields.append("next_sync_at")
        integration.save(update_fields=fields)
        if not was_failing and integration.auth_failing_since is not None:
            started_failing(integration)
        if integration.state != old_state:
            state_changed(integration, old_state, actor_label="system", reason=f"auth check {result.outcome.value}")


def started_failing(integration: Integration) -> None:
    """A failure streak began: the audit event the operators' digest reads and Relink's own
    `integration-auth-failing` webhook, once per streak (inside the check's transaction)."""
    assert integration.auth_failing_since is not None
    pauses_at = integration.auth_failing_since + HealthPolicy.of(integration.environment).window
    audit(
        integration,
        "integration.auth_failing",
        actor_label="system",
        failing_since=integration.auth_failing_since.isoformat(),
        pauses_at=pauses_at.isoformat(),
        error=integration.last_auth_error,
    )
    webhooks.emit_integration_auth_failing(integration, pauses_at)


def describe_error(result: AuthResult) -> str:
    if result.outcome is Outcome.OK:
        return ""
    parts = [str(result.http_status) if result.http_status else "", result.message or result.error_code]
    return " ".join(p for p in parts if p)[:500]


def audit(
    integration: Integration,
    action: str,
    *,
    actor_user=None,
    actor_api_key=None,
    actor_label: str = "system",
    **details,
) -> AuditEvent:
    """One line of the integration's audit trail (shown on its dashboard page), through the
    trail's one writer."""
    actor = Actor.of(actor_user, actor_api_key, otherwise=actor_label)
    return audit_trail.record(integration.environment_id, action, actor, integration_id=integration.pk, **details)


def state_changed(
    integration: Integration,
    old_state: str,
    *,
    actor_label: str = "",
    actor_user=None,
    actor_api_key=None,
    reason: str = "",
) -> None:
    """Write the trail of one real state change: an audit event and the webhook outbox rows.

    Call inside the transaction that saved the new state, exactly once per change.
    """
    audit(
        integration,
        "integration.state_changed",
        actor_user=actor_user,
        actor_api_key=actor_api_key,
        actor_label=actor_label,
        **{"from": old_state, "to": integration.state, "reason": reason},
    )
    webhooks.emit_integration_state_changed(integration)


def set_enabled(integration_id: str, enabled: bool, *, actor_user=None, actor_api_key=None) -> Integration:
    """Enable or disable an integration (operator, admin or API). Credentials are kept.

    Disabling makes it INACTIVE; enabling makes it ACTIVE, or INVALID if its authentication was
    still failing when it was disabled. A no-op when nothing changes.
    """
    with transaction.atomic():
        integration = Integration.objects.select_for_update().get(pk=integration_id)
        if integration.enabled == enabled:
            return integration
        old_state = integration.state
        integration.enabled = enabled
        integration.state = integration.derived_state()
        integration.save(update_fields=["enabled", "state", "updated_at"])
        audit(
            integration,
            "integration.enabled" if enabled else "integration.disabled",
            actor_user=actor_user,
            actor_api_key=actor_api_key,
        )
        if integration.state != old_state:
            state_changed(
                integration,
                old_state,
                actor_user=actor_user,
                actor_api_key=actor_api_key,
                reason="enabled" if enabled else "disabled",
            )
    return integration


def delete_integration(integration: Integration, *, actor_user=None, actor_api_key=None) -> bool:
    """Delete an integration with its history; audit event and `integration-deleted` webhook.

    Returns False when it was already gone (deleted concurrently). Synced records go with it.
    """
    data = webhooks.integration_ref_data(integration, deleted_at=timezone.now())  # before the row is gone
    with transaction.atomic():
        deleted, _ = Integration.objects.filter(pk=integration.pk).delete()
        if not deleted:
            return False
        audit(
            integration,
            "integration.deleted",
            actor_user=actor_user,
            actor_api_key=actor_api_key,
            tool=integration.tool,
            organization_name=integration.end_user_organization_name,
        )
        webhooks.emit(integration.environment_id, WebhookEvent.INTEGRATION_DELETED, data)
    return True


# --- Checking -------------------------------------------------------------------------------------


def check_and_record(integration: Integration, credentials: dict | None = None) -> AuthResult:
    """Check the stored credentials (decrypted by the caller, or here) against the provider,
    timed, through the health rule.

    Credentials the tool wants refreshed first (OAuth) are refreshed under the integration's row
    lock (integrations.credentials), as a passthrough request does, so the two never spend one
    rotating refresh token twice; the result then carries them in `updated_credentials` for the
    caller's own requests. A refused refresh is left to `check_auth`, which meets it again and
    reports it as its outcome."""
    started = time.monotonic()
    provider = integration.provider
    stored = integration.get_credentials() if credentials is None else credentials
    usable = stored
    if provider.needs_refresh(stored):
        try:
            usable = usable_credentials(integration, provider)
        except ProviderError:
            pass
    result = provider.check_auth(usable)
    if result.updated_credentials is None and usable != stored:
        result.updated_credentials = usable
    record_auth_check(integration.pk, result, duration_ms=int((time.monotonic() - started) * 1000))
    return result


@shared_task(name="integrations.health.check_integration")
def check_integration(integration_id: str) -> None:
    """An auth check outside a sync (the daily re-check of INVALID integrations, "check now")."""
    check_and_record(Integration.objects.get(pk=integration_id))


def request_auth_check(integration: Integration, *, actor_user=None) -> None:
    """An operator's "check authentication now": audited, run by a worker after commit."""
    with transaction.atomic():
        audit(integration, "auth_check.requested", actor_user=actor_user)
        outbox.send_on_commit(outbox.CHECK_AUTH, [(integration.pk,)])


def invalid_due_for_recheck(now: datetime | None = None, batch_size: int = 1000) -> list[str]:
    now = now or timezone.now()
    return list(
        Integration.objects.filter(state=IntegrationState.INVALID, last_auth_check_at__lte=now - RECHECK_INVALID_AFTER)
        .order_by("last_auth_check_at")
        .values_list("pk", flat=True)[:batch_size]
    )


@shared_task(name="integrations.health.recheck_invalid_integrations")
def recheck_invalid_integrations() -> int:
    """Beat, hourly: re-check INVALID integrations (each once a day) so one whose customer fixed
    the credentials heals by itself."""
    with transaction.atomic():
        ids = invalid_due_for_recheck()
        outbox.send_on_commit(outbox.CHECK_AUTH, [(pk,) for pk in ids])
    log.info("queued %d re-checks of INVALID integrations", len(ids))
    return len(ids)
