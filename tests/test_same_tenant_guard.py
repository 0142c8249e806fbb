"""The same-tenant guard: every adapter names the upstream account its credentials reach, the
connect flow records it at the first connection, and a reconnect whose credentials reach another
company's account is refused (in the link's language, `connection-flow-failed` with
ACCOUNT_MISMATCH, nothing changed) unless the operator allowed a change of account on the link.
OAuth grants Relink stops using are revoked at the tool.

Each tool serves two companies: "acme", the account connected before, and "globex". Credentials
"a" and "a2" reach acme (the old credential and a new one), "b" reaches globex. Personio, BambooHR
and HiBob are local fake servers answering like their documented APIs; Sandbox HR is reached over
real HTTP (live_server), so these tests use transactional databases.
"""

from __future__ import annotations

import base64
import io
import re
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from connect_flow import links
from connect_flow.models import ConnectionLink, LinkStatus
from dashboard.health import describe_event
from integrations import syncs
from integrations.health import record_auth_check
from integrations.models import ApiKey, AuditEvent, Integration, RequestLog, Role, WebhookDelivery
from integrations.providers import Outcome, UpstreamAccount, get_provider
from integrations.providers.base import AuthResult, ProviderUnavailable
from integrations.providers.sandbox_oauth import SandboxOAuthProvider, client_secret
from sandbox import demo
from sandbox.models import (
    ALL_PERMISSIONS,
    SandboxAccessToken,
    SandboxCompany,
    SandboxOAuthClient,
    SandboxOAuthGrant,
)

from . import factories
from .fake_hr import FakeHRServer, RecordedRequest, Route, closed_port_url, fake_hr_fixture, load_fixture  # noqa: F401

LANGUAGES = ["en", "de", "fr", "it", "es"]
REFUSED = {
    "en": "These credentials belong to a different company account than the one connected before. Nothing was changed.",
    "de": "Diese Zugangsdaten gehören zu einem anderen Unternehmenskonto als dem, das zuvor verbunden war. Es wurde "
    "nichts geändert.",
    "fr": "Ces identifiants appartiennent à un autre compte d’entreprise que celui connecté auparavant. Rien n’a été "
    "modifié.",
    "it": "Queste credenziali appartengono a un account aziendale diverso da quello collegato in precedenza. Non è "
    "stato modificato nulla.",
    "es": "Estas credenciales pertenecen a una cuenta de empresa distinta de la que se conectó antes. No se ha "
    "cambiado nada.",
}
SUCCESS = "Connection successful"
FORM_TOKEN_RE = re.compile(r'name="form_token" value="([^"]+)"')
HIDDEN_INPUT_RE = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')
HTMX = {"HX-Request": "true"}
TOOLS = ["sandbox", "sandbox_oauth", "personio", "bamboohr", "hibob"]


@pytest.fixture(scope="module", autouse=True)
def compiled_catalogs(django_db_blocker):
    """Build the .mo files (git-ignored), then make Django reload its catalogs."""
    with django_db_blocker.unblock():
        call_command("compile_catalogs", verbosity=0)
    with override_settings(LOCALE_PATHS=list(django_settings.LOCALE_PATHS)):
        pass


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    monkeypatch.setattr(syncs, "_enqueue", lambda ids, **kwargs: None)


def _basic(request: RecordedRequest) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password


def _basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _bearer(request: RecordedRequest) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value if scheme.lower() == "bearer" else ""


# --- The tools, each serving two companies ---------------------------------------------------------


class World:
    """One tool with two companies. `credentials(who)` are what the customer enters (or, for
    OAuth, the company they consent for); `account(who)` the account the adapter reports."""

    tool = ""
    oauth = False
    old_credentials: dict[str, Any] = {}

    def credentials(self, who: str) -> dict[str, str]:
        raise NotImplementedError

    def account(self, who: str) -> str:
        raise NotImplementedError


