"""The link lifecycle: create, open, verify credentials, complete (exactly once), revoke.

The dashboard, the /v1 API, admin actions and the hosted pages all call these functions.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field, replace
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
    SyncType,
    WebhookEvent,
)
from integrations.pages import request_log_url
from integrations.providers import Outcome, get_provider, providers_of_category
from integrations.providers.base import (
    AuthResult,
    ModelPermissionDenied,
    OAuthProvider,
    Provider,
    ProviderError,
    UpstreamAccount,
)
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

log = logging.getLogger(__name__)

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


def _audit(
    link: ConnectionLink, action: str, *, user=None, api_key=None, otherwise: str = "end customer", **details: Any
) -> None:
    """A link's event: by the operator or API key that acted, else by `otherwise` (the end
    customer; "system" for the links reconnect requests send)."""
    details.setdefault("kind", link.kind)  # a first connection, or a reconnection
    audit.record(
        link.environment_id,
        action,
        audit.Actor.of(user, api_key, otherwise=otherwise),
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


def _new_link(token: str | None = None, **fields: Any) -> CreatedLink:
    token = token or secrets.token_urlsafe(32)
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
    token: str | None = None,
    allow_account_change: bool = False,
) -> CreatedLink:
    """A reconnection link for one integration, optionally moving it to `scope_config` on completion.

    `allow_account_change`: the customer may connect credentials of another upstream account than
    the one recorded (e.g. after moving to a new tenant); an operator's explicit, audited choice.

    `token`: a token the caller derived (reconnect requests reuse one link per failure streak,
    connect_flow.notifications); otherwise a random one. Without an operator or API key the link
    is the system's."""
    _check_common(integration.environment, language, link_type, scope_config, integration.category)
    with transaction.atomic():
        created = _new_link(
            token,
            environment=integration.environment,
            kind=LinkKind.RECONNECT,
            integration=integration,
            link_type=link_type,
            language=language,
            scope_config=scope_config,
            created_by_user=user,
            created_by_api_key=api_key,
            allow_account_change=allow_account_change,
        )
        _audit(
            created.link,
            "link.created",
            user=user,
            api_key=api_key,
            otherwise="system",
            scope_config_id=scope_config.pk if scope_config else None,
            **({"allow_account_change": True} if allow_account_change else {}),
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
    if not providers_of_category(category):  # the page would offer no tool: a dead end
        raise LinkInputError(f"no {category} tool is available on this deployment")
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


# A reconnect whose credentials reach another upstream account than the one recorded.
ACCOUNT_MISMATCH = "ACCOUNT_MISMATCH"


@dataclass
class Verification:
    ok: bool
    error_code: str = ""
    message: str = ""
    missing_permissions: list[str] = field(default_factory=list)
    credentials: dict[str, Any] = field(default_factory=dict)  # possibly refreshed by the check
    # The upstream account the credentials reach (None: the tool cannot tell).
    account: UpstreamAccount | None = None


@dataclass(frozen=True)
class AccountRule:
    """What a link's credentials must reach: the integration's recorded upstream account (empty:
    nothing recorded, anything goes), unless the operator allowed a change of account."""

    connected: str = ""
    allow_change: bool = False

    @classmethod
    def of(cls, link: ConnectionLink) -> AccountRule:
        integration = link.integration if link.kind == LinkKind.RECONNECT and link.integration_id else None
        if integration is None:
            return cls()
        return cls(integration.upstream_account, link.allow_account_change)


NO_ACCOUNT_RULE = AccountRule()


class AccountMismatch(Exception):
    """Raised under the integration's lock when the account recorded meanwhile is not the one the
    verified credentials reach (another attempt completed first)."""

    def __init__(self, recorded: str, account: UpstreamAccount):
        super().__init__(f"The credentials reach {account}, not the account connected before ({recorded})")
        self.recorded = recorded
        self.account = account


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
    provider: Provider,
    credentials: dict[str, Any],
    scope: ScopeConfig | None,
    opted_out: list[str],
    rule: AccountRule = NO_ACCOUNT_RULE,
) -> Verification:
    """Check the credentials against the provider before anything is saved.

    First the auth check; then the upstream account the credentials reach, refused
    (ACCOUNT_MISMATCH) if it is not the account `rule` recorded and no change was allowed; then
    a probe of every model the scope config would sync (`Provider.probe`: one small page each, so
    the customer waits about as long for a company of 50 as of 50,000), so a key lacking a
    permission is refused now rather than failing later syncs: a model the tool refuses (403), or
    a field it leaves out of every probed record (the probe judges by its page alone).
    """
    result = provider.check_auth(credentials)
    if result.outcome is Outcome.AUTH_FAILED:
        return Verification(False, "AUTH_FAILED", result.message)
    if result.outcome is Outcome.UNAVAILABLE:
        return Verification(False, "UNAVAILABLE", result.message)
    credentials = result.updated_credentials or credentials
    try:
        account = _account(provider, credentials, result, rule)
    except ProviderError as exc:
        return replace(_provider_failure(exc), credentials=credentials)
    if account is not None and rule.connected and account.id != rule.connected and not rule.allow_change:
        message = f"The credentials reach {account}, not the account connected before ({rule.connected})"
        return Verification(False, ACCOUNT_MISMATCH, message, credentials=credentials, account=account)
    missing = []
    for model, fields in ScopeSpec.parse(scope.spec if scope else {}).fetch_plan(provider, opted_out):
        try:
            rows = provider.probe(model, credentials, fields)
        except ModelPermissionDenied as exc:
            missing.append(exc.permission)
        except ProviderError as exc:
            return _provider_failure(exc)
        else:
            missing += [permission for _, permission in provider.withheld_fields(model, fields, rows)]
    if missing:
        missing = list(dict.fromkeys(missing))
        return Verification(
            False, "PERMISSION_MISSING", "", missing_permissions=missing, credentials=credentials, account=account
        )
    return Verification(True, credentials=credentials, account=account)


