"""The sandbox: a small fake HR system served by Relink itself, for the demo and the tests.

Its companies have employees and API keys; the sandbox adapter calls its JSON API over HTTP.
It is also an OAuth 2.0 authorization server (clients, grants, codes, access tokens) for the
`sandbox_oauth` adapter.

Every company belongs to one environment, whose members (and staff) alone see and manage its
HR admin pages (sandbox.access); a company with no environment (left over from before companies
had one) is staff only.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django.utils.text import slugify

from integrations.lib.tokens import hash_secret, new_secret
from integrations.models import Environment, User
from integrations.providers.sandbox_oauth import CLIENT_ID, client_secret

SANDBOX_KEY_PREFIX = "sbx_"
ALL_PERMISSIONS = ["employees:read", "compensation:read", "absences:read"]


def _all_permissions() -> list[str]:
    return list(ALL_PERMISSIONS)


class SandboxCompanyQuerySet(models.QuerySet["SandboxCompany"]):
    def visible_to(self, user: User) -> SandboxCompanyQuerySet:
        """The companies `user` may see: all for staff, else those of the user's environments."""
        if not user.is_active:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(environment__memberships__user_id=user.pk)


class SandboxCompany(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=200, unique=True)
    # The environment whose members manage this company; null: staff only (see the module docstring).
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.CASCADE, related_name="sandbox_companies"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = SandboxCompanyQuerySet.as_manager()

    class Meta:
        verbose_name = "sandbox company"
        verbose_name_plural = "sandbox companies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.slug:
            self.slug = slugify(self.name)[:200]
        super().save(*args, **kwargs)

    @property
    def account_id(self) -> str:
        """The company's stable id in the JSON API (`/me`'s `company_id`): what the sandbox
        adapters report as the upstream account. Names and slugs are for people."""
        return f"sbxco_{self.pk}"

    def create_key(self, label: str = "", permissions: list[str] | None = None) -> tuple[SandboxApiKey, str]:
        raw = new_secret(SANDBOX_KEY_PREFIX)
        key = SandboxApiKey.objects.create(
            company=self,
            label=label,
            prefix=raw[: len(SANDBOX_KEY_PREFIX) + 6],
            key_hash=hash_secret(raw),
            permissions=list(permissions) if permissions is not None else _all_permissions(),
        )
        return key, raw