class PersonioWorld(World):
    """`POST /auth` exchanges a client per company for that company's token; employee ids are
    unique across Personio, so `GET /company/employees/{id}` of another company's employee is 404."""

    tool = "personio"
    CLIENTS = {
        "a": ("papi-acme-1", "secret-acme-1", "acme"),
        "a2": ("papi-acme-2", "secret-acme-2", "acme"),
        "b": ("papi-globex", "secret-globex", "globex"),
    }
    EMPLOYEES = {"acme": [101, 102], "globex": [201]}
    old_credentials = {"client_id": "papi-acme-old", "client_secret": "secret-acme-old"}

    def serve(self, fake: FakeHRServer, settings) -> None:
        settings.PERSONIO_BASE_URL = fake.url + "/v1"
        fake.respond("POST", "/v1/auth", self._auth)
        fake.respond("GET", "/v1/company/employees", self._employees)
        for ids in self.EMPLOYEES.values():
            for n in ids:
                fake.respond("GET", f"/v1/company/employees/{n}", self._employee)

    def credentials(self, who: str) -> dict[str, str]:
        client_id, secret, _ = self.CLIENTS[who]
        return {"client_id": client_id, "client_secret": secret}

    def account(self, who: str) -> str:
        return f"employee:{self.EMPLOYEES[self.CLIENTS[who][2]][0]}"

    def _company(self, request: RecordedRequest) -> str | None:
        return _bearer(request).removeprefix("papi-token-") or None

    def _auth(self, request: RecordedRequest) -> Route:
        body = request.json() or {}
        for client_id, secret, company in self.CLIENTS.values():
            if (body.get("client_id"), body.get("client_secret")) == (client_id, secret):
                return Route(json={"success": True, "data": {"token": f"papi-token-{company}"}})
        return Route(401, load_fixture("personio", "auth_invalid"))

    @staticmethod
    def _record(n: int) -> dict[str, Any]:
        attributes = {
            "id": {"label": "ID", "value": n, "type": "integer"},
            "first_name": {"label": "First name", "value": f"First{n}", "type": "standard"},
            "last_name": {"label": "Last name", "value": f"Last{n}", "type": "standard"},
            "email": {"label": "Email", "value": f"e{n}@example.test", "type": "standard"},
            "fix_salary": {"label": "Fix salary", "value": 4000 + n, "type": "decimal"},
        }
        return {"type": "Employee", "attributes": attributes}

    def _employees(self, request: RecordedRequest) -> Route:
        company = self._company(request)
        if company not in self.EMPLOYEES:
            return Route(401, {"success": False, "error": {"code": 0, "message": "Unauthorized"}})
        limit, offset = int(request.query.get("limit", ["200"])[0]), int(request.query.get("offset", ["0"])[0])
        ids = self.EMPLOYEES[company][offset : offset + limit]
        return Route(json={"success": True, "data": [self._record(n) for n in ids]})

    def _employee(self, request: RecordedRequest) -> Route:
        company = self._company(request)
        if company not in self.EMPLOYEES:
            return Route(401, {"success": False, "error": {"code": 0, "message": "Unauthorized"}})
        n = int(request.path.rsplit("/", 1)[1])
        if n not in self.EMPLOYEES[company]:
            return Route(404, {"success": False, "error": {"code": 404, "message": "Employee not found"}})
        return Route(json={"success": True, "data": self._record(n)})


class BambooHRWorld(World):
    """A key works at its own company's subdomain only; another company's key there is a 401."""

    tool = "bamboohr"
    CREDENTIALS = {
        "a": {"company_domain": "acme", "api_key": "bamboo-acme-1"},
        "a2": {"company_domain": "acme", "api_key": "bamboo-acme-2"},
        "b": {"company_domain": "globex", "api_key": "bamboo-globex"},
    }
    old_credentials = {"company_domain": "acme", "api_key": "bamboo-acme-old"}

    def serve(self, fake: FakeHRServer, settings) -> None:
        settings.BAMBOOHR_BASE_URL = fake.url + "/api/gateway.php"
        for domain in ("acme", "globex"):
            fake.respond("GET", f"/api/gateway.php/{domain}/v1/meta/fields", self._fields)
            fake.respond("POST", f"/api/gateway.php/{domain}/v1/reports/custom", self._report)

    def credentials(self, who: str) -> dict[str, str]:
        return dict(self.CREDENTIALS[who])

    def account(self, who: str) -> str:
        return self.CREDENTIALS[who]["company_domain"]

    def _authorized(self, request: RecordedRequest) -> str | None:
        domain, (key, _) = request.path.split("/")[3], _basic(request)
        ok = any(c == {"company_domain": domain, "api_key": key} for c in self.CREDENTIALS.values())
        return domain if ok else None

    def _fields(self, request: RecordedRequest) -> Route:
        if self._authorized(request) is None:
            return Route(401, None, headers={"X-BambooHR-Error-Message": "Invalid API key"})
        return Route(json=load_fixture("bamboohr", "meta_fields"))

    def _report(self, request: RecordedRequest) -> Route:
        domain = self._authorized(request)
        if domain is None:
            return Route(401, None, headers={"X-BambooHR-Error-Message": "Invalid API key"})
        employee = {
            "id": "1",
            "firstName": "Jo",
            "lastName": domain.title(),
            "workEmail": f"jo@{domain}.test",
            "payRate": "1.00 USD",
        }
        return Route(json={"title": "Report", "fields": [], "employees": [employee]})


