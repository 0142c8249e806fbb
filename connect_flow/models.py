"""Connection links: a connect link creates an integration, a reconnect (relink) link repairs one.

Only the SHA-256 of a link's token is stored; the status is derived from the timestamps.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.lib.tokens import random_id
from integrations.models import ApiKey, Environment, Integration, ScopeConfig
from integrations.providers import Category

LINK_VALIDITY = {"EMBEDDED": timedelta(hours=1), "MAGIC_LINK": timedelta(days=365)}
# The activation token a completed embedded link hands to the framing page: single use, short-lived.
ACTIVATION_TOKEN_VALIDITY = timedelta(minutes=10)


def _public_id() -> str:
    return random_id(24)


class LinkKind(models.TextChoices):
    CONNECT = "CONNECT", "Connect"
    RECONNECT = "RECONNECT", "Reconnect"


class LinkType(models.TextChoices):
    EMBEDDED = "EMBEDDED", "Embedded (1 hour)"
    MAGIC_LINK = "MAGIC_LINK", "Magic link (1 year)"


class LinkStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    OPENED = "OPENED", "Opened"
    COMPLETED = "COMPLETED", "Completed"
    EXPIRED = "EXPIRED", "Expired"
    REVOKED = "REVOKED", "Revoked"


# A link in one of these can still be used (and revoked).
LIVE_STATUSES = (LinkStatus.PENDING, LinkStatus.OPENED)


class ConnectionLinkQuerySet(models.QuerySet):
    def usable(self, now=None) -> ConnectionLinkQuerySet:
        """Links that can still be completed (pending or opened): the query form of LIVE_STATUSES."""
        return self.filter(completed_at=None, revoked_at=None, expires_at__gt=now or timezone.now())


class ConnectionLink(models.Model):
    id = models.CharField(primary_key=True, max_length=24, default=_public_id, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="links")
    kind = models.CharField(max_length=10, choices=LinkKind.choices)
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, null=True, blank=True, related_name="links")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    link_type = models.CharField(max_length=12, choices=LinkType.choices, default=LinkType.EMBEDDED)
    language = models.CharField(max_length=2, choices=settings.LANGUAGES, default="en")
    scope_config = models.ForeignKey(ScopeConfig, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    # Connect links only: who the new integration is for.
    end_user_email = models.EmailField(blank=True)
    end_user_organization_name = models.CharField(max_length=200, blank=True)
    end_user_origin_id = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=10, choices=[(c.value, c.value) for c in Category], blank=True)
    tool = models.CharField(max_length=40, blank=True)

    created_by_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_by_api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    opened_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Handed to the embedding page on completion (postMessage), exchanged by the customer's
    # backend through /v1/connect/integration-by-token; only its SHA-256 is stored.
    activation_token_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    # Like an OAuth2 code: exchangeable once, within ACTIVATION_TOKEN_VALIDITY of being issued.
    activation_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    activation_token_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the periodic bookkeeping once the link's expiry has been written to the audit trail.
    expiry_recorded_at = models.DateTimeField(null=True, blank=True)
    # A reconnect link on which an operator allowed the credentials to reach another upstream
    # account than the one connected before (e.g. the customer moved to a new tenant).
    allow_account_change = models.BooleanField(default=False)

    objects = ConnectionLinkQuerySet.as_manager()

    class Meta:
        verbose_name = "connection link"
        ordering = ["-created_at"]
        indexes = [
            # Integration page, links list: WHERE integration=? ORDER BY created_at DESC.
            models.Index(fields=["integration", "-created_at"], name="link_integration_idx"),
            # Expiry bookkeeping: WHERE expires_at <= now AND not completed/revoked/recorded.
            models.Index(
                fields=["expires_at"],
                name="link_expiry_pending_idx",
                condition=models.Q(completed_at__isnull=True, revoked_at__isnull=True, expiry_recorded_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} link {self.id}"

    def status_at(self, now) -> str:
        if self.completed_at:
            return LinkStatus.COMPLETED
        if self.revoked_at:
            return LinkStatus.REVOKED
        if now >= self.expires_at:
            return LinkStatus.EXPIRED
        if self.opened_at:
            return LinkStatus.OPENED
        return LinkStatus.PENDING

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())


class ReconnectStep(models.TextChoices):
    FAILING = "failing", "Authentication failing"
    INVALID = "invalid", "Syncs paused"
    REMINDER = "reminder", "Reminder"


class ReconnectRequest(models.Model):
    """One email asking the end customer to reconnect (connect_flow.notifications).

    The unique constraint is the watermark: a step of a failure streak is inserted once, whoever
    inserts it sends it, so several workers, overlapping beats or a restarted beat never send one
    step twice. `step_key` is "failing", "invalid" or "reminder-<days>".
    """

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="reconnect_requests")
    streak_started_at = models.DateTimeField()  # the integration's auth_failing_since for this streak
    step_key = models.CharField(max_length=20)
    step = models.CharField(max_length=10, choices=ReconnectStep.choices)
    link = models.ForeignKey(ConnectionLink, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    recipient = models.EmailField()
    language = models.CharField(max_length=2, choices=settings.LANGUAGES, default="en")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "streak_started_at", "step_key"], name="reconnect_request_once_per_step"
            )
        ]
        indexes = [
            # Integration page: WHERE integration=? ORDER BY created_at DESC.
            models.Index(fields=["integration", "-created_at"], name="reconnect_request_recent_idx"),
            # Retry sweep: WHERE sent_at IS NULL.
            models.Index(fields=["created_at"], name="reconnect_request_unsent_idx", condition=models.Q(sent_at=None)),
        ]

    def __str__(self) -> str:
        return f"{self.step_key} → {self.recipient}"
