"""The link lifecycle: create, open, verify credentials, complete (exactly once), revoke.

The dashboard, the /v1 API, admin actions and the hosted pages all call these functions.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from integrations import audit, webhooks
from integrations.health import state_changed
from integrations.lib.tokens import hash_secret
from integrations.models import (
    ApiKey,
    Environment,
    Integration,
    IntegrationState,
    ScopeConfig,
    SetupStatus,
    WebhookEvent,
)
from integrations.providers import Outcome, get_provider
from integrations.providers.base import ModelPermissionDenied, OAuthProvider, Provider, ProviderError
from integrations.scopes import ScopeSpec, default_scope_configs, effective_scope_config, reads_a_model
from integrations.syncs import NotSyncable, queue_sync

from .models import (
    ACTIVATION_TOKEN_VALIDITY,
    LINK_VALIDITY,
    LIVE_STATUSES,
    ConnectionLink,
    LinkKind,
    LinkStatus,
    LinkType,
)

LANGUAGE_CODES = [code for code, _ in settings.LANGUAGES]


class LinkInputError(ValueError):
    """Invalid input for a new link (unknown language, scope config of another environment, …)."""


class LinkUnusable(Exception):
    """The link cannot be used any more; `status` says why (COMPLETED, EXPIRED or REVOKED)."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class CreatedLink:
    link: ConnectionLink
    token: str  # shown once, never stored

    @property
    def url(self) -> str:
        return link_url(self.token)


def link_url(token: str) -> str:
    return f"{settings.BASE_URL}/connect/{token}/"


# What the hosted pages read of a link: its environment, integration and both scope configs.
PAGE_RELATED = ("environment", "integration", "scope_config", "integration__scope_config")


def find_link(token: str, related: tuple[str, ...] = PAGE_RELATED) -> ConnectionLink | None:
    if not token or len(token) > 100:
        return None
    return ConnectionLink.objects.select_related(*related).filter(token_hash=hash_secret(token)).first()


def get_link(pk: str) -> ConnectionLink | None:
    return ConnectionLink.objects.select_related(*PAGE_RELATED).filter(pk=pk).first()


def _audit(link: ConnectionLink, action: str, *, user=None, api_key=None, **details: Any) -> None:
    """A link's event: by the operator or API key that acted, else by the end customer."""
    details.setdefault("kind", link.kind)  # a first connection, or a reconnection
    audit.record(
        link.environment_id,
        action,
        audit.Actor.of(user, api_key, otherwise="end customer"),
        integration_id=link.integration_id or "",
        link_id=link.id,
        link_type=link.link_type,
        **details,
    )


def _check_common(
    environment: Environment, language: str, link_type: str, scope_config: ScopeConfig | None, category: str
) -> None:
    if language not in LANGUAGE_CODES:
        raise LinkInputError(f"language must be one of {', '.join(LANGUAGE_CODES)}")
    if link_type not in LinkType.values:
        raise LinkInputError(f"link_type must be one of {', '.join(LinkType.values)}")
    if scope_config is not None:
        if scope_config.environment_id != environment.pk:
            raise LinkInputError("scope_config_id does not name a scope config of this environment")
        if scope_config.category != category:
            raise LinkInputError(f"scope config {scope_config.name!r} is for {scope_config.category}, not {category}")
        if not reads_a_model(scope_config):
            raise LinkInputError(
                f"scope config {scope_config.name!r} enables no model: an integration using it would sync "
                "nothing; enable at least one model first"
            )


def _new_link(**fields: Any) -> CreatedLink:
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    link = ConnectionLink.objects.create(
        token_hash=hash_secret(token), created_at=now, expires_at=now + LINK_VALIDITY[fields["link_type"]], **fields
    )
    return CreatedLink(link, token)


def create_relink_link(
    integration: Integration,
    *,
    link_type: str = LinkType.EMBEDDED,
    language: str = "en",
    scope_config: ScopeConfig | None = None,
    user=None,
    api_key: ApiKey | None = None,
) -> CreatedLink:
    """A reconnection link for one integration, optionally moving it to `scope_config` on completion."""
    _check_common(integration.environment, language, link_type, scope_config, integration.category)
    with transaction.atomic():
        created = _new_link(
            environment=integration.environment,
            kind=LinkKind.RECONNECT,
            integration=integration,
            link_type=link_type,
            language=language,
            scope_config=scope_config,
            created_by_user=user,
            created_by_api_key=api_key,
        )
        _audit(
            created.link,
            "link.created",
            user=user,
            api_key=api_key,
            scope_config_id=scope_config.pk if scope_config else None,
        )
    return created