class HiBobWorld(World):
    """Service users of two Bob companies; every employee record carries its company's `companyId`."""

    tool = "hibob"
    USERS = {
        "a": ("SERVICE-ACME-1", "bob-acme-1", "acme"),
        "a2": ("SERVICE-ACME-2", "bob-acme-2", "acme"),
        "b": ("SERVICE-GLOBEX", "bob-globex", "globex"),
    }
    COMPANY_IDS = {"acme": 638382, "globex": 771001}
    old_credentials = {"service_user_id": "SERVICE-ACME-OLD", "service_user_token": "bob-acme-old"}

    def serve(self, fake: FakeHRServer, settings) -> None:
        settings.HIBOB_BASE_URL = fake.url + "/v1"
        fake.respond("GET", "/v1/company/people/fields", self._fields)
        fake.respond("POST", "/v1/people/search", self._search)

    def credentials(self, who: str) -> dict[str, str]:
        user, token, _ = self.USERS[who]
        return {"service_user_id": user, "service_user_token": token}

    def account(self, who: str) -> str:
        return str(self.COMPANY_IDS[self.USERS[who][2]])

    def _company(self, request: RecordedRequest) -> str | None:
        return next((c for u, t, c in self.USERS.values() if (u, t) == _basic(request)), None)

    def _fields(self, request: RecordedRequest) -> Route:
        if self._company(request) is None:
            return Route(401, load_fixture("hibob", "unauthorized"))
        return Route(json=load_fixture("hibob", "people_fields"))

    def _search(self, request: RecordedRequest) -> Route:
        company = self._company(request)
        if company is None:
            return Route(401, load_fixture("hibob", "unauthorized"))
        employee = {
            "id": f"{company}-1",
            "companyId": self.COMPANY_IDS[company],
            "firstName": "Ava",
            "surname": company.title(),
            "email": f"ava@{company}.test",
            "payroll": {"salary": {"payment": "1 EUR"}},
        }
        return Route(json={"employees": [employee]})


class SandboxWorld(World):
    """Two Sandbox HR companies, one HR admin who may consent for both."""

    tool = "sandbox"

    def serve(self, live_server, settings) -> None:
        settings.BASE_URL = live_server.url
        hr = factories.EnvironmentFactory(slug="hr-systems", name="HR systems")
        self.companies = {
            "acme": factories.SandboxCompanyFactory(name="Acme HR", environment=hr),
            "globex": factories.SandboxCompanyFactory(name="Globex HR", environment=hr),
        }
        for company in self.companies.values():
            factories.SandboxEmployeeFactory(company=company)
        self.keys = {who: self.company(who).create_key(who)[1] for who in ("a", "a2", "b")}
        self.old_credentials = {"api_key": "sbx_revoked_long_ago"}
        self.hr_admin = Client()
        self.hr_admin.force_login(factories.member(hr, Role.EDITOR, "hr@acme.test"))

    def company(self, who: str) -> SandboxCompany:
        return self.companies["globex" if who == "b" else "acme"]

    def credentials(self, who: str) -> dict[str, str]:
        return {"api_key": self.keys[who]}

    def account(self, who: str) -> str:
        return self.company(who).account_id


class SandboxOAuthWorld(SandboxWorld):
    """The customer consents for acme or globex; the integration holds a real grant of acme."""

    tool = "sandbox_oauth"
    oauth = True

    def serve(self, live_server, settings) -> None:
        super().serve(live_server, settings)
        client = SandboxOAuthClient.ensure_default()
        self.old_grant, refresh_token = SandboxOAuthGrant.create_with_refresh_token(
            self.company("a"), client, ALL_PERMISSIONS
        )
        _, access_token = self.old_grant.issue_access_token()
        expired = (timezone.now() - timedelta(minutes=5)).isoformat()
        self.old_credentials = {"access_token": access_token, "refresh_token": refresh_token, "expires_at": expired}

    def new_grants(self) -> list[SandboxOAuthGrant]:
        return list(SandboxOAuthGrant.objects.exclude(pk=self.old_grant.pk).select_related("company"))


WORLDS = {
    "sandbox": SandboxWorld,
    "sandbox_oauth": SandboxOAuthWorld,
    "personio": PersonioWorld,
    "bamboohr": BambooHRWorld,
    "hibob": HiBobWorld,
}


def _world(request, name: str, settings) -> World:
    world = WORLDS[name]()
    if isinstance(world, SandboxWorld):
        world.serve(request.getfixturevalue("live_server"), settings)
    else:
        world.serve(request.getfixturevalue("fake_hr"), settings)
    return world


@pytest.fixture(params=TOOLS)
def world(request, settings) -> World:
    return _world(request, request.param, settings)


# --- The customer's side ----------------------------------------------------------------------------


def _path(created: links.CreatedLink) -> str:
    return f"/connect/{created.token}/"


def _form_token(response) -> str:
    match = FORM_TOKEN_RE.search(response.content.decode())
    assert match, response.content.decode()
    return unescape(match.group(1))


def _text(response) -> str:
    return unescape(response.content.decode())


