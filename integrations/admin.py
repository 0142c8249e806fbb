"""Django admin for the domain models.

Secrets never reach a rendered page: encrypted credentials, webhook secrets and key hashes are
excluded from every form and list, and the encrypted columns are not even loaded where a related
row is shown. Rows the system produces (checks, syncs, deliveries, logs, the audit trail) are
view-only; rows that need a generated secret are created by the application, not here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db import models
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import HttpRequest

from . import audit, environments, scopes
from .health import request_auth_check, set_enabled
from .lib.targets import TargetRefused, check_url
from .models import (
    ENCRYPTED_COLUMNS,
    ApiKey,
    AuditEvent,
    AuthCheck,
    Environment,
    Integration,
    Invitation,
    Membership,
    OutboxMessage,
    RequestLog,
    Role,
    ScopeConfig,
    Sync,
    SyncedRecord,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from .scopes import EMPTY_SCOPE_CONFIG, ScopeSpec

# Columns that hold secrets (encrypted or hashed), by model; never selected for related rows.
SECRET_COLUMNS: dict[type, tuple[str, ...]] = {
    **{model: tuple(c for m, c in ENCRYPTED_COLUMNS if m is model) for model, _ in ENCRYPTED_COLUMNS},
    ApiKey: ("key_hash",),
}


def select_related_without_secrets(qs: QuerySet, *relations: str) -> QuerySet:
    """`select_related(*relations)`, deferring the secret columns of the joined models.

    A list of syncs shows its integration's name; it has no reason to load its credentials.
    """
    qs = qs.select_related(*relations)
    deferred: list[str] = []
    for relation in relations:
        model = qs.model
        for part in relation.split("__"):
            model = model._meta.get_field(part).related_model
        deferred.extend(f"{relation}__{column}" for column in SECRET_COLUMNS.get(model, ()))
    return qs.defer(*deferred) if deferred else qs


class RelatedWithoutSecretsMixin:
    """Joins `related_without_secrets` for the list and the change page, minus their secrets."""

    related_without_secrets: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)  # type: ignore[misc]
        if self.related_without_secrets:
            qs = select_related_without_secrets(qs, *self.related_without_secrets)
        return qs


class ReadOnlyAdmin(RelatedWithoutSecretsMixin, admin.ModelAdmin):
    """For rows the system writes: viewable (the change page renders read-only), never added or edited."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Operators and environments ----------------------------------------------------------------


class UserCreationAdminForm(AdminUserCreationForm):
    """Creation form for the email-based user; emails are stored lower-case like `create_user`."""

    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        return self.cleaned_data["email"].lower()


