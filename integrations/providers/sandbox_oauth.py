"""`sandbox_oauth`: the sandbox HR system reached with OAuth 2.0 (authorization code + refresh tokens).

Access tokens are short-lived and every refresh rotates the refresh token, so the credentials
change often: `check_auth` refreshes when needed and returns the new tokens in
`AuthResult.updated_credentials`, which the caller must store (the old refresh token stops working).

The upstream account is the company the grant belongs to, which `/me` names as for an API key.
A grant Relink no longer needs (replaced by a reconnect, or obtained by a refused attempt) is
revoked at the sandbox's RFC 7009 endpoint (`revoke_grant`).

Passthrough (`sandbox_oauth/v1`): the access token as bearer token; the caller refreshes it first
when `needs_refresh` says so, and stores what `refresh` returns (integrations.passthrough).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
from django.conf import settings
from django.utils import timezone
from django.utils.crypto import salted_hmac

from ..lib.http import RequestNotEncodable, provider_client
from .base import (
    AuthResult,
    AuthType,
    Category,
    OAuthProvider,
    Outcome,
    Page,
    PassthroughTarget,
    ProviderAuthFailed,
    ProviderUnavailable,
    register,
)
from .sandbox import SandboxProvider, sandbox_api_url

# Relink's own registration as an OAuth client of Sandbox HR, shared by both sides: this adapter
# and the sandbox's authorization server (sandbox.models).
CLIENT_ID = "relink"


def client_secret() -> str:
    """SANDBOX_OAUTH_CLIENT_SECRET, else one derived from SECRET_KEY; read at call time so tests
    and deployments can override it."""
    return settings.SANDBOX_OAUTH_CLIENT_SECRET or salted_hmac("sandbox-oauth", "client").hexdigest()


# Refresh this long before expiry, so a token cannot expire between the check and the sync's fetches.
REFRESH_MARGIN = timedelta(seconds=60)


def token_url() -> str:
    return f"{settings.BASE_URL}/sandbox/oauth/token"


def revocation_url() -> str:
    return f"{settings.BASE_URL}/sandbox/oauth/revoke"


def _client_auth() -> tuple[str, str]:
    """HTTP Basic client authentication; RFC 6749 §2.3.1: the parts are form-encoded first."""
    return quote_plus(CLIENT_ID), quote_plus(client_secret())


def expires_soon(credentials: dict[str, Any]) -> bool:
    """True when the access token is expired, about to expire, or its expiry is unknown."""
    try:
        expires_at = datetime.fromisoformat(credentials.get("expires_at") or "")
    except (TypeError, ValueError):
        return True
    if timezone.is_naive(expires_at):
        expires_at = expires_at.replace(tzinfo=UTC)
    return expires_at - timezone.now() < REFRESH_MARGIN


class _RefreshFailed(Exception):
    def __init__(self, result: AuthResult):
        super().__init__(result.message)
        self.result = result


@register
class SandboxOAuthProvider(SandboxProvider, OAuthProvider):
    id = "sandbox_oauth"
    label = "Sandbox HR (OAuth)"
    category = Category.HRIS
    auth_type = AuthType.OAUTH2
    # Nothing to type in: the tokens come from the authorization flow, not from a form.
    credential_fields = ()
    models = SandboxProvider.models

    @classmethod
    def authorize_url(cls, redirect_uri: str, state: str, scopes: Iterable[str] | None = None) -> str:
        """Where to send the customer to grant access; without `scopes` the sandbox asks for all."""
        params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect_uri, "state": state}
        if scopes:
            params["scope"] = " ".join(scopes)
        return f"{settings.BASE_URL}/sandbox/oauth/authorize?{urlencode(params)}"

    @classmethod
    def exchange_code(cls, code: str, redirect_uri: str) -> dict[str, Any]:
        """Credentials for the code the callback received.

        Raises ProviderAuthFailed when the code is refused (wrong, used, expired) and
        ProviderUnavailable when the sandbox cannot answer.
        """
        return cls._token_request({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})

    @classmethod
    def _token_request(cls, form: dict[str, str], previous_refresh_token: str = "") -> dict[str, Any]:
        # Taken before the request, so the stored expiry is never later than the server's.
        requested_at = timezone.now()
        try:
            with provider_client() as client:
                response = client.post(token_url(), data=form, auth=_client_auth())
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable("Sandbox HR token endpoint did not answer in time") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"Sandbox HR token endpoint unreachable: {exc}") from exc
        except RequestNotEncodable:
            raise ProviderAuthFailed("The token request holds characters that cannot be sent to Sandbox HR") from None
        if response.status_code in (400, 401):
            error = _oauth_error(response)
            raise ProviderAuthFailed(f"Sandbox HR refused the token request ({error})", response.status_code)
        if not response.is_success:
            status = response.status_code
            raise ProviderUnavailable(f"Sandbox HR token endpoint answered {status}", status)
        try:
            body = response.json()
            return {
                "access_token": body["access_token"],
                "refresh_token": body.get("refresh_token") or previous_refresh_token,
                "expires_at": (requested_at + timedelta(seconds=int(body["expires_in"]))).isoformat(),
            }
        except (ValueError, KeyError, TypeError) as exc:
            message = "Sandbox HR token endpoint sent a malformed answer"
            raise ProviderUnavailable(message, response.status_code) from exc

    @classmethod
    def revoke_grant(cls, credentials: dict[str, Any]) -> bool:
        """RFC 7009 revocation of the refresh token, which ends the whole grant and every access
        token it issued (an access token alone when no refresh token is held)."""
        refresh_token = credentials.get("refresh_token") or ""
        token, hint = (refresh_token, "refresh_token") if refresh_token else (credentials.get("access_token"), "")
        if not token:
            return False  # nothing held, nothing to revoke
        form = {"token": str(token), "token_type_hint": hint or "access_token"}
        try:
            with provider_client() as client:
                response = client.post(revocation_url(), data=form, auth=_client_auth())
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable("Sandbox HR revocation endpoint did not answer in time") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"Sandbox HR revocation endpoint unreachable: {exc}") from exc
        except RequestNotEncodable:
            raise ProviderAuthFailed("The token holds characters that cannot be sent to Sandbox HR") from None
        if response.status_code != 200:
            status = response.status_code
            raise ProviderUnavailable(f"Sandbox HR revocation endpoint answered {status}", status)
        return True

    def needs_refresh(self, credentials: dict[str, Any]) -> bool:
        return expires_soon(credentials)

    def refresh(self, credentials: dict[str, Any]) -> dict[str, Any]:
        """New tokens for the stored refresh token (which the sandbox rotates: store them at once)."""
        refresh_token = credentials.get("refresh_token") or ""
        if not refresh_token:
            raise ProviderAuthFailed("No refresh token stored")
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token}, refresh_token)

    def _refresh(self, credentials: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.refresh(credentials)
        except (ProviderAuthFailed, ProviderUnavailable) as exc:
            code = "REFRESH_REFUSED" if exc.outcome is Outcome.AUTH_FAILED else "REFRESH_UNAVAILABLE"
            result = AuthResult(exc.outcome, http_status=exc.http_status, error_code=code, message=str(exc))
            raise _RefreshFailed(result) from exc

    def _auth_headers(self, credentials: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials.get('access_token', '')}"}

    def _get(self, path: str, credentials: dict[str, Any], params: dict | None = None) -> httpx.Response:
        with provider_client() as client:
            return client.get(sandbox_api_url(path), headers=self._auth_headers(credentials), params=params)

    def passthrough_target(self, api: str, credentials: dict[str, Any]) -> PassthroughTarget:
        # Relink's own OAuth client secret is never shown either.
        return PassthroughTarget(
            sandbox_api_url("").rstrip("/"), self._auth_headers(credentials), secrets=(client_secret(),)
        )

    def check_auth(self, credentials: dict[str, Any]) -> AuthResult:
        """Refresh first if the token is (nearly) expired, or once after a 401, then call /me.

        Whenever a refresh succeeded its tokens are returned, whatever the final outcome: the old
        refresh token no longer works, so losing the new one would break the integration.
        """
        refreshed = None
        try:
            if expires_soon(credentials):
                refreshed = self._refresh(credentials)
            result = super().check_auth(refreshed or credentials)
            if result.outcome is Outcome.AUTH_FAILED and refreshed is None:
                refreshed = self._refresh(credentials)
                result = super().check_auth(refreshed)
        except _RefreshFailed as exc:
            result = exc.result
        result.updated_credentials = refreshed
        return result

    def fetch_pages(
        self,
        model: str,
        credentials: dict[str, Any],
        fields: list[str],
        since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """Never refreshes: rotated tokens could not be stored from here. `check_auth`, run at the
        start of every sync, refreshes early enough for the sync's fetches."""
        try:
            yield from super().fetch_pages(model, credentials, fields, since, page_size)
        except ProviderAuthFailed as exc:
            raise ProviderAuthFailed("Sandbox HR rejected the access token", exc.http_status) from exc


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("error", f"HTTP {response.status_code}")) if isinstance(body, dict) else "invalid answer"