def connect(world: World, created: links.CreatedLink, who: str):
    """The customer's attempt with `who`'s credentials (or consent for `who`'s company), as a
    browser without cookies would make it: the response the customer ends on."""
    customer = Client(enforce_csrf_checks=True)
    page = customer.get(_path(created))
    assert page.status_code == 200, page.content.decode()
    form = {"form_token": _form_token(page), "tool": world.tool}
    if not isinstance(world, SandboxOAuthWorld):
        return customer.post(_path(created), {**form, **world.credentials(who)})
    start = customer.post(_path(created), form)
    assert start.status_code == 302, start.content.decode()
    authorize = start["Location"]
    consent_page = world.hr_admin.get(authorize[authorize.index("/sandbox/") :])
    hidden = {name: unescape(value) for name, value in HIDDEN_INPUT_RE.findall(consent_page.content.decode())}
    consent = world.hr_admin.post(
        "/sandbox/oauth/authorize", {**hidden, "company": world.company(who).slug, "decision": "allow"}
    )
    callback = urlsplit(consent["Location"])
    return customer.get(f"{callback.path}?{callback.query}")


def connected(world: World, environment, **fields) -> Integration:
    """An integration paused for three days, connected to acme (recorded) with old credentials."""
    now = timezone.now()
    defaults = {
        "environment": environment,
        "tool": world.tool,
        "end_user_organization_name": "Acme GmbH",
        "credentials": world.old_credentials,
        "state": "INVALID",
        "invalid_since": now,
        "auth_failing_since": now - timedelta(days=3),
        "upstream_account": world.account("a"),
        "upstream_account_label": "Acme",
    }
    return factories.IntegrationFactory(**{**defaults, **fields})


def snapshot(integration: Integration) -> tuple:
    fresh = Integration.objects.get(pk=integration.pk)
    return (
        fresh.get_credentials(),
        fresh.state,
        fresh.scope_config_id,
        fresh.invalid_since,
        fresh.auth_failing_since,
        fresh.opted_out_fields,
        fresh.upstream_account,
        fresh.upstream_account_label,
        fresh.data_expired_at,
        fresh.next_sync_at,
    )