class SandboxEmployee(models.Model):
    company = models.ForeignKey(SandboxCompany, on_delete=models.CASCADE, related_name="employees")
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    email = models.EmailField()
    department = models.CharField(max_length=100, blank=True)
    salary = models.PositiveIntegerField(default=0)
    # When the record last changed: the JSON API's `updated_after` filter reads it.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "sandbox employee"
        ordering = ["last_name", "first_name"]
        indexes = [
            # A page of the JSON API: WHERE company_id = ? ORDER BY id LIMIT ? OFFSET ?.
            models.Index(fields=["company", "id"], name="sandbox_employee_page_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}"


class SandboxApiKeyQuerySet(models.QuerySet["SandboxApiKey"]):
    def find_active(self, raw: str) -> SandboxApiKey | None:
        return self.select_related("company").filter(key_hash=hash_secret(raw), revoked_at__isnull=True).first()


class SandboxApiKey(models.Model):
    company = models.ForeignKey(SandboxCompany, on_delete=models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    permissions = models.JSONField(default=_all_permissions)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = SandboxApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "sandbox API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.company})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# --- OAuth 2.0 (authorization code with rotating refresh tokens) ------------------------------

# Where Relink's hosted connect flow receives the authorization code.
RELINK_CALLBACK_PATH = "/connect/oauth/callback/"
AUTHORIZATION_CODE_PREFIX = "sbxac_"
ACCESS_TOKEN_PREFIX = "sbxat_"
REFRESH_TOKEN_PREFIX = "sbxrt_"
# RFC 6749 §4.1.2 recommends at most ten minutes; a short life narrows the window for a leaked code.
AUTHORIZATION_CODE_VALIDITY = timedelta(minutes=5)


def access_token_validity() -> timedelta:
    return timedelta(minutes=settings.SANDBOX_OAUTH_ACCESS_TOKEN_MINUTES)


class SandboxOAuthClient(models.Model):
    """An application allowed to ask sandbox HR admins for access (a registered OAuth client)."""

    client_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    secret_hash = models.CharField(max_length=64, editable=False)
    redirect_uris = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "sandbox OAuth client"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    @classmethod
    def ensure_default(cls, redirect_uris: Iterable[str] = ()) -> SandboxOAuthClient:
        """The client Relink uses, created on demand so no management step is needed.

        Its secret follows the current settings, and its redirect URIs always include Relink's
        connect-flow callback plus any `redirect_uris` given (they are added, never removed).
        """
        client, _ = cls.objects.get_or_create(client_id=CLIENT_ID, defaults={"name": "Relink"})
        wanted = [f"{settings.BASE_URL}{RELINK_CALLBACK_PATH}", *redirect_uris]
        uris = client.redirect_uris + [u for u in dict.fromkeys(wanted) if u not in client.redirect_uris]
        secret_hash = hash_secret(client_secret())
        if uris != client.redirect_uris or secret_hash != client.secret_hash:
            client.redirect_uris = uris
            client.secret_hash = secret_hash
            client.save(update_fields=["redirect_uris", "secret_hash"])
        return client

    @classmethod
    def find(cls, client_id: str) -> SandboxOAuthClient | None:
        if client_id == CLIENT_ID:
            return cls.ensure_default()
        return cls.objects.filter(client_id=client_id).first()

    def check_secret(self, raw: str) -> bool:
        return bool(self.secret_hash) and hmac.compare_digest(self.secret_hash, hash_secret(raw))

    def allows_redirect(self, redirect_uri: str) -> bool:
        """Exact string match only: prefix or pattern matching lets codes leak to look-alike URLs."""
        return redirect_uri in self.redirect_uris


class SandboxOAuthGrant(models.Model):
    """One company's consent for one client; revoking it ends every token it issued."""

    company = models.ForeignKey(SandboxCompany, on_delete=models.CASCADE, related_name="oauth_grants")
    client = models.ForeignKey(SandboxOAuthClient, on_delete=models.CASCADE, related_name="grants")
    permissions = models.JSONField(default=_all_permissions)
    refresh_token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "sandbox OAuth grant"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.client} → {self.company}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def create_with_refresh_token(
        cls, company: SandboxCompany, client: SandboxOAuthClient, permissions: list[str]
    ) -> tuple[SandboxOAuthGrant, str]:
        raw = new_secret(REFRESH_TOKEN_PREFIX)
        grant = cls.objects.create(
            company=company, client=client, permissions=list(permissions), refresh_token_hash=hash_secret(raw)
        )
        return grant, raw

    @classmethod
    def rotate_refresh_token(cls, client: SandboxOAuthClient, raw: str) -> tuple[SandboxOAuthGrant, str] | None:
        """Swap a valid refresh token for a new one; None if it is unknown, superseded or revoked.

        The swap is a compare-and-set, so two concurrent refreshes with one token cannot both win.
        """
        old_hash = hash_secret(raw)
        grant = (
            cls.objects.select_related("company")
            .filter(client=client, refresh_token_hash=old_hash, revoked_at__isnull=True)
            .first()
        )
        if grant is None:
            return None
        new_raw = new_secret(REFRESH_TOKEN_PREFIX)
        swapped = cls.objects.filter(pk=grant.pk, refresh_token_hash=old_hash, revoked_at__isnull=True).update(
            refresh_token_hash=hash_secret(new_raw)
        )
        return (grant, new_raw) if swapped else None

    def issue_access_token(self) -> tuple[SandboxAccessToken, str]:
        """A new short-lived access token; this grant's expired ones are pruned so the table stays small."""
        now = timezone.now()
        self.access_tokens.filter(expires_at__lte=now).delete()
        raw = new_secret(ACCESS_TOKEN_PREFIX)
        token = SandboxAccessToken.objects.create(
            grant=self, token_hash=hash_secret(raw), expires_at=now + access_token_validity()
        )
        return token, raw

    def revoke(self) -> bool:
        """Revoke once; False if it already was."""
        now = timezone.now()
        revoked = SandboxOAuthGrant.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now)
        if revoked:
            self.revoked_at = now
        return bool(revoked)


class SandboxAccessTokenQuerySet(models.QuerySet["SandboxAccessToken"]):
    def find_valid(self, raw: str) -> SandboxAccessToken | None:
        return (
            self.select_related("grant__company")
            .filter(token_hash=hash_secret(raw), expires_at__gt=timezone.now(), grant__revoked_at__isnull=True)
            .first()
        )


class SandboxAccessToken(models.Model):
    grant = models.ForeignKey(SandboxOAuthGrant, on_delete=models.CASCADE, related_name="access_tokens")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = SandboxAccessTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "sandbox OAuth access token"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"access token for {self.grant}"


class SandboxAuthorizationCode(models.Model):
    """A consent waiting to be exchanged: single use, short-lived, bound to client and redirect URI."""

    client = models.ForeignKey(SandboxOAuthClient, on_delete=models.CASCADE, related_name="authorization_codes")
    company = models.ForeignKey(SandboxCompany, on_delete=models.CASCADE, related_name="authorization_codes")
    redirect_uri = models.CharField(max_length=2000)
    permissions = models.JSONField(default=_all_permissions)
    code_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    # The grant the exchange created, so a replayed code can revoke it (RFC 6749 §4.1.2).
    grant = models.ForeignKey(SandboxOAuthGrant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = "sandbox OAuth authorization code"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"authorization code for {self.company_id} ({'used' if self.used_at else 'unused'})"

    @classmethod
    def issue(
        cls, client: SandboxOAuthClient, company: SandboxCompany, redirect_uri: str, permissions: list[str]
    ) -> str:
        raw = new_secret(AUTHORIZATION_CODE_PREFIX)
        cls.objects.create(
            client=client,
            company=company,
            redirect_uri=redirect_uri,
            permissions=list(permissions),
            code_hash=hash_secret(raw),
            expires_at=timezone.now() + AUTHORIZATION_CODE_VALIDITY,
        )
        return raw

    @classmethod
    def redeem(cls, client: SandboxOAuthClient, raw: str, redirect_uri: str) -> tuple[SandboxOAuthGrant, str] | None:
        """Exchange a code for a new grant and its refresh token; None if the code may not be used.

        A second use of a code means it leaked or was replayed: the grant the first use created is
        revoked, as RFC 6749 §4.1.2 advises.
        """
        now = timezone.now()
        code = cls.objects.select_related("company").filter(client=client, code_hash=hash_secret(raw)).first()
        if code is None or code.redirect_uri != redirect_uri:
            return None
        with transaction.atomic():
            claimed = cls.objects.filter(pk=code.pk, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
            if not claimed:
                grant_id = cls.objects.filter(pk=code.pk, used_at__isnull=False).values_list("grant_id", flat=True)
                SandboxOAuthGrant.objects.filter(pk__in=grant_id, revoked_at__isnull=True).update(revoked_at=now)
                return None
            grant, refresh_raw = SandboxOAuthGrant.create_with_refresh_token(code.company, client, code.permissions)
            cls.objects.filter(pk=code.pk).update(grant=grant)
        return grant, refresh_raw
