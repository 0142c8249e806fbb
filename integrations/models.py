"""The domain: environments and their operators, scope configs, integrations and their history,
webhooks, API keys, request logs and the audit trail.

Secrets (integration credentials, webhook signing secrets) are stored encrypted (lib.crypto) and
only reachable through explicit methods, so nothing renders them by accident.
"""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .lib import crypto
from .lib.tokens import hash_secret, new_secret, random_id
from .providers import REGISTRY, Category, Outcome, get_provider, tool_choices


def _public_id() -> str:
    return random_id(24)


# --- Operators ---------------------------------------------------------------------------------


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """An operator (or admin). Signs in with email and password."""

    email = models.EmailField("email address", unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField("admin access", default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # IANA zone the dashboard shows times in; blank: settings.TIME_ZONE.
    time_zone = models.CharField(max_length=64, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = "operator"

    def __str__(self) -> str:
        return self.email


# --- Environments ------------------------------------------------------------------------------


def default_reminder_days() -> list[int]:
    return [1, 3, 7, 14]


class Environment(models.Model):
    """The tenant boundary: everything below belongs to exactly one environment."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    sync_interval = models.DurationField(default=timedelta(hours=3))
    # Origins allowed to frame embedded connect pages (CSP frame-ancestors).
    allowed_origins = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    # Health policy (integrations.health): how long authentication may fail before syncs pause,
    # and whether transient errors (timeouts, 5xx, 429) count as failures too.
    auth_failure_window = models.DurationField(default=timedelta(hours=72))
    transient_errors_count = models.BooleanField(default=False)

    # Reconnect requests to end customers (connect_flow.notifications): off unless an owner turns
    # them on; the first email after `notify_first_after` of failing, reminders on these days
    # after the integration became INVALID.
    notify_customers = models.BooleanField(default=False)
    notify_sender_name = models.CharField(max_length=100, blank=True)
    notify_reply_to = models.EmailField(blank=True)
    notify_language = models.CharField(max_length=2, choices=settings.LANGUAGES, default="en")
    notify_first_after = models.DurationField(default=timedelta(hours=24))
    notify_reminder_days = models.JSONField(default=default_reminder_days, blank=True)

    # Silent failures (integrations.syncs): a successful sync whose record count for a model drops
    # by more than this share, from at least this many records, finishes with a VOLUME_DROP warning.
    volume_drop_percent = models.PositiveSmallIntegerField(default=50)
    volume_drop_min_records = models.PositiveIntegerField(default=20)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="environments")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    OWNER = "owner", "Owner"


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.OWNER: 3}


class DigestFrequency(models.TextChoices):
    OFF = "off", "Off"
    IMMEDIATE = "immediate", "Immediately"
    DAILY = "daily", "Daily"


class Membership(models.Model):
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=timezone.now)
    # The operator's email digest of integrations that started failing, became INVALID or
    # recovered (connect_flow.notifications): off, one email per change, or one a day.
    digest = models.CharField(max_length=10, choices=DigestFrequency.choices, default=DigestFrequency.OFF)
    # Changes up to this moment have been sent (the digest's watermark).
    digest_sent_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["environment", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} in {self.environment}"

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


class Invitation(models.Model):
    """An invitation to join an environment with a role, sent by email. The link's token is stored
    hashed; it can be used once, until it expires or is revoked."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["environment", "-created_at"], name="invitation_env_created")]

    def __str__(self) -> str:
        return f"{self.email} → {self.environment}"

    def is_pending(self, now=None) -> bool:
        now = now or timezone.now()
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now


# --- Scope configs -----------------------------------------------------------------------------


class Availability(models.TextChoices):
    ENABLED = "ENABLED", "Enabled"
    OPTIONAL = "OPTIONAL", "Optional"
    DISABLED = "DISABLED", "Disabled"


class ScopeConfig(models.Model):
    """Which models and fields an environment reads, per category.

    `spec` is parsed through `integrations.scopes.ScopeSpec`:
    {"hris_employees": {"availability": "ENABLED", "fields": {"salary": "OPTIONAL"}}}
    """

    id = models.CharField(primary_key=True, max_length=24, default=_public_id, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="scope_configs")
    name = models.CharField(max_length=100)
    category = models.CharField(max_length=10, choices=[(c.value, c.value) for c in Category])
    spec = models.JSONField(default=dict, blank=True)
    # The environment's default for its category: used by integrations that have none of their own.
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "scope config"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="scopeconfig_name_unique"),
            models.UniqueConstraint(
                fields=["environment", "category"],
                condition=Q(is_default=True),
                name="scopeconfig_one_default_per_category",
            ),
        ]

    def __str__(self) -> str:
        return self.name


# --- Integrations ------------------------------------------------------------------------------


class IntegrationState(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    INVALID = "INVALID", "Invalid"
    INACTIVE = "INACTIVE", "Inactive"


class SetupStatus(models.TextChoices):
    INCOMPLETE = "INCOMPLETE", "Incomplete"
    FINAL_SYNC_PENDING = "FINAL_SYNC_PENDING", "Final sync pending"
    COMPLETED = "COMPLETED", "Completed"


def new_integration_id(tool: str) -> str:
    return f"{tool}:{random_id(24)}"


def new_event_id() -> str:
    """A webhook event id (Standard Webhooks `webhook-id`), kept across retries and replays."""
    return "msg_" + random_id(24)


class Integration(models.Model):
    """One end customer's connection to one tool.

    `state` is derived from two separate facts and stored for filtering: `enabled` (operator or
    API switch) and `invalid_since` (paused after the auth-failure window of failed authentication).
    """

    id = models.CharField(primary_key=True, max_length=80, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="integrations")
    tool = models.CharField(max_length=40, choices=tool_choices)
    category = models.CharField(max_length=10, choices=[(c.value, c.value) for c in Category])
    end_user_organization_name = models.CharField("organization", max_length=200)
    end_user_email = models.EmailField("creator email", blank=True)
    end_user_origin_id = models.CharField("origin id", max_length=200, blank=True)

    state = models.CharField(max_length=10, choices=IntegrationState.choices, default=IntegrationState.ACTIVE)
    enabled = models.BooleanField(default=True)
    setup_status = models.CharField(max_length=20, choices=SetupStatus.choices, default=SetupStatus.COMPLETED)
    scope_config = models.ForeignKey(
        ScopeConfig, on_delete=models.PROTECT, null=True, blank=True, related_name="integrations"
    )
    # Customer's opt-outs from OPTIONAL fields: ["hris_employees.salary", ...].
    opted_out_fields = models.JSONField(default=list, blank=True)
    credentials_encrypted = models.TextField(editable=False, default="")

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    data_expired_at = models.DateTimeField(null=True, blank=True)

    # Scheduling.
    next_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)

    # Health: the last check on the row, the history in AuthCheck.
    last_auth_check_at = models.DateTimeField(null=True, blank=True)
    last_auth_outcome = models.CharField(max_length=12, blank=True, choices=[(o.value, o.value) for o in Outcome])
    last_auth_error = models.CharField(max_length=500, blank=True)
    auth_failing_since = models.DateTimeField(null=True, blank=True)  # start of the current streak
    invalid_since = models.DateTimeField(null=True, blank=True)  # paused by the auth-failure window rule
    # The upstream account the credentials reach (provider.account_of), recorded at the first
    # connection; a reconnect reaching another account is refused (connect_flow.links).
    # (Database defaults too: bulk loaders insert integrations with plain SQL.)
    upstream_account = models.CharField(max_length=200, blank=True, db_default="")
    upstream_account_label = models.CharField(max_length=200, blank=True, db_default="")
    # An operator turned reconnect requests off for this integration.
    reconnect_requests_off = models.BooleanField(db_default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Scheduler tick: WHERE state='ACTIVE' AND next_sync_at <= now ORDER BY next_sync_at.
            models.Index(fields=["next_sync_at"], name="integration_due_idx", condition=Q(state="ACTIVE")),
            # Daily re-check: WHERE state='INVALID' ORDER BY last_auth_check_at.
            models.Index(fields=["last_auth_check_at"], name="integration_invalid_idx", condition=Q(state="INVALID")),
            # Dashboard list: WHERE environment=? [AND state=?] ORDER BY created_at DESC.
            models.Index(fields=["environment", "state", "-created_at"], name="integration_env_state_idx"),
            models.Index(fields=["environment", "-created_at"], name="integration_env_created_idx"),
            # Dashboard search by origin id: WHERE environment=? AND end_user_origin_id=?.
            models.Index(fields=["environment", "end_user_origin_id"], name="integration_env_origin_idx"),
            # Dashboard search by organization / origin id prefix: a pg_trgm GIN index on
            # UPPER(...) created by migration 0002 (PostgreSQL only, so not declared here).
        ]

    def __str__(self) -> str:
        return f"{self.end_user_organization_name} ({self.tool})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.id:
            self.id = new_integration_id(self.tool)
        super().save(*args, **kwargs)

    @property
    def tool_label(self) -> str:
        """The tool's label from the registry (cheaper than get_tool_display's callable choices)."""
        provider = REGISTRY.get(self.tool)
        return provider.label if provider else self.tool

    @property
    def provider(self):
        return get_provider(self.tool)

    def derived_state(self) -> str:
        if not self.enabled:
            return IntegrationState.INACTIVE
        if self.invalid_since:
            return IntegrationState.INVALID
        return IntegrationState.ACTIVE

    # Credentials are never a plain attribute: read and write them explicitly.
    def get_credentials(self) -> dict[str, Any]:
        if not self.credentials_encrypted:
            return {}
        return crypto.decrypt_json(self.credentials_encrypted)

    def set_credentials(self, credentials: dict[str, Any]) -> None:
        self.credentials_encrypted = crypto.encrypt_json(credentials)


class AuthCheck(models.Model):
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="auth_checks")
    checked_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=12, choices=[(o.value, o.value) for o in Outcome])
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "auth check"
        ordering = ["-checked_at"]
        indexes = [
            # Integration page timeline: WHERE integration=? AND checked_at >= ? ORDER BY checked_at DESC.
            models.Index(fields=["integration", "-checked_at"], name="authcheck_history_idx"),
            # Overview chart: outcomes per day over 30 days, WHERE checked_at >= ?.
            models.Index(fields=["checked_at"], name="authcheck_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} at {self.checked_at:%Y-%m-%d %H:%M}"


class SyncStatus(models.TextChoices):
    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    PARTIALLY_FAILED = "PARTIALLY_FAILED", "Partially failed"
    FAILED = "FAILED", "Failed"
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED", "Authentication failed"
    CANCELLED = "CANCELLED", "Cancelled"


OPEN_SYNC_STATUSES = (SyncStatus.QUEUED, SyncStatus.RUNNING)


class SyncType(models.TextChoices):
    FULL = "FULL", "Full"
    DELTA = "DELTA", "Delta"


class Sync(models.Model):
    id = models.CharField(primary_key=True, max_length=24, default=_public_id, editable=False)
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="syncs")
    type = models.CharField(max_length=10, choices=SyncType.choices, default=SyncType.DELTA)
    scope_config = models.ForeignKey(ScopeConfig, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=24, choices=SyncStatus.choices, default=SyncStatus.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    models_total = models.PositiveSmallIntegerField(default=0)
    models_done = models.PositiveSmallIntegerField(default=0)
    records_per_model = models.JSONField(default=dict, blank=True)  # {"hris_employees": 42}
    warnings = models.JSONField(default=list, blank=True)  # ["permission ... not granted"]
    # The models whose records this sync created, updated or marked deleted, in the order it
    # changed them (["hris_employees"]): written as soon as a model's first change is, and kept
    # across attempts (a run that died had written real changes), for `data-changed` at its end.
    changed_models = models.JSONField(default=list, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # The lease of the run in progress: which attempt holds it (a claim increments it), which
    # process runs it ("host:pid") and when that run last proved it was alive. A RUNNING sync
    # whose heartbeat is older than SYNC_LEASE_SECONDS, or whose process is gone, lost its
    # worker and is run again (syncs.run_sync, syncs.reap_stuck_syncs).
    attempts = models.PositiveSmallIntegerField(default=0)
    run_by = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Sync history per integration: WHERE integration=? ORDER BY created_at DESC.
            models.Index(fields=["integration", "-created_at"], name="sync_history_idx"),
            # The reaper, every few seconds: RUNNING syncs by heartbeat, QUEUED ones by age —
            # small partial indexes, so the scan never touches the history.
            models.Index(fields=["heartbeat_at"], condition=Q(status="RUNNING"), name="sync_running_idx"),
            models.Index(fields=["created_at"], condition=Q(status="QUEUED"), name="sync_queued_idx"),
        ]
        constraints = [
            # At most one open (queued or running) sync per integration; force sync relies on it.
            models.UniqueConstraint(
                fields=["integration"],
                condition=Q(status__in=["QUEUED", "RUNNING"]),
                name="sync_one_open_per_integration",
            ),
        ]

    def __str__(self) -> str:
        return f"Sync {self.id} ({self.status})"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.ended_at:
            return self.ended_at - self.started_at
        return None


class SyncedRecord(models.Model):
    """A record read from the provider. Reconnecting never deletes these."""

    # No index of its own: `syncedrecord_unique` (integration, model, remote_id) serves every lookup
    # by integration. A second one let the planner, misled by stale statistics (a new integration
    # "has no rows"), probe a sync's records through it and filter the rest: quadratic first syncs.
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="records", db_index=False)
    model = models.CharField(max_length=60)
    remote_id = models.CharField(max_length=200)
    data = models.JSONField(default=dict)
    first_seen_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)  # when `data` last changed
    # Gone upstream: absent from a complete read of its model. Kept (never deleted), and cleared
    # if the record comes back.
    remote_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "synced record"
        constraints = [
            # Upsert key for a sync: ON CONFLICT (integration, model, remote_id).
            models.UniqueConstraint(fields=["integration", "model", "remote_id"], name="syncedrecord_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.model}/{self.remote_id}"


# --- Webhooks ----------------------------------------------------------------------------------


class WebhookEvent(models.TextChoices):
    INTEGRATION_CREATED = "integration-created"
    INTEGRATION_STATE_CHANGED = "integration-state-changed"
    INTEGRATION_DELETED = "integration-deleted"
    SYNC_FINISHED = "sync-finished"
    CONNECTION_FLOW_FAILED = "connection-flow-failed"
    # A sync created, updated or marked deleted records of these models (emitted at its end).
    DATA_CHANGED = "data-changed"
    # Relink's own (not in the reference API): authentication started failing; syncs pause at
    # `pauses_at` unless it recovers.
    INTEGRATION_AUTH_FAILING = "integration-auth-failing"


class WebhookEndpoint(models.Model):
    id = models.CharField(primary_key=True, max_length=24, default=_public_id, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    # Event types this endpoint receives; empty means all.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    secret_encrypted = models.TextField(editable=False, default="")
    # After a rotation the replaced secret keeps signing (a second signature) until this time.
    previous_secret_encrypted = models.TextField(editable=False, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "webhook endpoint"
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.url

    def get_secret(self) -> str:
        return crypto.decrypt_str(self.secret_encrypted)

    def set_new_secret(self) -> str:
        """Generate a `whsec_` secret, store it encrypted, and return it (to show once)."""
        import base64
        import secrets

        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.secret_encrypted = crypto.encrypt_str(secret)
        return secret

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    DELIVERED = "DELIVERED", "Delivered"
    FAILED = "FAILED", "Failed"


class WebhookDelivery(models.Model):
    """The outbox row for one event to one endpoint; `event_id` is kept across retries and replays."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40, default="", db_index=True)
    event_type = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at"]
        indexes = [
            # Retry sweep: WHERE status='PENDING' AND next_attempt_at <= now.
            models.Index(fields=["next_attempt_at"], name="delivery_due_idx", condition=Q(status="PENDING")),
            # Deliveries page: WHERE endpoint=? ORDER BY created_at DESC.
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.event_id:
            self.event_id = new_event_id()
        super().save(*args, **kwargs)

    @property
    def last_response(self) -> str:
        """The last attempt's outcome in words: "404 Not Found", or the connection error, or ""."""
        if self.last_response_status is None:
            return self.last_error
        try:
            return f"{self.last_response_status} {HTTPStatus(self.last_response_status).phrase}"
        except ValueError:  # a status outside the standard's list
            return f"HTTP {self.last_response_status}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.CharField(max_length=1000, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "webhook attempt"
        ordering = ["-attempted_at"]

    def __str__(self) -> str:
        return f"attempt at {self.attempted_at:%Y-%m-%d %H:%M:%S} → {self.response_status or self.error}"


# --- API keys, request logs, audit -------------------------------------------------------------

API_KEY_PREFIX = "rlk_"


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)

    def find(self, raw_key: str) -> ApiKey | None:
        return self.active().select_related("environment").filter(key_hash=hash_secret(raw_key)).first()


class ApiKey(models.Model):
    """A bearer key for the /v1 API, scoped to one environment. Only its SHA-256 is stored."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, editable=False)  # shown for recognition
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def create(cls, environment: Environment, name: str, created_by=None) -> tuple[ApiKey, str]:
        """Create a key and return it with the raw secret, which is never stored."""
        raw = new_secret(API_KEY_PREFIX)
        key = cls.objects.create(
            environment=environment,
            name=name,
            prefix=raw[: len(API_KEY_PREFIX) + 6],
            key_hash=hash_secret(raw),
            created_by=created_by,
        )
        return key, raw


class RequestLog(models.Model):
    """Every /v1 request and every connect-flow attempt, with secrets redacted."""

    class Source(models.TextChoices):
        API = "API", "API"
        CONNECT_FLOW = "CONNECT_FLOW", "Connect flow"

    id = models.CharField(primary_key=True, max_length=24, default=_public_id, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.API)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    integration_id = models.CharField(max_length=80, blank=True)
    request_body = models.JSONField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=60, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "request log"
        ordering = ["-created_at"]
        indexes = [
            # Logs page: WHERE environment=? ORDER BY created_at DESC.
            models.Index(fields=["environment", "-created_at"], name="requestlog_env_idx"),
            # Logs page filtered by integration (linked from the integration page).
            models.Index(
                fields=["environment", "integration_id", "-created_at"], name="requestlog_env_integration_idx"
            ),
            # Pruning: WHERE created_at < cutoff.
            models.Index(fields=["created_at"], name="requestlog_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status_code}"


class AuditEvent(models.Model):
    """Who did what: operators, API keys, the system (state changes), end customers (links)."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="audit_events")
    # Kept as plain text so the trail survives the integration's deletion.
    integration_id = models.CharField(max_length=80, blank=True)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor_api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True)  # e.g. "system", "end customer"
    action = models.CharField(max_length=60)  # e.g. "integration.state_changed", "link.created"
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "audit event"
        ordering = ["-created_at"]
        indexes = [
            # Integration page audit trail: WHERE integration_id=? ORDER BY created_at DESC.
            models.Index(fields=["integration_id", "-created_at"], name="audit_integration_idx"),
            # Overview "recent changes": WHERE environment=? ORDER BY created_at DESC.
            models.Index(fields=["environment", "-created_at"], name="audit_env_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"

    @property
    def actor(self) -> str:
        if self.actor_user_id:
            return str(self.actor_user)
        if self.actor_api_key_id:
            return f"API key {self.actor_api_key}"
        return self.actor_label or "system"


# Every column holding Fernet-encrypted data: checked at start-up (checks.py), re-encrypted by
# rotate_fernet_keys, never loaded by the admin.
ENCRYPTED_COLUMNS: tuple[tuple[type[models.Model], str], ...] = (
    (Integration, "credentials_encrypted"),
    (WebhookEndpoint, "secret_encrypted"),
    (WebhookEndpoint, "previous_secret_encrypted"),  # the replaced secret, during a rotation's overlap
)


# --- Task outbox -------------------------------------------------------------------------------


class OutboxMessage(models.Model):
    """A Celery task to publish, written in the transaction of the work it belongs to (see outbox.py)."""

    task = models.CharField(max_length=200)  # registered task name, e.g. "integrations.syncs.run_sync"
    args = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    # Not published before this (webhook retries wait here, not in the broker).
    available_at = models.DateTimeField(default=timezone.now)
    # Set while one process publishes the row, so the sweep does not publish it as well.
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # failed publishes
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = "outbox message"
        indexes = [
            # The sweep: WHERE available_at <= now ORDER BY available_at (the table is near empty
            # while the broker is up: rows live from commit to publish).
            models.Index(fields=["available_at"], name="outbox_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task}{tuple(self.args)}"