# --- Refused ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", LANGUAGES)
def test_another_companys_credentials_are_refused_in_the_links_language_and_change_nothing(
    world, environment, language, viewer
):
    factories.WebhookEndpointFactory(environment=environment, url=closed_port_url() + "/hooks")
    new_scope = factories.ScopeConfigFactory(environment=environment)
    integration = connected(world, environment)
    created = links.create_relink_link(integration, language=language, link_type="MAGIC_LINK", scope_config=new_scope)
    before = snapshot(integration)

    response = connect(world, created, "b")

    body = _text(response)
    assert response.status_code == 400, body
    assert response["Content-Language"] == language
    assert REFUSED[language] in body
    assert SUCCESS not in body
    assert snapshot(integration) == before, "nothing changed: credentials, state, scope config, account"
    link = ConnectionLink.objects.get(pk=created.link.pk)
    assert link.completed_at is None and link.status == LinkStatus.OPENED, "the link stays usable"
    assert not integration.syncs.exists()

    log = RequestLog.objects.get(error_code="ACCOUNT_MISMATCH")
    assert (log.integration_id, log.status_code) == (integration.pk, 400)
    assert log.response_body["error_code"] == "ACCOUNT_MISMATCH"
    assert log.response_body["account"]["id"] == world.account("b")  # the account reached instead
    # The webhook is exactly the reference's; why is for the operator, at its log_url.
    data = WebhookDelivery.objects.get(event_type="connection-flow-failed").payload["data"]
    assert set(data) == {"integration_tool", "integration_category", "end_user", "log_url"}
    assert data["integration_tool"] == world.tool
    assert urlsplit(data["log_url"]).path == f"/env/{environment.slug}/logs/{log.pk}/"
    operator = Client()
    operator.force_login(viewer)
    page = operator.get(urlsplit(data["log_url"]).path)
    assert page.status_code == 200 and "<code>ACCOUNT_MISMATCH</code>" in page.content.decode()
    failed = AuditEvent.objects.get(action="link.attempt_failed", integration_id=integration.pk)
    assert failed.details["error_code"] == "ACCOUNT_MISMATCH"
    assert failed.details["account"] == world.account("b")
    assert "attempt rejected: account mismatch (the credentials reach" in describe_event(failed)
    assert not AuditEvent.objects.filter(action="integration.account_changed").exists()

    if isinstance(world, SandboxOAuthWorld):
        # The grant the refused attempt obtained is revoked; the one the integration holds is not.
        (globex_grant,) = world.new_grants()
        assert globex_grant.company == world.company("b") and globex_grant.revoked_at is not None
        world.old_grant.refresh_from_db()
        assert world.old_grant.revoked_at is None
        assert AuditEvent.objects.filter(action="integration.grant_revoked", integration_id=integration.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_after_a_refusal_the_same_companys_new_credentials_reconnect(world, environment):
    integration = connected(world, environment)
    created = links.create_relink_link(integration, link_type="MAGIC_LINK")

    assert connect(world, created, "b").status_code == 400
    response = connect(world, created, "a2")

    assert response.status_code == 200, _text(response)
    assert SUCCESS in _text(response)
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "ACTIVE"
    assert fresh.get_credentials() != world.old_credentials
    assert fresh.upstream_account == world.account("a")
    assert ConnectionLink.objects.get(pk=created.link.pk).completed_at is not None
    assert not AuditEvent.objects.filter(action="integration.account_changed").exists()


@pytest.mark.django_db(transaction=True)
def test_another_company_is_accepted_when_the_operator_allowed_a_change_of_account(world, environment, editor):
    integration = connected(world, environment)
    created = links.create_relink_link(integration, link_type="MAGIC_LINK", user=editor, allow_account_change=True)

    response = connect(world, created, "b")

    assert response.status_code == 200, _text(response)
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "ACTIVE"
    assert fresh.upstream_account == world.account("b")
    assert fresh.upstream_account_label
    made = AuditEvent.objects.get(action="link.created", details__link_id=created.link.pk)
    assert made.actor_user == editor and made.details["allow_account_change"] is True
    changed = AuditEvent.objects.get(action="integration.account_changed", integration_id=integration.pk)
    assert (changed.details["from"], changed.details["to"]) == (world.account("a"), world.account("b"))
    assert changed.details["link_id"] == created.link.pk
    assert describe_event(changed).startswith("Company account changed: Acme (")


@pytest.mark.django_db(transaction=True)
def test_an_integration_without_a_recorded_account_is_never_refused_and_records_it(world, environment):
    integration = connected(world, environment, upstream_account="", upstream_account_label="")
    created = links.create_relink_link(integration, link_type="MAGIC_LINK")

    response = connect(world, created, "b")

    assert response.status_code == 200, _text(response)
    assert Integration.objects.get(pk=integration.pk).upstream_account == world.account("b")


@pytest.mark.django_db(transaction=True)
def test_the_first_connection_records_the_account(world, environment):
    created = links.create_connect_link(
        environment, end_user_email="hr@acme.test", end_user_organization_name="Acme GmbH", tool=world.tool
    )

    response = connect(world, created, "a")

    assert response.status_code == 200, _text(response)
    integration = Integration.objects.get(end_user_organization_name="Acme GmbH")
    assert integration.upstream_account == world.account("a")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["bamboohr", "hibob"])
def test_the_account_is_refused_before_any_data_is_read(request, settings, environment, name):
    world = _world(request, name, settings)
    fake: FakeHRServer = request.getfixturevalue("fake_hr")
    created = links.create_relink_link(connected(world, environment))

    assert connect(world, created, "b").status_code == 400

    assert not fake.requests_to("/api/gateway.php/globex/v1/reports/custom")
    searches = [r.json()["fields"] for r in fake.requests_to("/v1/people/search")]
    assert searches == ([["root.id", "root.companyId"]] if name == "hibob" else [])


@pytest.mark.django_db
def test_a_completion_refuses_an_account_recorded_meanwhile(environment):
    """Two attempts verified while nothing was recorded: the first records its account, the
    second, reaching another one, is refused under the integration's lock."""
    integration = factories.IntegrationFactory(environment=environment, credentials={"api_key": "old"})
    first, second = links.create_relink_link(integration), links.create_relink_link(integration)
    links.complete(first.link.pk, credentials={"api_key": "a"}, opted_out_fields=[], account=UpstreamAccount("A"))
    before = snapshot(integration)

    with pytest.raises(links.AccountMismatch):
        links.complete(second.link.pk, credentials={"api_key": "b"}, opted_out_fields=[], account=UpstreamAccount("B"))

    assert snapshot(integration) == before
    assert ConnectionLink.objects.get(pk=second.link.pk).completed_at is None