class UserChangeAdminForm(UserChangeForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        return self.cleaned_data["email"].lower()


class MembershipForUserInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    fields = ("environment", "role", "created_at")
    readonly_fields = ("created_at",)
    extra = 0
    verbose_name = "environment membership"


class MembershipForEnvironmentInline(admin.TabularInline):
    model = Membership
    fk_name = "environment"
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)
    extra = 0
    verbose_name = "member"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin, for a user whose username is the email and who has one `name`."""

    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "name", "usable_password", "password1", "password2")}),
    )
    readonly_fields = ("last_login", "date_joined")
    list_display = ("email", "name", "is_staff", "is_superuser", "is_active", "date_joined", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "name")
    ordering = ("email",)
    date_hierarchy = "date_joined"
    inlines = (MembershipForUserInline,)

    def get_inline_instances(self, request: HttpRequest, obj: User | None = None) -> list:
        # The add page only sets credentials; memberships are managed once the user exists.
        return super().get_inline_instances(request, obj) if obj is not None else []


class EnvironmentAdminForm(forms.ModelForm):
    """The same bounds as the dashboard's settings page (integrations.environments): a sync
    interval within them, allowed origins one per line, each a real origin."""

    allowed_origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One origin per line (https://app.example.com): the pages that may frame embedded links.",
    )

    class Meta:
        model = Environment
        fields = ("name", "slug", "sync_interval", "allowed_origins")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_origins"] = "\n".join(self.instance.allowed_origins or [])

    def clean_sync_interval(self) -> Any:
        try:
            return environments.check_sync_interval(self.cleaned_data["sync_interval"])
        except environments.SettingsError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_allowed_origins(self) -> list[str]:
        try:
            return environments.parse_origin_lines(self.cleaned_data.get("allowed_origins") or "")
        except environments.SettingsError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    """An environment created here gets its creator as owner (unless the members inline names
    one) and a default scope config per category, as one created in the dashboard does."""

    form = EnvironmentAdminForm
    list_display = ("name", "slug", "sync_interval", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)
    date_hierarchy = "created_at"
    inlines = (MembershipForEnvironmentInline,)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if change:
            return
        environment, user = form.instance, request.user
        assert isinstance(user, User)  # the admin site requires a signed-in staff user
        actor = audit.Actor(user=user)
        if not Membership.objects.filter(environment=environment, role=Role.OWNER).exists():
            Membership.objects.update_or_create(environment=environment, user=user, defaults={"role": Role.OWNER})
        scopes.create_starter_defaults(environment.pk, actor)
        audit.record(environment.pk, "environment.created", actor, name=environment.name, slug=environment.slug)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "environment", "role", "created_at")
    list_filter = ("role", "environment")
    list_select_related = ("user", "environment")
    search_fields = ("user__email", "user__name", "environment__name", "environment__slug")
    autocomplete_fields = ("user", "environment")
    readonly_fields = ("created_at",)


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    """Invitations to join an environment; the token is stored hashed and never shown."""

    list_display = ("email", "environment", "role", "invited_by", "created_at", "expires_at", "accepted_at")
    list_filter = ("role", "environment")
    list_select_related = ("environment", "invited_by")
    search_fields = ("email", "environment__name")
    exclude = ("token_hash",)


class ScopeConfigAdminForm(forms.ModelForm):
    """The spec must parse and enable at least one model, as in the dashboard (scopes.save_scope_config)."""

    class Meta:
        model = ScopeConfig
        fields = ("environment", "name", "category", "spec", "is_default")

    def clean_spec(self) -> Any:
        spec = self.cleaned_data.get("spec")
        if not isinstance(spec, dict):
            raise forms.ValidationError('The spec is a JSON object: {"hris_employees": {"availability": "ENABLED"}}.')
        try:
            parsed = ScopeSpec.parse(spec)
        except (ValueError, AttributeError, TypeError) as exc:
            raise forms.ValidationError(f"This spec cannot be read: {exc}") from None
        if not parsed.reads_a_model:
            raise forms.ValidationError(EMPTY_SCOPE_CONFIG)
        return spec


@admin.register(ScopeConfig)
class ScopeConfigAdmin(admin.ModelAdmin):
    form = ScopeConfigAdminForm
    list_display = ("name", "id", "environment", "category", "created_at", "updated_at")
    list_filter = ("category", "environment")
    list_select_related = ("environment",)
    search_fields = ("=id", "name")
    readonly_fields = ("id", "created_at", "updated_at")
    date_hierarchy = "created_at"


# --- Integrations and their history --------------------------------------------------------------


class IntegrationAdminForm(forms.ModelForm):
    """Offers only scope configs of the integration's own environment and category."""

    class Meta:
        model = Integration
        exclude = ("credentials_encrypted",)  # noqa: DJ006 -- every field but the secret, by design

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("scope_config")
        if isinstance(field, forms.ModelChoiceField) and self.instance.environment_id:
            field.queryset = field.queryset.filter(
                environment_id=self.instance.environment_id, category=self.instance.category
            )


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    """Integrations are created by the connect flow, which stores their credentials."""

    form = IntegrationAdminForm
    exclude = ("credentials_encrypted",)
    list_display = (
        "id",
        "end_user_organization_name",
        "tool",
        "state",
        "enabled",
        "scope_config",
        "last_auth_outcome",
        "last_auth_check_at",
        "auth_failing_since",
        "created_at",
    )
    list_filter = ("state", "tool", "enabled", "environment")
    list_select_related = ("scope_config",)
    search_fields = ("id", "end_user_organization_name", "end_user_origin_id", "end_user_email")
    date_hierarchy = "created_at"
    readonly_fields = (
        "id",
        "environment",
        "tool",
        "category",
        "state",
        "setup_status",
        "credentials",
        "created_at",
        "updated_at",
        "data_expired_at",
        "last_sync_at",
        "last_auth_check_at",
        "last_auth_outcome",
        "last_auth_error",
        "auth_failing_since",
        "invalid_since",
        # Recorded by the connect flow (the same-account guard); changed only through an allowing link.
        "upstream_account",
        "upstream_account_label",
    )
    fieldsets = (
        (None, {"fields": ("id", "environment", "tool", "category", "state", "enabled", "setup_status")}),
        ("End customer", {"fields": ("end_user_organization_name", "end_user_email", "end_user_origin_id")}),
        ("Scope", {"fields": ("scope_config", "opted_out_fields")}),
        ("Credentials", {"fields": ("credentials", "upstream_account", "upstream_account_label")}),
        (
            "Health",
            {
                "fields": (
                    "last_auth_check_at",
                    "last_auth_outcome",
                    "last_auth_error",
                    "auth_failing_since",
                    "invalid_since",
                )
            },
        ),
        ("Syncing", {"fields": ("next_sync_at", "last_sync_at", "data_expired_at")}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The ciphertext stays in the database; only whether there is one is selected.
        return (
            super()
            .get_queryset(request)
            .defer("credentials_encrypted")
            .annotate(has_credentials=ExpressionWrapper(~Q(credentials_encrypted=""), output_field=BooleanField()))
        )

    actions: tuple[str, ...] = ("check_auth_now", "enable_integrations", "disable_integrations")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # --- Actions ------------------------------------------------------------------------------
    # Each goes through the same domain function as the dashboard and the API, so it leaves the
    # same audit trail and webhooks. The integrations are re-read by pk inside those functions.

    @admin.action(description="Check authentication now", permissions=("change",))
    def check_auth_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        integrations = list(queryset.select_related(None).only("pk", "environment_id"))
        for integration in integrations:
            request_auth_check(integration, actor_user=request.user)
        n = len(integrations)
        self.message_user(
            request,
            f"Authentication check queued for {n} integration{'' if n == 1 else 's'}; refresh in a few seconds.",
            messages.SUCCESS,
        )

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet, enabled: bool) -> None:
        before = dict(queryset.values_list("pk", "enabled"))
        for integration_id in before:
            set_enabled(integration_id, enabled, actor_user=request.user)
        changed = sum(was != enabled for was in before.values())
        verb = "enabled" if enabled else "disabled"
        unchanged = len(before) - changed
        text = f"{changed} integration{'' if changed == 1 else 's'} {verb}."
        if unchanged:
            text += f" {unchanged} {'was' if unchanged == 1 else 'were'} already {verb}."
        self.message_user(request, text, messages.SUCCESS)

    @admin.action(description="Enable", permissions=("change",))
    def enable_integrations(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable", permissions=("change",))
    def disable_integrations(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, False)

    @admin.display(description="credentials")
    def credentials(self, obj: Integration) -> str:
        stored = getattr(obj, "has_credentials", None)
        if stored is None:
            stored = bool(obj.credentials_encrypted)
        return "stored (encrypted)" if stored else "none"

    def save_model(self, request: HttpRequest, obj: Integration, form: forms.ModelForm, change: bool) -> None:
        # Switching `enabled` goes through the domain function, so it leaves the same audit
        # trail and webhook as the dashboard and the API; other edits are saved as usual.
        wanted = obj.enabled
        switch = change and "enabled" in form.changed_data
        if switch:
            obj.enabled = not wanted
        obj.state = obj.derived_state()
        super().save_model(request, obj, form, change)
        if switch:
            updated = set_enabled(obj.pk, wanted, actor_user=request.user)
            obj.enabled, obj.state = updated.enabled, updated.state


@admin.register(AuthCheck)
class AuthCheckAdmin(ReadOnlyAdmin):
    list_display = ("checked_at", "integration", "outcome", "http_status", "error_code", "duration_ms")
    list_filter = ("outcome", "integration__environment")
    related_without_secrets = ("integration",)
    search_fields = ("integration__id", "integration__end_user_organization_name", "error_code", "error_message")
    autocomplete_fields = ("integration",)
    date_hierarchy = "checked_at"


@admin.register(Sync)
class SyncAdmin(ReadOnlyAdmin):
    list_display = ("id", "integration", "type", "status", "progress", "created_at", "started_at", "duration")
    list_filter = ("status", "type", "integration__environment")
    related_without_secrets = ("integration",)
    search_fields = ("=id", "integration__id", "integration__end_user_organization_name", "error_message")
    autocomplete_fields = ("integration", "scope_config")
    date_hierarchy = "created_at"

    @admin.display(description="models synced")
    def progress(self, obj: Sync) -> str:
        return f"{obj.models_done}/{obj.models_total}"

    @admin.display(description="duration")
    def duration(self, obj: Sync) -> str:
        return str(obj.duration) if obj.duration is not None else "–"


@admin.register(SyncedRecord)
class SyncedRecordAdmin(ReadOnlyAdmin):
    """Read-only: the provider is the source of truth and the next sync would overwrite an edit."""

    list_display = ("remote_id", "model", "integration", "first_seen_at", "updated_at")
    list_filter = ("model", "integration__environment")
    related_without_secrets = ("integration",)
    search_fields = ("=remote_id", "integration__id", "integration__end_user_organization_name")
    autocomplete_fields = ("integration",)
    date_hierarchy = "updated_at"


# --- Webhooks ----------------------------------------------------------------------------------


class WebhookEndpointAdminForm(forms.ModelForm):
    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            check_url(url)
        except TargetRefused as exc:
            raise forms.ValidationError(f"Relink cannot send webhooks there: {exc}.") from None
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Endpoints are created in the dashboard, which shows the new signing secret once."""

    form = WebhookEndpointAdminForm
    exclude = ("secret_encrypted",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("url", "id", "environment", "enabled", "description", "created_at")
    list_filter = ("enabled", "environment")
    list_select_related = ("environment",)
    search_fields = ("=id", "url", "description")
    readonly_fields = ("id", "environment", "created_at")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ("attempted_at", "response_status", "error", "duration_ms")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Read-only: deliveries are the outbox of real events; an edited payload would be sent as is."""

    list_display = (
        "event_id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_response_status",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", "event_type", "endpoint__environment")
    related_without_secrets = ("endpoint",)
    search_fields = ("=event_id", "endpoint__url", "last_error")
    autocomplete_fields = ("endpoint",)
    date_hierarchy = "created_at"
    inlines = (WebhookAttemptInline,)


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(ReadOnlyAdmin):
    list_display = ("attempted_at", "delivery", "response_status", "error", "duration_ms")
    list_filter = ("response_status", "delivery__endpoint__environment")
    related_without_secrets = ("delivery__endpoint",)
    search_fields = ("=delivery__event_id", "delivery__endpoint__url", "error")
    raw_id_fields = ("delivery",)
    date_hierarchy = "attempted_at"


# --- API keys, request logs, audit -------------------------------------------------------------


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created with `ApiKey.create`, which shows the raw key once; only the prefix is shown here."""

    exclude = ("key_hash",)
    list_display = ("name", "prefix", "environment", "created_by", "created_at", "last_used_at", "revoked_at")
    list_filter = ("environment", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("environment", "created_by")
    search_fields = ("name", "=prefix")
    readonly_fields = ("prefix", "environment", "created_by", "created_at", "last_used_at")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "method",
        "path",
        "status_code",
        "source",
        "environment",
        "api_key",
        "integration_id",
        "error_code",
        "duration_ms",
    )
    list_filter = ("source", "method", "environment")
    related_without_secrets = ("environment", "api_key")
    search_fields = ("=id", "path", "=integration_id", "error_code")
    autocomplete_fields = ("api_key",)
    date_hierarchy = "created_at"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "actor", "environment", "integration_id")
    list_filter = ("action", "environment")
    related_without_secrets = ("environment", "actor_user", "actor_api_key")
    search_fields = ("action", "=integration_id", "actor_label", "actor_user__email")
    autocomplete_fields = ("actor_user", "actor_api_key")
    date_hierarchy = "created_at"

    @admin.display(description="actor")
    def actor(self, obj: AuditEvent) -> str:
        return obj.actor


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    """Tasks waiting to be published: near empty while the broker is up (see outbox.py)."""

    list_display = ("created_at", "task", "args", "available_at", "attempts", "last_error")
    list_filter = ("task",)
    date_hierarchy = "created_at"
