"""The sandbox as an OAuth 2.0 authorization server (consent page, token endpoint, grant revocation,
access tokens on the JSON API) and the `sandbox_oauth` adapter talking to it over real HTTP."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from integrations.health import record_auth_check
from integrations.models import Integration, Role
from integrations.providers import Outcome, get_provider
from integrations.providers.base import ModelPermissionDenied, ProviderAuthFailed
from integrations.providers.sandbox import sandbox_api_url
from integrations.providers.sandbox_oauth import SandboxOAuthProvider, client_secret
from sandbox.models import (
    SandboxAccessToken,
    SandboxAuthorizationCode,
    SandboxCompany,
    SandboxOAuthClient,
    SandboxOAuthGrant,
)

from .factories import (
    IntegrationFactory,
    MembershipFactory,
    SandboxCompanyFactory,
    SandboxEmployeeFactory,
    UserFactory,
)

CALLBACK = "https://app.example.test/oauth/callback"
HIDDEN_INPUT_RE = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


@pytest.fixture
def relink_client(db) -> SandboxOAuthClient:
    return SandboxOAuthClient.ensure_default(redirect_uris=[CALLBACK])


@pytest.fixture
def company(db) -> SandboxCompany:
    return SandboxCompanyFactory(name="Initech HR")


@pytest.fixture
def hr_admin(db, client, company):
    """An editor of the company's environment: the HR admin pages are its members' (test_sandbox_tenancy.py)."""
    user = UserFactory(email="hr@initech.test")
    MembershipFactory(environment=company.environment, user=user, role=Role.EDITOR)
    client.force_login(user)
    return user


@pytest.fixture
def provider(live_server, settings) -> SandboxOAuthProvider:
    settings.BASE_URL = live_server.url
    return get_provider("sandbox_oauth")


def _consent(client, company: SandboxCompany, *, state: str = "st-1", scopes=None, redirect_uri: str = CALLBACK):
    """Walk the consent page as the signed-in HR admin; the response of the final POST."""
    url = SandboxOAuthProvider.authorize_url(redirect_uri, state, scopes)
    page = client.get(url[url.index("/sandbox/") :])
    assert page.status_code == 200, page.content.decode()
    form = {name: unescape(value) for name, value in HIDDEN_INPUT_RE.findall(page.content.decode())}
    return client.post(reverse("sandbox:oauth_authorize"), {**form, "company": company.slug, "decision": "allow"})


def _code_from(response) -> str:
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    return parse_qs(location.query)["code"][0]


def _token(client, data: dict, secret: str | None = None):
    """POST to the token endpoint through the test client, authenticating as Relink with HTTP Basic."""
    basic = base64.b64encode(f"relink:{secret if secret is not None else client_secret()}".encode()).decode()
    return client.post(reverse("sandbox:oauth_token"), data, headers={"Authorization": f"Basic {basic}"})


def _credentials(company: SandboxCompany, permissions: list[str] | None = None) -> dict[str, str]:
    """Credentials for a fresh grant, as the adapter stores them, without walking the consent page."""
    client = SandboxOAuthClient.ensure_default()
    grant, refresh_token = SandboxOAuthGrant.create_with_refresh_token(
        company, client, permissions or ["employees:read", "compensation:read", "absences:read"]
    )
    token, access_token = grant.issue_access_token()
    return {"access_token": access_token, "refresh_token": refresh_token, "expires_at": token.expires_at.isoformat()}


def _bearer(client, path: str, token: str):
    """A JSON API call through the test client with this bearer token."""
    return client.get(f"/sandbox/api/v1/{path}", headers={"Authorization": f"Bearer {token}"})


def _me_status(access_token: str) -> int:
    """Status of /sandbox/api/v1/me over real HTTP with this bearer token."""
    return httpx.get(sandbox_api_url("me"), headers={"Authorization": f"Bearer {access_token}"}).status_code


def _expired(credentials: dict[str, str]) -> dict[str, str]:
    return {**credentials, "expires_at": (timezone.now() - timedelta(minutes=1)).isoformat()}


# --- Consent page (/sandbox/oauth/authorize) --------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_full_authorization_code_flow_yields_working_credentials(client, provider, relink_client):
    company = SandboxCompanyFactory(name="Initech HR")
    hr_admin = UserFactory()
    MembershipFactory(environment=company.environment, user=hr_admin, role=Role.EDITOR)
    client.force_login(hr_admin)
    state = "opaque state/with?odd=chars&more"

    response = _consent(client, company, state=state, scopes=["employees:read", "absences:read"])

    assert parse_qs(urlsplit(response["Location"]).query)["state"] == [state]
    credentials = provider.exchange_code(_code_from(response), CALLBACK)
    assert set(credentials) == {"access_token", "refresh_token", "expires_at"}
    grant = SandboxOAuthGrant.objects.get()
    assert grant.company == company
    assert grant.permissions == ["employees:read", "absences:read"]

    result = provider.check_auth(credentials)

    assert result.outcome is Outcome.OK
    assert result.http_status == 200
    assert result.updated_credentials is None


def test_the_consent_page_shows_the_app_the_requested_scopes_and_the_companies(
    client, hr_admin, company, relink_client
):
    SandboxCompanyFactory(name="Globex HR", environment=company.environment)
    SandboxCompanyFactory(name="Umbrella HR")  # another environment's: not offered
    url = SandboxOAuthProvider.authorize_url(CALLBACK, "s", ["employees:read", "compensation:read"])

    response = client.get(url[url.index("/sandbox/") :])

    body = response.content.decode()
    assert response.status_code == 200
    assert "Relink" in body
    assert "employees:read" in body and "compensation:read" in body
    assert "absences:read" not in body
    assert "Initech HR" in body and "Globex HR" in body and "Umbrella HR" not in body
    assert "app.example.test" in body
    assert not SandboxAuthorizationCode.objects.exists(), "showing the page grants nothing"


def test_the_consent_page_needs_a_signed_in_user(client, company, relink_client):
    url = SandboxOAuthProvider.authorize_url(CALLBACK, "s")

    response = client.get(url[url.index("/sandbox/") :])

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.test/oauth/callback",
        CALLBACK + "/extra",
        CALLBACK + "?next=x",
        "http://app.example.test/oauth/callback",
    ],
)
def test_a_redirect_uri_that_is_not_registered_exactly_is_refused_without_redirecting(
    client, hr_admin, company, relink_client, redirect_uri
):
    params = {"response_type": "code", "client_id": "relink", "redirect_uri": redirect_uri, "state": "s"}

    shown = client.get(reverse("sandbox:oauth_authorize"), params)
    answered = client.post(reverse("sandbox:oauth_authorize"), {**params, "company": company.slug, "decision": "allow"})

    for response in (shown, answered):
        assert response.status_code == 400
        assert "Location" not in response
        assert "redirect_uri" in response.content.decode()
    assert not SandboxAuthorizationCode.objects.exists()


def test_an_unknown_client_is_refused_without_redirecting(client, hr_admin, company, relink_client):
    params = {"response_type": "code", "client_id": "someone-else", "redirect_uri": CALLBACK, "state": "s"}

    response = client.post(reverse("sandbox:oauth_authorize"), {**params, "company": company.slug, "decision": "allow"})

    assert response.status_code == 400
    assert "Location" not in response
    assert not SandboxAuthorizationCode.objects.exists()


def test_denying_sends_access_denied_back_with_the_state(client, hr_admin, company, relink_client):
    params = {"response_type": "code", "client_id": "relink", "redirect_uri": CALLBACK, "state": "s-42"}

    response = client.post(reverse("sandbox:oauth_authorize"), {**params, "company": company.slug, "decision": "deny"})

    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query == {"error": ["access_denied"], "state": ["s-42"]}
    assert not SandboxAuthorizationCode.objects.exists()


def test_an_unknown_scope_sends_invalid_scope_back(client, hr_admin, company, relink_client):
    params = {"response_type": "code", "client_id": "relink", "redirect_uri": CALLBACK, "scope": "admin:all"}

    response = client.get(reverse("sandbox:oauth_authorize"), params)

    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query) == {"error": ["invalid_scope"]}


# --- Token endpoint (/sandbox/oauth/token) -----------------------------------------------------


def test_a_code_works_once_and_a_replay_revokes_what_it_issued(client, hr_admin, company, relink_client):
    code = _code_from(_consent(client, company))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}

    first = _token(client, form)
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["access_token"] and body["refresh_token"]
    assert "no-store" in first["Cache-Control"]
    assert _bearer(client, "me", body["access_token"]).status_code == 200

    second = _token(client, form)

    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: a replayed code revokes the tokens issued from it.
    assert SandboxOAuthGrant.objects.get().revoked_at is not None
    assert _bearer(client, "me", body["access_token"]).status_code == 401


def test_a_code_is_bound_to_its_redirect_uri(client, hr_admin, company, relink_client):
    code = _code_from(_consent(client, company))

    wrong = _token(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK + "x"})
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"

    right = _token(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK})
    assert right.status_code == 200


def test_an_expired_code_is_refused(client, hr_admin, company, relink_client, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    code = _code_from(_consent(client, company))
    time_machine.shift(timedelta(minutes=5, seconds=1))

    response = _token(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_invalid_client(client, company, relink_client):
    _, refresh_token = SandboxOAuthGrant.create_with_refresh_token(company, relink_client, ["employees:read"])

    response = _token(client, {"grant_type": "refresh_token", "refresh_token": refresh_token}, secret="wrong")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic")


def test_the_client_may_authenticate_with_form_fields(client, company, relink_client):
    _, refresh_token = SandboxOAuthGrant.create_with_refresh_token(company, relink_client, ["employees:read"])
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "relink"}

    assert client.post(reverse("sandbox:oauth_token"), {**form, "client_secret": "nope"}).status_code == 401
    response = client.post(reverse("sandbox:oauth_token"), {**form, "client_secret": client_secret()})

    assert response.status_code == 200
    assert response.json()["refresh_token"] != refresh_token


def test_the_client_secret_follows_the_setting(client, company, settings):
    settings.SANDBOX_OAUTH_CLIENT_SECRET = "configured-secret"
    relink = SandboxOAuthClient.ensure_default()
    _, refresh_token = SandboxOAuthGrant.create_with_refresh_token(company, relink, ["employees:read"])
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}

    assert client_secret() == "configured-secret"
    assert _token(client, form, secret="configured-secret").status_code == 200


def test_an_unsupported_grant_type_is_refused(client, relink_client):
    response = _token(client, {"grant_type": "password", "username": "a", "password": "b"})

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_access_tokens_expire_after_the_configured_minutes(client, company, relink_client, settings, time_machine):
    settings.SANDBOX_OAUTH_ACCESS_TOKEN_MINUTES = 2
    time_machine.move_to(timezone.now(), tick=False)
    access_token = _credentials(company)["access_token"]
    assert _bearer(client, "me", access_token).status_code == 200
    time_machine.shift(timedelta(minutes=2))

    response = _bearer(client, "me", access_token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_ACCESS_TOKEN"


def test_the_api_uses_the_grants_permissions(client, company, relink_client):
    SandboxEmployeeFactory(company=company, salary=50000)
    without_employees = _credentials(company, ["absences:read"])["access_token"]
    without_salary = _credentials(company, ["employees:read"])["access_token"]

    denied = _bearer(client, "employees", without_employees)
    assert denied.status_code == 403
    assert denied.json()["error"]["required_permission"] == "employees:read"

    [row] = _bearer(client, "employees", without_salary).json()["data"]
    assert "salary" not in row


# --- Connected apps on the HR admin's company page -------------------------------------------


def test_the_company_page_lists_connected_apps_and_revoking_stops_their_tokens(
    client, hr_admin, company, relink_client
):
    credentials = _credentials(company, ["employees:read"])
    grant = SandboxOAuthGrant.objects.get()
    page = client.get(reverse("sandbox:company", args=[company.slug])).content.decode()
    assert 'id="connected-apps"' in page
    assert f'id="grant-{grant.pk}"' in page
    assert reverse("sandbox:revoke_grant", args=[company.slug, grant.pk]) in page
    assert credentials["access_token"] not in page and credentials["refresh_token"] not in page

    response = client.post(reverse("sandbox:revoke_grant", args=[company.slug, grant.pk]))

    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.revoked_at is not None
    assert _bearer(client, "me", credentials["access_token"]).status_code == 401
    refresh = _token(client, {"grant_type": "refresh_token", "refresh_token": credentials["refresh_token"]})
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"


def test_revoking_a_grant_needs_a_signed_in_user_and_post(client, company, relink_client):
    _credentials(company)
    grant = SandboxOAuthGrant.objects.get()
    url = reverse("sandbox:revoke_grant", args=[company.slug, grant.pk])

    assert client.post(url)["Location"].startswith(reverse("login"))
    client.force_login(UserFactory())
    assert client.get(url).status_code == 405
    grant.refresh_from_db()
    assert grant.revoked_at is None


def test_a_grant_cannot_be_revoked_through_another_companys_page(client, hr_admin, company, relink_client):
    _credentials(company)
    grant = SandboxOAuthGrant.objects.get()
    other = SandboxCompanyFactory(name="Globex HR")

    response = client.post(reverse("sandbox:revoke_grant", args=[other.slug, grant.pk]))

    assert response.status_code == 404
    grant.refresh_from_db()
    assert grant.revoked_at is None


# --- The `sandbox_oauth` adapter over real HTTP -----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_check_auth_refreshes_an_expired_access_token_and_rotates_the_refresh_token(provider, time_machine):
    time_machine.move_to(timezone.now())
    credentials = _credentials(SandboxCompanyFactory())
    time_machine.shift(timedelta(minutes=11))
    assert _me_status(credentials["access_token"]) == 401

    result = provider.check_auth(credentials)

    assert result.outcome is Outcome.OK
    updated = result.updated_credentials
    assert updated is not None
    assert updated["access_token"] != credentials["access_token"]
    assert updated["refresh_token"] != credentials["refresh_token"]
    assert _me_status(updated["access_token"]) == 200
    old_refresh_token = credentials["refresh_token"]
    with pytest.raises(ProviderAuthFailed):
        SandboxOAuthProvider._token_request({"grant_type": "refresh_token", "refresh_token": old_refresh_token})


@pytest.mark.django_db(transaction=True)
def test_check_auth_refreshes_a_token_about_to_expire(provider):
    credentials = _credentials(SandboxCompanyFactory())
    soon = {**credentials, "expires_at": (timezone.now() + timedelta(seconds=30)).isoformat()}

    result = provider.check_auth(soon)

    assert result.outcome is Outcome.OK
    assert result.updated_credentials["access_token"] != credentials["access_token"]


@pytest.mark.django_db(transaction=True)
def test_check_auth_does_not_refresh_a_fresh_token(provider):
    credentials = _credentials(SandboxCompanyFactory())

    result = provider.check_auth(credentials)

    assert result.outcome is Outcome.OK
    assert result.updated_credentials is None
    assert SandboxAccessToken.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_check_auth_refreshes_once_after_a_401(provider):
    credentials = {**_credentials(SandboxCompanyFactory()), "access_token": "sbxat_not-a-real-token"}

    result = provider.check_auth(credentials)

    assert result.outcome is Outcome.OK
    assert result.updated_credentials["refresh_token"] != credentials["refresh_token"]


@pytest.mark.django_db(transaction=True)
def test_refreshed_credentials_are_stored_encrypted_by_record_auth_check(provider):
    credentials = _expired(_credentials(SandboxCompanyFactory()))
    integration = IntegrationFactory(tool="sandbox_oauth", credentials=credentials)

    result = provider.check_auth(integration.get_credentials())
    record_auth_check(integration.pk, result)

    stored = Integration.objects.get(pk=integration.pk)
    assert stored.get_credentials() == result.updated_credentials
    assert result.updated_credentials["access_token"] not in stored.credentials_encrypted
    assert result.updated_credentials["refresh_token"] not in stored.credentials_encrypted
    assert stored.last_auth_outcome == "OK"
    # The stored credentials work without another refresh.
    assert provider.check_auth(stored.get_credentials()).updated_credentials is None


@pytest.mark.django_db(transaction=True)
def test_after_the_hr_admin_revokes_the_grant_check_auth_fails_with_refresh_refused(client, provider):
    company = SandboxCompanyFactory()
    credentials = _credentials(company)
    grant = SandboxOAuthGrant.objects.get()
    client.force_login(MembershipFactory(environment=company.environment, role=Role.EDITOR).user)
    client.post(reverse("sandbox:revoke_grant", args=[company.slug, grant.pk]))

    result = provider.check_auth(credentials)

    assert result.outcome is Outcome.AUTH_FAILED
    assert result.error_code == "REFRESH_REFUSED"
    assert result.http_status == 400
    assert "invalid_grant" in result.message
    assert result.updated_credentials is None
    assert _me_status(credentials["access_token"]) == 401


@pytest.mark.django_db(transaction=True)
def test_an_old_refresh_token_is_refused_after_rotation(provider):
    credentials = _expired(_credentials(SandboxCompanyFactory()))
    assert provider.check_auth(credentials).outcome is Outcome.OK

    result = provider.check_auth(credentials)

    assert result.outcome is Outcome.AUTH_FAILED
    assert result.error_code == "REFRESH_REFUSED"


@pytest.mark.django_db(transaction=True)
def test_a_refused_code_raises_provider_auth_failed(provider, relink_client):
    with pytest.raises(ProviderAuthFailed) as excinfo:
        provider.exchange_code("sbxac_made-up", CALLBACK)
    assert excinfo.value.http_status == 400


def test_check_auth_reports_an_unreachable_sandbox_as_unavailable(settings, db):
    settings.BASE_URL = "http://127.0.0.1:9"
    credentials = {"access_token": "sbxat_x", "refresh_token": "sbxrt_x", "expires_at": timezone.now().isoformat()}
    provider = get_provider("sandbox_oauth")

    expired = provider.check_auth(credentials)
    fresh = provider.check_auth({**credentials, "expires_at": (timezone.now() + timedelta(hours=1)).isoformat()})

    assert expired.outcome is Outcome.UNAVAILABLE
    assert expired.error_code == "REFRESH_UNAVAILABLE"
    assert fresh.outcome is Outcome.UNAVAILABLE
    assert expired.updated_credentials is None and fresh.updated_credentials is None


@pytest.mark.django_db(transaction=True)
def test_fetch_returns_employees_with_the_grants_permissions(provider):
    company = SandboxCompanyFactory()
    employee = SandboxEmployeeFactory(company=company, first_name="Ada", salary=91000)
    SandboxEmployeeFactory(company=SandboxCompanyFactory(), first_name="Someone else")

    with_salary = provider.fetch("hris_employees", _credentials(company), ["first_name", "salary"])
    only_employees = _credentials(company, ["employees:read"])
    without_salary = provider.fetch("hris_employees", only_employees, ["first_name", "salary"])

    assert with_salary == [{"id": str(employee.pk), "first_name": "Ada", "salary": 91000}]
    assert without_salary == [{"id": str(employee.pk), "first_name": "Ada"}]


@pytest.mark.django_db(transaction=True)
def test_fetch_without_employees_read_raises_model_permission_denied(provider):
    company = SandboxCompanyFactory()
    SandboxEmployeeFactory(company=company)

    with pytest.raises(ModelPermissionDenied) as excinfo:
        provider.fetch("hris_employees", _credentials(company, ["absences:read"]), ["first_name"])

    assert excinfo.value.model == "hris_employees"
    assert excinfo.value.permission == "employees:read"


@pytest.mark.django_db(transaction=True)
def test_fetch_with_a_revoked_grant_raises_provider_auth_failed(provider):
    company = SandboxCompanyFactory()
    credentials = _credentials(company)
    SandboxOAuthGrant.objects.get().revoke()

    with pytest.raises(ProviderAuthFailed) as excinfo:
        provider.fetch("hris_employees", credentials, ["first_name"])
    assert excinfo.value.http_status == 401


@pytest.mark.parametrize(("token_status", "me_status"), [(503, 200), (429, 200), (200, 429), (200, 502)])
def test_provider_side_failures_are_unavailable(monkeypatch, settings, token_status, me_status):
    """429 and 5xx, from the token endpoint or the API, are the provider's problem, not the credentials'."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/sandbox/oauth/token":
            tokens = {"access_token": "sbxat_new", "refresh_token": "sbxrt_new", "expires_in": 600}
            return httpx.Response(token_status, json=tokens if token_status == 200 else {})
        return httpx.Response(me_status, json={"data": {}} if me_status == 200 else {})

    transport = httpx.MockTransport(answer)
    monkeypatch.setattr(
        "integrations.providers.sandbox_oauth.provider_client", lambda **kw: httpx.Client(transport=transport)
    )
    credentials = {"access_token": "sbxat_old", "refresh_token": "sbxrt_old", "expires_at": "2000-01-01T00:00:00+00:00"}

    result = get_provider("sandbox_oauth").check_auth(credentials)

    assert result.outcome is Outcome.UNAVAILABLE
    assert result.http_status in (token_status, me_status)
    if token_status == 200:
        # The refresh rotated the tokens: they must be kept even though the check was unavailable.
        assert result.updated_credentials["refresh_token"] == "sbxrt_new"
    else:
        assert result.error_code == "REFRESH_UNAVAILABLE"
        assert result.updated_credentials is None


def test_the_consent_page_grants_only_companies_the_hr_admin_may_change(client, company, relink_client):
    """A viewer of the company's environment, or a member of another one, cannot hand an app access to it."""
    viewer = UserFactory()
    MembershipFactory(environment=company.environment, user=viewer, role=Role.VIEWER)
    client.force_login(viewer)
    url = SandboxOAuthProvider.authorize_url(CALLBACK, "s")
    page = client.get(url[url.index("/sandbox/") :])
    assert page.status_code == 200 and company.name not in page.content.decode()
    form = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}  # a hand-made POST
    refused = client.post("/sandbox/oauth/authorize", {**form, "company": company.slug, "decision": "allow"})
    assert refused.status_code == 200, refused.content.decode()
    assert "Choose the company to connect." in refused.content.decode()
    assert not SandboxAuthorizationCode.objects.exists()