@pytest.mark.django_db(transaction=True)
def test_the_demo_customer_moving_tenants_is_refused_the_new_tenants_key_in_spanish(live_server, settings):
    """The reported case: a Spanish magic link for an INVALID integration accepted another company's
    key ("Conexión realizada"). In the demo, cust-004's own new key reconnects it; the key of the
    tenant it is moving to does only through a link that allows a change of account."""
    settings.BASE_URL = live_server.url
    call_command("seed_demo", stdout=io.StringIO())
    integration = Integration.objects.get(end_user_origin_id=demo.MIGRATING_ORIGIN_ID)
    company = SandboxCompany.objects.get(name=integration.end_user_organization_name)
    assert integration.state == "INVALID" and integration.upstream_account == company.account_id
    sandbox = SandboxWorld()
    created = links.create_relink_link(integration, language="es", link_type="MAGIC_LINK")

    sandbox.keys = {"b": demo.NEW_TENANT_KEY, "a2": demo.SAME_COMPANY_KEY}
    refused = connect(sandbox, created, "b")
    assert refused.status_code == 400
    assert REFUSED["es"] in _text(refused) and "Conexión realizada" not in _text(refused)
    assert Integration.objects.get(pk=integration.pk).state == "INVALID"
    done = connect(sandbox, created, "a2")
    assert "Conexión realizada" in _text(done)
    assert Integration.objects.get(pk=integration.pk).state == "ACTIVE"

    allowing = links.create_relink_link(integration, language="es", allow_account_change=True)
    assert "Conexión realizada" in _text(connect(sandbox, allowing, "b"))
    tenant = SandboxCompany.objects.get(name=f"{company.name} (new tenant)")
    assert Integration.objects.get(pk=integration.pk).upstream_account == tenant.account_id
    assert "nothing created" in _seed_again()


def _seed_again() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


# --- OAuth grants ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("allowed", [False, True], ids=["same company", "another company, allowed"])
def test_a_completed_oauth_reconnect_revokes_the_grant_it_replaced(request, settings, environment, allowed):
    world = _world(request, "sandbox_oauth", settings)
    assert isinstance(world, SandboxOAuthWorld)
    integration = connected(world, environment)
    old = world.old_credentials
    assert SandboxAccessToken.objects.find_valid(old["access_token"]), "the old grant works until then"
    created = links.create_relink_link(integration, allow_account_change=allowed)

    response = connect(world, created, "b" if allowed else "a2")

    assert response.status_code == 200, _text(response)
    world.old_grant.refresh_from_db()
    assert world.old_grant.revoked_at is not None
    refused = get_provider("sandbox_oauth").check_auth({**old, "expires_at": ""})
    assert (refused.outcome, refused.error_code) == (Outcome.AUTH_FAILED, "REFRESH_REFUSED")
    assert not SandboxAccessToken.objects.find_valid(old["access_token"])
    (new_grant,) = world.new_grants()
    assert new_grant.revoked_at is None
    fresh = Integration.objects.get(pk=integration.pk).get_credentials()
    assert get_provider("sandbox_oauth").check_auth(fresh).outcome is Outcome.OK
    revoked = AuditEvent.objects.get(action="integration.grant_revoked", integration_id=integration.pk)
    assert revoked.details["reason"] == "replaced by a reconnect"
    assert revoked.actor_label == "system"


@pytest.mark.django_db
def test_a_grant_the_tool_cannot_revoke_is_forgotten_and_audited(environment):
    class NoRevocation(SandboxOAuthProvider):
        @classmethod
        def revoke_grant(cls, credentials: dict[str, Any]) -> bool:
            return False

    integration = factories.IntegrationFactory(environment=environment, tool="sandbox_oauth")
    created = links.create_relink_link(integration)

    assert links.revoke_unused_grant(NoRevocation(), {"refresh_token": "x"}, created.link, "replaced") is False
    assert AuditEvent.objects.filter(action="integration.grant_forgotten", integration_id=integration.pk).exists()


@pytest.mark.django_db
def test_the_sandbox_revocation_endpoint_follows_rfc_7009(client):
    company = factories.SandboxCompanyFactory(name="Revoking HR")
    relink = SandboxOAuthClient.ensure_default()
    grant, refresh_token = SandboxOAuthGrant.create_with_refresh_token(company, relink, ALL_PERMISSIONS)
    _, access_token = grant.issue_access_token()
    other, other_refresh = SandboxOAuthGrant.create_with_refresh_token(company, relink, ALL_PERMISSIONS)
    _, other_access = other.issue_access_token()
    auth = {"headers": {"Authorization": _basic_header("relink", client_secret())}}
    url = reverse("sandbox:oauth_revoke")

    wrong = client.post(url, {"token": refresh_token}, headers={"Authorization": _basic_header("relink", "wrong")})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert client.post(url, {}, **auth).json()["error"] == "invalid_request"
    assert client.post(url, {"token": "sbxrt_unknown"}, **auth).status_code == 200  # §2.2: no error for the unknown

    # An access token ends that token only.
    assert client.post(url, {"token": other_access, "token_type_hint": "access_token"}, **auth).status_code == 200
    assert SandboxAccessToken.objects.find_valid(other_access) is None
    other.refresh_from_db()
    assert other.revoked_at is None

    # A refresh token ends its grant and every access token it issued, whatever the hint says.
    response = client.post(url, {"token": refresh_token, "token_type_hint": "access_token"}, **auth)
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    grant.refresh_from_db()
    assert grant.revoked_at is not None
    assert SandboxAccessToken.objects.find_valid(access_token) is None
    assert client.post(url, {"token": refresh_token}, **auth).status_code == 200  # again: still fine
    assert other_refresh  # untouched