def _account(
    provider: Provider, credentials: dict[str, Any], checked: AuthResult, rule: AccountRule
) -> UpstreamAccount | None:
    """The account verified credentials reach; the recorded one's id when the tool says they reach
    it by another signal (`Provider.same_account`), so nothing reads as a change of account."""
    account = provider.account_of(credentials, checked)
    if account is None or not rule.connected or account.id == rule.connected:
        return account
    if provider.same_account(rule.connected, account, credentials):
        return replace(account, id=rule.connected)
    return account


def _provider_failure(exc: ProviderError) -> Verification:
    return Verification(False, "UNAVAILABLE" if exc.outcome is Outcome.UNAVAILABLE else "AUTH_FAILED", str(exc))


def record_failed_attempt(link: ConnectionLink, verification: Verification, tool: str, *, log_id: str) -> None:
    """A rejected attempt: audit, `connection-flow-failed` webhook. The integration is untouched.

    The webhook carries exactly the reference's fields; why the attempt failed (error code,
    missing permissions, the account reached instead) is for the operator: in the audit event,
    and in the attempt's request log, `log_id`, which the webhook's `log_url` opens (the caller
    writes that row, with this id)."""
    details: dict[str, Any] = {}
    if verification.error_code == ACCOUNT_MISMATCH and verification.account is not None:
        # For the operator: which account the credentials reached instead.
        details = {"account": verification.account.id, "account_label": verification.account.label}
    with transaction.atomic():
        _audit(
            link,
            "link.attempt_failed",
            error_code=verification.error_code,
            missing_permissions=verification.missing_permissions,
            log_id=log_id,
            **details,
        )
        webhooks.emit(
            link.environment_id,
            WebhookEvent.CONNECTION_FLOW_FAILED,
            {
                "integration_tool": tool,
                "integration_category": link.integration.category if link.integration_id else link.category,
                "end_user": _link_end_user(link),
                "log_url": request_log_url(link.environment.slug, log_id),
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
    account: UpstreamAccount | None = None,
) -> Completion:
    """Apply a verified connection, exactly once (the link row is locked; a second call raises).

    Reconnect: new credentials, the link's scope config (data expired), streak cleared, ACTIVE
    unless an operator disabled it, a FULL sync queued on commit, `integration-state-changed` if the
    state changed; once committed, an OAuth grant the new credentials replaced is revoked at the
    tool (or forgotten, if the tool cannot revoke). Connect: a new integration,
    `integration-created`, a FULL sync queued on commit.

    `account`, the upstream account the verified credentials reach, is recorded. On a reconnect,
    an account other than the one recorded raises `AccountMismatch` (nothing changed) unless the
    link allows a change of account, which is then audited (`integration.account_changed`).

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
            integration, replaced = _apply_reconnect(link, credentials, opted_out_fields, now, account)
            if _replaces_a_grant(integration, replaced, credentials):
                provider = integration.provider
                transaction.on_commit(lambda: revoke_unused_grant(provider, replaced, link, "replaced by a reconnect"))
        else:
            integration = _create_integration(link, tool, credentials, opted_out_fields, now, account)
        link.completed_at = now
        link.integration = integration
        link.activation_token_hash = hash_secret(activation_token) if activation_token else ""
        link.activation_token_expires_at = now + ACTIVATION_TOKEN_VALIDITY if activation_token else None
        link.save(update_fields=["completed_at", "integration", "activation_token_hash", "activation_token_expires_at"])
        _audit(link, "link.completed")
        try:
            # FULL: new credentials may read fields or records the ones before could not.
            queue_sync(integration.pk, SyncType.FULL)
        except NotSyncable:
            pass  # disabled by an operator: the new credentials are stored, and nothing runs until enabled

    return Completion(integration, activation_token)


def _apply_reconnect(
    link: ConnectionLink, credentials: dict[str, Any], opted_out: list[str], now, account: UpstreamAccount | None
) -> tuple[Integration, dict[str, Any]]:
    """The reconnected integration, and the credentials the new ones replaced."""
    integration = Integration.objects.select_for_update().get(pk=link.integration_id)
    _record_account(link, integration, account)  # first: a refusal changes nothing
    old_state = integration.state
    replaced = integration.get_credentials()
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
    return integration, replaced


def _record_account(link: ConnectionLink, integration: Integration, account: UpstreamAccount | None) -> None:
    """Set the integration's upstream account to the one a reconnect's credentials reach.

    Raises `AccountMismatch` if another account is recorded and the link does not allow a change
    (an attempt that completed meanwhile recorded it: verification saw nothing recorded yet).
    """
    if account is None:
        return  # the tool cannot tell: keep what is recorded
    recorded = integration.upstream_account
    if recorded and account.id != recorded:
        if not link.allow_account_change:
            raise AccountMismatch(recorded, account)
        _audit(
            link,
            "integration.account_changed",
            **{"from": recorded, "from_label": integration.upstream_account_label},
            to=account.id,
            to_label=account.label,
        )
    integration.upstream_account = account.id
    integration.upstream_account_label = account.label or integration.upstream_account_label


def _replaces_a_grant(integration: Integration, replaced: dict[str, Any], credentials: dict[str, Any]) -> bool:
    """True when an OAuth reconnect's new credentials hold another grant than the replaced ones."""
    if not isinstance(integration.provider, OAuthProvider):
        return False
    old = replaced.get("refresh_token") or replaced.get("access_token")
    return bool(old) and old not in (credentials.get("refresh_token"), credentials.get("access_token"))


def revoke_unused_grant(provider: Provider, credentials: dict[str, Any], link: ConnectionLink, reason: str) -> bool:
    """Revoke at the tool an OAuth grant Relink will not use (`reason`: replaced by a reconnect, or
    obtained by an attempt that did not complete), or forget it where the tool cannot revoke.

    Audited (`integration.grant_revoked` / `integration.grant_forgotten`); best effort: a tool that
    cannot be reached is logged and audited, never an error for the customer. True if revoked.
    """
    revoked, error = False, ""
    if isinstance(provider, OAuthProvider):
        try:
            revoked = provider.revoke_grant(credentials)
        except ProviderError as exc:
            error = str(exc)[:500]
            log.warning("could not revoke a %s grant (link %s): %s", provider.id, link.pk, error)
    action = "integration.grant_revoked" if revoked else "integration.grant_forgotten"
    _audit(link, action, otherwise="system", reason=reason, **({"error": error} if error else {}))
    return revoked


def _create_integration(
    link: ConnectionLink,
    tool: str,
    credentials: dict[str, Any],
    opted_out: list[str],
    now,
    account: UpstreamAccount | None,
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
        upstream_account=account.id if account else "",
        upstream_account_label=account.label if account else "",
    )
    integration.set_credentials(credentials)
    integration.save()
    webhooks.emit(link.environment_id, WebhookEvent.INTEGRATION_CREATED, webhooks.integration_ref_data(integration))
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
    log_id: str,
    issue_activation_token: bool = True,
) -> Attempt:
    """The hosted form's credentials: verify against the link's target scope and account rule,
    then record the failure (audit + `connection-flow-failed`) or complete the link, exactly once.
    `log_id`: the id of the request log the caller writes for this attempt (a failure's `log_url`)."""
    verification = verify_credentials(provider, credentials, target_scope(link), opted_out, AccountRule.of(link))
    return _settle(link, provider, verification, opted_out, issue_activation_token, log_id)