def create_connect_link(
    environment: Environment,
    *,
    end_user_email: str,
    end_user_organization_name: str,
    end_user_origin_id: str = "",
    category: str = "HRIS",
    tool: str = "",
    scope_config: ScopeConfig | None = None,
    link_type: str = LinkType.EMBEDDED,
    language: str = "en",
    user=None,
    api_key: ApiKey | None = None,
) -> CreatedLink:
    """A link that creates a new integration for an end user."""
    _check_common(environment, language, link_type, scope_config, category)
    if tool:
        try:
            provider = get_provider(tool)
        except LookupError:
            raise LinkInputError(f"unknown integration_tool {tool!r}") from None
        if provider.category.value != category:
            raise LinkInputError(f"{tool} is not an {category} tool")
        if not provider.is_available():
            raise LinkInputError(f"{tool} is not available on this deployment")
    with transaction.atomic():
        created = _new_link(
            environment=environment,
            kind=LinkKind.CONNECT,
            link_type=link_type,
            language=language,
            scope_config=scope_config,
            end_user_email=end_user_email,
            end_user_organization_name=end_user_organization_name,
            end_user_origin_id=end_user_origin_id,
            category=category,
            tool=tool,
            created_by_user=user,
            created_by_api_key=api_key,
        )
        _audit(created.link, "link.created", user=user, api_key=api_key, kind=LinkKind.CONNECT)
    return created


def latest_reconnect_links(integration_ids: list[str]) -> dict[str, ConnectionLink]:
    """Each integration's newest reconnection link, in two queries whatever the number of ids
    (the list pages show its status beside every broken integration)."""
    if not integration_ids:
        return {}
    newest = ConnectionLink.objects.filter(integration=OuterRef("pk"), kind=LinkKind.RECONNECT).order_by(
        "-created_at", "-pk"
    )
    link_ids = (
        Integration.objects.filter(pk__in=integration_ids)
        .annotate(newest_link=Subquery(newest.values("pk")[:1]))
        .exclude(newest_link=None)
        .values_list("newest_link", flat=True)
    )
    links = ConnectionLink.objects.filter(pk__in=list(link_ids))
    return {link.integration_id: link for link in links if link.integration_id}


def live_reconnect_link(integration: Integration) -> ConnectionLink | None:
    """The integration's newest reconnection link that can still be used, if any."""
    return (
        ConnectionLink.objects.usable()
        .filter(integration=integration, kind=LinkKind.RECONNECT)
        .order_by("-created_at")
        .first()
    )


def mark_opened(link: ConnectionLink) -> None:
    """Opening (GET) records `opened_at` once and changes nothing else."""
    if link.status == LinkStatus.PENDING:  # not opened, used, revoked or expired
        now = timezone.now()
        if ConnectionLink.objects.filter(pk=link.pk, opened_at__isnull=True).update(opened_at=now):
            link.opened_at = now
            _audit(link, "link.opened")


def revoke(link: ConnectionLink, *, user=None, api_key: ApiKey | None = None) -> bool:
    """Revoke a pending or opened link. Returns False if it was already unusable."""
    with transaction.atomic():
        locked = ConnectionLink.objects.select_for_update().get(pk=link.pk)
        if locked.status not in LIVE_STATUSES:
            return False
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        _audit(locked, "link.revoked", user=user, api_key=api_key)
    link.revoked_at = locked.revoked_at
    return True


# --- Verification ------------------------------------------------------------------------------


@dataclass
class Verification:
    ok: bool
    error_code: str = ""
    message: str = ""
    missing_permissions: list[str] = field(default_factory=list)
    credentials: dict[str, Any] = field(default_factory=dict)  # possibly refreshed by the check


def target_scope(link: ConnectionLink) -> ScopeConfig | None:
    """What the integration reads once the link is completed: the link's scope config, else the
    integration's effective one (its own, else its category's default), else for a connect link
    the default of the link's category — the permissions the hosted page asks for."""
    if link.scope_config_id:
        return link.scope_config
    if link.integration_id:
        return effective_scope_config(link.integration)
    return default_scope_configs(link.environment_id).get(link.category) if link.category else None