# --- What each adapter names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["personio", "bamboohr", "hibob"])
def test_each_fake_server_adapter_names_a_different_account_per_company(request, settings, name):
    world = _world(request, name, settings)
    provider = get_provider(world.tool)
    accounts = {}
    for who in ("a", "a2", "b"):
        checked = provider.check_auth(world.credentials(who))
        assert checked.outcome is Outcome.OK
        accounts[who] = provider.account_of(world.credentials(who), checked)
    assert accounts["a"] == accounts["a2"] != accounts["b"]
    assert accounts["a"].id == world.account("a") and accounts["b"].id == world.account("b")
    assert all(a.label for a in accounts.values())


def test_personio_reads_the_account_from_the_auth_check_and_looks_up_a_recorded_employee(request, settings):
    world = _world(request, "personio", settings)
    fake: FakeHRServer = request.getfixturevalue("fake_hr")
    personio = get_provider("personio")

    checked = personio.check_auth(world.credentials("a"))
    assert checked.account == UpstreamAccount("employee:101", "Personio account of employee #101")
    assert [r.path for r in fake.requests] == ["/v1/auth", "/v1/company/employees"]  # no extra request

    # Another first employee, same account: the recorded employee is still readable.
    assert personio.same_account("employee:102", checked.account, world.credentials("a"))
    # Another account's credentials cannot read the recorded employee (404).
    assert not personio.same_account("employee:201", checked.account, world.credentials("a"))
    assert not personio.same_account("not-an-employee", checked.account, world.credentials("a"))
    fake.route("GET", "/v1/company/employees/102", status=503, json={"success": False})
    with pytest.raises(ProviderUnavailable):
        personio.same_account("employee:102", checked.account, world.credentials("a"))


def test_personio_without_employee_access_names_no_account(request, settings):
    world = _world(request, "personio", settings)
    fake: FakeHRServer = request.getfixturevalue("fake_hr")
    fake.route("GET", "/v1/company/employees", status=403, json=load_fixture("personio", "forbidden"))

    checked = get_provider("personio").check_auth(world.credentials("a"))

    assert checked.outcome is Outcome.OK and checked.account is None


def test_bamboohr_names_the_normalized_subdomain_and_refuses_another_companys_key(request, settings):
    world = _world(request, "bamboohr", settings)
    bamboohr = get_provider("bamboohr")

    pasted = {**world.credentials("a"), "company_domain": "https://Acme.bamboohr.com/home"}
    assert bamboohr.check_auth(pasted).account == UpstreamAccount("acme", "acme.bamboohr.com")
    foreign = {**world.credentials("b"), "company_domain": "acme"}
    checked = bamboohr.check_auth(foreign)
    assert checked.outcome is Outcome.AUTH_FAILED and checked.account is None


def test_hibob_asks_people_search_for_the_company_id_only(request, settings):
    world = _world(request, "hibob", settings)
    fake: FakeHRServer = request.getfixturevalue("fake_hr")
    hibob = get_provider("hibob")

    checked = hibob.check_auth(world.credentials("a"))
    assert checked.account is None  # the fields endpoint names no company: account_of asks
    assert hibob.account_of(world.credentials("a"), checked) == UpstreamAccount("638382", "HiBob company 638382")
    (search,) = fake.requests_to("/v1/people/search")
    assert search.json() == {"fields": ["root.id", "root.companyId"], "showInactive": False}

    fake.route("POST", "/v1/people/search", status=403, json=load_fixture("hibob", "forbidden"))
    assert hibob.account_of(world.credentials("a"), checked) is None


@pytest.mark.django_db
def test_the_sandbox_me_endpoint_names_the_company_by_a_stable_id(client):
    company = factories.SandboxCompanyFactory(name="Initech HR")
    _, raw = company.create_key()

    data = client.get("/sandbox/api/v1/me", headers={"Authorization": f"Bearer {raw}"}).json()["data"]

    assert (data["company_id"], data["company"]) == (company.account_id, "Initech HR")
    assert data["company_id"] == f"sbxco_{company.pk}"


@pytest.mark.django_db
def test_an_ok_auth_check_records_the_account_of_an_integration_connected_before(environment):
    legacy = factories.IntegrationFactory(environment=environment)
    recorded = factories.IntegrationFactory(environment=environment, upstream_account="sbxco_1")
    account = UpstreamAccount("sbxco_2", "Globex HR")

    record_auth_check(legacy.pk, AuthResult(Outcome.AUTH_FAILED, 401))
    assert Integration.objects.get(pk=legacy.pk).upstream_account == ""
    for integration in (legacy, recorded):
        record_auth_check(integration.pk, AuthResult(Outcome.OK, 200, account=account))

    fresh = Integration.objects.get(pk=legacy.pk)
    assert (fresh.upstream_account, fresh.upstream_account_label) == ("sbxco_2", "Globex HR")
    assert Integration.objects.get(pk=recorded.pk).upstream_account == "sbxco_1", "a check never changes it"