def attempt_oauth(
    link: ConnectionLink,
    provider: OAuthProvider,
    *,
    code: str,
    error: str,
    redirect_uri: str,
    opted_out: list[str],
    log_id: str,
    issue_activation_token: bool = True,
) -> Attempt:
    """The provider's redirect back: a refused consent or a failed code exchange is a failed
    attempt like rejected credentials; exchanged credentials are verified and completed as `attempt`.
    A grant obtained by an attempt that does not complete (refused, or the link used meanwhile)
    is revoked at once: nothing will ever use it."""
    credentials: dict[str, Any] | None = None
    if error or not code:
        verification = Verification(False, "ACCESS_DENIED" if error == "access_denied" else "OAUTH_ERROR", error)
    else:
        try:
            credentials = provider.exchange_code(code, redirect_uri)
        except ProviderError as exc:
            verification = _provider_failure(exc)
        else:
            rule = AccountRule.of(link)
            verification = verify_credentials(provider, credentials, target_scope(link), opted_out, rule)
    result = _settle(link, provider, verification, opted_out, issue_activation_token, log_id)
    if credentials is not None and result.completion is None:
        revoke_unused_grant(
            provider, verification.credentials or credentials, link, "obtained by an attempt that did not complete"
        )
    return result


def _settle(
    link: ConnectionLink,
    provider: Provider,
    verification: Verification,
    opted_out: list[str],
    issue_token: bool,
    log_id: str,
) -> Attempt:
    if not verification.ok:
        record_failed_attempt(link, verification, provider.id, log_id=log_id)
        return Attempt(verification)
    try:
        done = complete(
            link.pk,
            credentials=verification.credentials,
            opted_out_fields=opted_out,
            tool=provider.id,
            issue_activation_token=issue_token,
            account=verification.account,
        )
    except LinkUnusable as exc:
        return Attempt(verification, unusable=exc.status)
    except AccountMismatch as exc:
        refused = replace(verification, ok=False, error_code=ACCOUNT_MISMATCH, message=str(exc))
        record_failed_attempt(link, refused, provider.id, log_id=log_id)
        return Attempt(refused)
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