def verify_credentials(
    provider: Provider, credentials: dict[str, Any], scope: ScopeConfig | None, opted_out: list[str]
) -> Verification:
    """Check the credentials against the provider before anything is saved.

    First the auth check, then a probe read of every model the scope config would sync, so a
    key lacking a permission is refused now rather than failing later syncs: a model the tool
    refuses (403), or a field it leaves out of every record.
    """
    result = provider.check_auth(credentials)
    if result.outcome is Outcome.AUTH_FAILED:
        return Verification(False, "AUTH_FAILED", result.message)
    if result.outcome is Outcome.UNAVAILABLE:
        return Verification(False, "UNAVAILABLE", result.message)
    credentials = result.updated_credentials or credentials
    missing = []
    for model, fields in ScopeSpec.parse(scope.spec if scope else {}).fetch_plan(provider, opted_out):
        try:
            rows = provider.fetch(model, credentials, fields)
        except ModelPermissionDenied as exc:
            missing.append(exc.permission)
        except ProviderError as exc:
            return _provider_failure(exc)
        else:
            missing += [permission for _, permission in provider.withheld_fields(model, fields, rows)]
    if missing:
        missing = list(dict.fromkeys(missing))
        return Verification(False, "PERMISSION_MISSING", "", missing_permissions=missing, credentials=credentials)
    return Verification(True, credentials=credentials)


def _provider_failure(exc: ProviderError) -> Verification:
    return Verification(False, "UNAVAILABLE" if exc.outcome is Outcome.UNAVAILABLE else "AUTH_FAILED", str(exc))


def record_failed_attempt(link: ConnectionLink, verification: Verification, tool: str) -> None:
    """A rejected attempt: audit, `connection-flow-failed` webhook. The integration is untouched."""
    with transaction.atomic():
        _audit(
            link,
            "link.attempt_failed",
            error_code=verification.error_code,
            missing_permissions=verification.missing_permissions,
        )
        webhooks.emit(
            link.environment_id,
            WebhookEvent.CONNECTION_FLOW_FAILED,
            {
                "integration_tool": tool,
                "integration_id": link.integration_id,
                "integration_category": link.integration.category if link.integration_id else link.category,
                "end_user": _link_end_user(link),
                "error_code": verification.error_code,
                "missing_permissions": verification.missing_permissions,
            },
        )


def _link_end_user(link: ConnectionLink) -> dict[str, Any]:
    if link.integration_id:
        return webhooks.end_user(link.integration)
    return {
        "organization_name": link.end_user_organization_name,
        "creator_email": link.end_user_email or None,
        "origin_id": link.end_user_origin_id or None,
    }


# --- Completion ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    integration: Integration
    activation_token: str


def complete(
    link_id: str,
    *,
    credentials: dict[str, Any],
    opted_out_fields: list[str],
    tool: str = "",
    issue_activation_token: bool = True,
) -> Completion:
    """Apply a verified connection, exactly once (the link row is locked; a second call raises).

    Reconnect: new credentials, the link's scope config (data expired), streak cleared, ACTIVE
    unless an operator disabled it, a sync queued on commit, `integration-state-changed` if the
    state changed. Connect: a new integration, `integration-created`, a sync queued on commit.

    Without `issue_activation_token` (an embedded link completed in another tab) the token is
    issued later, once, to the frame that started the flow: `hand_off_activation_token`.
    """
    now = timezone.now()
    activation_token = secrets.token_urlsafe(32) if issue_activation_token else ""
    with transaction.atomic():
        link = ConnectionLink.objects.select_for_update().get(pk=link_id)
        status = link.status_at(now)
        if status not in LIVE_STATUSES:
            raise LinkUnusable(status)
        if link.kind == LinkKind.RECONNECT:
            integration = _apply_reconnect(link, credentials, opted_out_fields, now)
        else:
            integration = _create_integration(link, tool, credentials, opted_out_fields, now)
        link.completed_at = now
        link.integration = integration
        link.activation_token_hash = hash_secret(activation_token) if activation_token else ""
        link.activation_token_expires_at = now + ACTIVATION_TOKEN_VALIDITY if activation_token else None
        link.save(update_fields=["completed_at", "integration", "activation_token_hash", "activation_token_expires_at"])
        _audit(link, "link.completed")
        try:
            queue_sync(integration.pk)
        except NotSyncable:
            pass  # disabled by an operator: the new credentials are stored, and nothing runs until enabled

    return Completion(integration, activation_token)


def _apply_reconnect(link: ConnectionLink, credentials: dict[str, Any], opted_out: list[str], now) -> Integration:
    integration = Integration.objects.select_for_update().get(pk=link.integration_id)
    old_state = integration.state
    integration.set_credentials(credentials)
    if link.scope_config_id and link.scope_config_id != integration.scope_config_id:
        integration.scope_config_id = link.scope_config_id
        integration.data_expired_at = now
    integration.opted_out_fields = list(opted_out)
    integration.auth_failing_since = None
    integration.invalid_since = None
    integration.state = integration.derived_state()  # stays INACTIVE if an operator disabled it
    if integration.state == IntegrationState.ACTIVE:
        integration.next_sync_at = now
    integration.save()
    if integration.state != old_state:
        state_changed(integration, old_state, actor_label="end customer", reason="reconnected")
    return integration