# --- The operator's side -----------------------------------------------------------------------------


def _relink_url(name: str, integration: Integration) -> str:
    return reverse(f"dashboard:{name}", kwargs={"env": integration.environment.slug, "integration_id": integration.pk})


def _create(client: Client, integration: Integration, htmx: bool = False, **data):
    data = {"scope_config": "", "link_type": "MAGIC_LINK", "language": "es", **data}
    return client.post(_relink_url("relink_create", integration), data, headers=HTMX if htmx else {})


@pytest.mark.django_db
def test_the_relink_form_offers_the_allowance_off_and_explained(client, editor, environment):
    integration = factories.IntegrationFactory(
        environment=environment, upstream_account="sbxco_7", upstream_account_label="Initech HR"
    )
    client.force_login(editor)

    body = client.get(_relink_url("integration", integration)).content.decode()

    checkbox = re.search(r'<input type="checkbox" id="relink-allow-account"[^>]*>', body)
    assert checkbox and 'name="allow_account_change" value="1"' in checkbox.group(0)
    assert "checked" not in checkbox.group(0)
    assert "Allow a different company account" in body
    assert "than the one connected (Initech HR) are refused" in body
    assert "Initech HR <code>sbxco_7</code>" in body  # the recorded account, in the end user card


@pytest.mark.django_db
def test_a_plain_post_creates_an_allowing_link_audited_and_shown_on_its_row(client, editor, environment):
    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(editor)

    created = _create(client, integration, allow_account_change="1")
    assert created.status_code == 302
    page = client.get(created["Location"]).content.decode()

    link = ConnectionLink.objects.get()
    assert link.allow_account_change is True
    event = AuditEvent.objects.get(action="link.created", details__link_id=link.pk)
    assert event.details["allow_account_change"] is True and event.actor_user == editor
    assert describe_event(event) == "Created a magic reconnection link, allowing a different company account"
    assert "Allows a different company account" in page
    row = re.search(rf'<tr id="link-{link.pk}">.*?</tr>', page, re.S)
    assert row and "account change allowed" in row.group(0)
    checkbox = re.search(r'<input type="checkbox" id="relink-allow-account"[^>]*>', page)
    assert checkbox and "checked" not in checkbox.group(0), "the next link starts off again"


@pytest.mark.django_db
def test_an_htmx_post_creates_an_allowing_link_and_resets_the_checkbox(client, editor, environment):
    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(editor)

    response = _create(client, integration, htmx=True, allow_account_change="1")

    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<div id="relink-create">')
    assert "linksChanged" in response["HX-Trigger"]
    assert "Allows a different company account" in body
    checkbox = re.search(r'<input type="checkbox" id="relink-allow-account"[^>]*>', body)
    assert checkbox and "checked" not in checkbox.group(0)
    link = ConnectionLink.objects.get()
    assert link.allow_account_change is True
    assert AuditEvent.objects.get(action="link.created").details["allow_account_change"] is True
    rows = client.get(_relink_url("relink_links", integration), headers=HTMX).content.decode()
    assert "account change allowed" in rows


@pytest.mark.django_db
@pytest.mark.parametrize("htmx", [False, True])
def test_without_the_checkbox_a_link_allows_no_change_of_account(client, editor, environment, htmx):
    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(editor)

    _create(client, integration, htmx=htmx)

    link = ConnectionLink.objects.get()
    assert link.allow_account_change is False
    assert "allow_account_change" not in AuditEvent.objects.get(action="link.created").details
    rows = client.get(_relink_url("relink_links", integration), headers=HTMX).content.decode()
    assert "account change allowed" not in rows


@pytest.mark.django_db
def test_a_viewer_cannot_create_an_allowing_link(client, viewer, environment):
    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(viewer)

    assert _create(client, integration, allow_account_change="1").status_code == 403
    assert not ConnectionLink.objects.exists()


@pytest.mark.django_db
def test_the_api_cannot_allow_a_change_of_account(client, environment):
    integration = factories.IntegrationFactory(environment=environment)
    _, raw = ApiKey.create(environment, "Backend")

    response = client.post(
        f"/v1/integrations/{integration.pk}/relink",
        data='{"link_type": "MAGIC_LINK", "allow_account_change": true}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )

    assert response.status_code == 200, response.content
    assert ConnectionLink.objects.get().allow_account_change is False
    schema = client.get("/v1/openapi.json").content.decode()
    assert "allow_account_change" not in schema