def _create_integration(
    link: ConnectionLink, tool: str, credentials: dict[str, Any], opted_out: list[str], now
) -> Integration:
    provider = get_provider(link.tool or tool)
    integration = Integration(
        environment_id=link.environment_id,
        tool=provider.id,
        category=provider.category.value,
        end_user_organization_name=link.end_user_organization_name,
        end_user_email=link.end_user_email,
        end_user_origin_id=link.end_user_origin_id,
        scope_config_id=link.scope_config_id,
        opted_out_fields=list(opted_out),
        setup_status=SetupStatus.COMPLETED,
        created_at=now,
        next_sync_at=now,
    )
    integration.set_credentials(credentials)
    integration.save()
    webhooks.emit(link.environment_id, WebhookEvent.INTEGRATION_CREATED, webhooks.integration_data(integration))
    return integration


# --- A customer's attempt, end to end ----------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What became of one attempt: `completion` when it connected; otherwise `verification` says
    why not, or `unusable` holds the link's status when another attempt used the link first."""

    verification: Verification
    completion: Completion | None = None
    unusable: str = ""


def attempt(
    link: ConnectionLink,
    provider: Provider,
    credentials: dict[str, Any],
    opted_out: list[str],
    *,
    issue_activation_token: bool = True,
) -> Attempt:
    """The hosted form's credentials: verify against the link's target scope, then record the
    failure (audit + `connection-flow-failed`) or complete the link, exactly once."""
    verification = verify_credentials(provider, credentials, target_scope(link), opted_out)
    return _settle(link, provider, verification, opted_out, issue_activation_token)


def attempt_oauth(
    link: ConnectionLink,
    provider: OAuthProvider,
    *,
    code: str,
    error: str,
    redirect_uri: str,
    opted_out: list[str],
    issue_activation_token: bool = True,
) -> Attempt:
    """The provider's redirect back: a refused consent or a failed code exchange is a failed
    attempt like rejected credentials; exchanged credentials are verified and completed as `attempt`."""
    if error or not code:
        verification = Verification(False, "ACCESS_DENIED" if error == "access_denied" else "OAUTH_ERROR", error)
    else:
        try:
            credentials = provider.exchange_code(code, redirect_uri)
        except ProviderError as exc:
            verification = _provider_failure(exc)
        else:
            verification = verify_credentials(provider, credentials, target_scope(link), opted_out)
    return _settle(link, provider, verification, opted_out, issue_activation_token)


def _settle(
    link: ConnectionLink, provider: Provider, verification: Verification, opted_out: list[str], issue_token: bool
) -> Attempt:
    if not verification.ok:
        record_failed_attempt(link, verification, provider.id)
        return Attempt(verification)
    try:
        done = complete(
            link.pk,
            credentials=verification.credentials,
            opted_out_fields=opted_out,
            tool=provider.id,
            issue_activation_token=issue_token,
        )
    except LinkUnusable as exc:
        return Attempt(verification, unusable=exc.status)
    return Attempt(verification, completion=done)


def hand_off_activation_token(link: ConnectionLink) -> str | None:
    """The activation token of an EMBEDDED link completed in another tab (OAuth consent opens in
    a new tab, which cannot message the frame), for the frame that started the flow — issued
    exactly once (a conditional UPDATE: the first caller wins), within the link's validity.
    None when the link is not such a link or its token was already issued.
    """
    if link.link_type != LinkType.EMBEDDED:
        return None
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    issued = ConnectionLink.objects.filter(
        pk=link.pk,
        completed_at__gte=now - LINK_VALIDITY[LinkType.EMBEDDED],
        activation_token_hash="",
    ).update(activation_token_hash=hash_secret(token), activation_token_expires_at=now + ACTIVATION_TOKEN_VALIDITY)
    return token if issued else None


def exchange_activation_token(environment: Environment, token: str) -> Integration | None:
    """The integration an activation token was issued for — once: like an OAuth2 code, the token
    is spent by its first exchange (a conditional UPDATE: of two concurrent exchanges one wins)
    and is void ACTIVATION_TOKEN_VALIDITY after it was issued. None for an unknown, spent or
    expired token, or one of another environment."""
    if not token or len(token) > 100:
        return None
    now = timezone.now()
    spendable = ConnectionLink.objects.filter(
        environment=environment,
        activation_token_hash=hash_secret(token),
        completed_at__isnull=False,
        activation_token_expires_at__gt=now,
        activation_token_used_at__isnull=True,
    )
    link = spendable.select_related("integration").first()
    if link is None or not spendable.filter(pk=link.pk).update(activation_token_used_at=now):
        return None  # unknown, spent or expired — or a concurrent exchange spent it first
    return link.integration
