"""The hosted end-customer pages: /connect/<token>/ and the OAuth callback.

Credentials are verified against the sandbox over real HTTP (live_server), so those tests use
transactional databases. Queued syncs are not run (`_enqueue` is a no-op): the tests look at the
QUEUED row the completion wrote.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import polib
import pytest
import time_machine
from django.conf import settings as django_settings
from django.core import signing
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from connect_flow import links
from connect_flow.headers import allowed_frame_origins
from connect_flow.models import ConnectionLink
from connect_flow.views import LOG_PATH
from integrations import syncs
from integrations.models import Integration, RequestLog, WebhookDelivery
from sandbox.models import SandboxCompany

from . import factories

APP_ORIGIN = "https://app.example.test"
FORM_TOKEN_RE = re.compile(r'name="form_token" value="([^"]+)"')
PLACEHOLDER_RE = re.compile(r"%\(\w+\)s")
HIDDEN_INPUT_RE = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')
EMPLOYEES_AND_ABSENCES = {
    "hris_employees": {
        "availability": "ENABLED",
        "fields": {"first_name": "ENABLED", "last_name": "ENABLED", "email": "ENABLED", "salary": "OPTIONAL"},
    },
    "hris_absences": {
        "availability": "ENABLED",
        "fields": {"employee_id": "ENABLED", "start_date": "ENABLED", "end_date": "ENABLED"},
    },
}


@pytest.fixture(scope="module", autouse=True)
def compiled_catalogs(django_db_blocker):
    """Build the .mo files (git-ignored) so the module runs without `make messages` first, then
    make Django reload its catalogs (entering and leaving override_settings resets them)."""
    with django_db_blocker.unblock():
        call_command("compile_catalogs", verbosity=0)
    with override_settings(LOCALE_PATHS=list(django_settings.LOCALE_PATHS)):
        pass


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    monkeypatch.setattr(syncs, "_enqueue", lambda ids, **kwargs: None)


@pytest.fixture
def sandbox(live_server, settings):
    """The sandbox HR system reached over HTTP, and a company in it."""
    settings.BASE_URL = live_server.url
    return factories.SandboxCompanyFactory(name="Initech HR")


@pytest.fixture
def integration(environment):
    """A broken sandbox integration: INVALID for three days, an old key, the default scope config."""
    now = timezone.now()
    return factories.IntegrationFactory(
        environment=environment,
        end_user_organization_name="Initech GmbH",
        credentials={"api_key": "sbx_old_key"},
        state="INVALID",
        invalid_since=now,
        auth_failing_since=now - timedelta(days=3),
    )


def _path(created: links.CreatedLink) -> str:
    return f"/connect/{created.token}/"


def _form_token(response) -> str:
    match = FORM_TOKEN_RE.search(response.content.decode())
    assert match, response.content.decode()
    return unescape(match.group(1))


def _customer() -> Client:
    """A browser in a cross-site iframe: no cookies ever, and Django's CSRF check enforced."""
    return Client(enforce_csrf_checks=True)


def _submit(client: Client, created: links.CreatedLink, **data):
    page = client.get(_path(created))
    assert page.status_code == 200, page.content.decode()
    return client.post(_path(created), {"form_token": _form_token(page), **data})


def _snapshot(integration: Integration) -> tuple:
    fresh = Integration.objects.get(pk=integration.pk)
    return (fresh.get_credentials(), fresh.state, fresh.scope_config_id, fresh.invalid_since, fresh.opted_out_fields)


def _text(response) -> str:
    return unescape(response.content.decode())


# --- Unknown and unusable links ------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_token_gets_the_same_generic_page_for_every_guess(client):
    first = client.get("/connect/not-a-real-token/")
    second = client.get("/connect/" + "x" * 43 + "/")

    assert first.status_code == second.status_code == 404
    assert first.content == second.content
    assert "This link is not valid" in first.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "language", "phrase"),
    [
        ("EXPIRED", "fr", "Ce lien a expiré"),
        ("REVOKED", "es", "Este enlace ya no es válido"),
        ("COMPLETED", "de", "Bereits verbunden"),
    ],
)
def test_an_unusable_link_says_so_in_its_language_and_reveals_nothing(client, integration, status, language, phrase):
    created = links.create_relink_link(integration, language=language, link_type="MAGIC_LINK")
    if status == "EXPIRED":
        ConnectionLink.objects.filter(pk=created.link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif status == "REVOKED":
        links.revoke(created.link)
    else:
        links.complete(created.link.pk, credentials={"api_key": "new"}, opted_out_fields=[])

    response = client.get(_path(created))

    body = _text(response)
    assert response.status_code == (200 if status == "COMPLETED" else 410)
    assert phrase in body
    for secret in ("Initech", "Sandbox HR", "sandbox", integration.environment.name, integration.pk):
        assert secret not in body
    assert ConnectionLink.objects.get(pk=created.link.pk).opened_at is None


# --- Opening a link ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_opening_a_link_sets_opened_at_and_changes_nothing_else(client, integration, environment):
    new_scope = factories.ScopeConfigFactory(environment=environment, spec=EMPLOYEES_AND_ABSENCES)
    created = links.create_relink_link(integration, scope_config=new_scope)
    before = _snapshot(integration)

    response = client.get(_path(created))
    client.get(_path(created))

    body = response.content.decode()
    assert response.status_code == 200
    link = ConnectionLink.objects.get(pk=created.link.pk)
    assert link.opened_at is not None and link.completed_at is None and link.status == "OPENED"
    assert _snapshot(integration) == before
    assert not integration.syncs.exists()
    # Who asks, which tool, which permissions (the one the new scope config adds marked new).
    assert "Acme production" in body and "Reconnect Sandbox HR" in body
    assert re.search(r"<code>absences:read</code> <span class=\"badge new\">new</span>", body)
    assert re.search(r"<code>employees:read</code></li>", body)
    # The OPTIONAL field can be opted out of; the secret field is a password input, never prefilled.
    assert 'name="opt_out" value="hris_employees.salary"' in body
    api_key_input = re.search(r"<input[^>]*name=\"api_key\"[^>]*>", body).group(0)
    assert 'type="password"' in api_key_input and 'autocomplete="off"' in api_key_input
    assert "value=" not in api_key_input
    assert "sbx_old_key" not in body


@pytest.mark.django_db
def test_an_oauth_tool_gets_a_continue_button_instead_of_fields(client, environment):
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox_oauth")
    created = links.create_relink_link(integration, language="it")

    body = _text(client.get(_path(created)))

    assert "Continua su Sandbox HR (OAuth)" in body
    assert 'type="password"' not in body
    # Embedded: consent pages refuse to be framed, so the authorization opens in a new tab.
    assert re.search(r'<form method="post"[^>]* target="_blank" data-relink-handoff="handoff/">', body)


@pytest.mark.django_db
def test_a_reconnect_keeps_the_opt_outs_the_customer_chose_before(client, integration):
    Integration.objects.filter(pk=integration.pk).update(opted_out_fields=["hris_employees.salary"])
    created = links.create_relink_link(integration)

    body = client.get(_path(created)).content.decode()

    assert 'name="opt_out" value="hris_employees.salary" checked>' in body


# --- Failed attempts -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rejected_key_leaves_the_integration_untouched_and_says_so_in_german(
    sandbox, environment, integration, viewer, settings
):
    factories.WebhookEndpointFactory(environment=environment)
    new_scope = factories.ScopeConfigFactory(environment=environment, spec=EMPLOYEES_AND_ABSENCES)
    key, raw = sandbox.create_key("revoked")
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    created = links.create_relink_link(integration, language="de", scope_config=new_scope)
    before = _snapshot(integration)

    response = _submit(_customer(), created, tool="sandbox", api_key=raw)

    body = _text(response)
    assert response.status_code == 400
    assert "Die Zugangsdaten wurden von Sandbox HR abgelehnt." in body
    assert raw not in body
    assert _snapshot(integration) == before
    assert ConnectionLink.objects.get(pk=created.link.pk).completed_at is None
    assert not integration.syncs.exists()

    log = RequestLog.objects.get()
    assert log.source == RequestLog.Source.CONNECT_FLOW
    assert (log.environment_id, log.integration_id) == (environment.pk, integration.pk)
    assert (log.method, log.path, log.status_code, log.error_code) == ("POST", LOG_PATH, 400, "AUTH_FAILED")
    assert log.request_body["api_key"] == "[REDACTED]"
    assert created.token not in repr(log.__dict__) and raw not in repr(log.__dict__)

    assert log.response_body == {"error_code": "AUTH_FAILED", "missing_permissions": []}

    # The webhook is the reference's payload; its log_url opens this attempt's request log.
    data = WebhookDelivery.objects.get(event_type="connection-flow-failed").payload["data"]
    assert set(data) == {"integration_tool", "integration_category", "end_user", "log_url"}
    assert (data["integration_tool"], data["integration_category"]) == ("sandbox", "HRIS")
    assert data["end_user"]["organization_name"] == "Initech GmbH"
    assert data["log_url"] == f"{settings.BASE_URL}/env/{environment.slug}/logs/{log.pk}/"
    operator = Client()
    operator.force_login(viewer)
    page = operator.get(urlsplit(data["log_url"]).path)
    assert page.status_code == 200
    assert "<code>AUTH_FAILED</code>" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_missing_permission_is_listed(sandbox, environment, integration):
    new_scope = factories.ScopeConfigFactory(environment=environment, spec=EMPLOYEES_AND_ABSENCES)
    _, raw = sandbox.create_key("no absences", permissions=["employees:read", "compensation:read"])
    created = links.create_relink_link(integration, scope_config=new_scope)
    before = _snapshot(integration)

    response = _submit(_customer(), created, tool="sandbox", api_key=raw)

    body = _text(response)
    assert response.status_code == 400
    assert "Sandbox HR accepted the credentials, but they lack permissions that are needed." in body
    assert re.search(r'<ul class="missing"><li><code>absences:read</code></li></ul>', body)
    assert _snapshot(integration) == before
    assert RequestLog.objects.get().error_code == "PERMISSION_MISSING"


def test_a_field_the_key_cannot_read_is_a_missing_permission_unless_opted_out(sandbox, environment, integration):
    """Sandbox HR answers 200 without salary for a key lacking compensation:read; the salary the
    scope asks for (OPTIONAL, not declined) makes that a missing permission. Declining it works."""
    factories.SandboxEmployeeFactory.create_batch(2, company=sandbox)  # no records, no verdict
    _, raw = sandbox.create_key("no salary", permissions=["employees:read"])
    scope = factories.ScopeConfigFactory(environment=environment)  # salary OPTIONAL
    created = links.create_relink_link(integration, scope_config=scope)
    before = _snapshot(integration)

    refused = _submit(_customer(), created, tool="sandbox", api_key=raw)
    assert refused.status_code == 400
    assert re.search(r'<ul class="missing"><li><code>compensation:read</code></li></ul>', _text(refused))
    assert _snapshot(integration) == before

    accepted = _submit(_customer(), created, tool="sandbox", api_key=raw, opt_out="hris_employees.salary")
    assert accepted.status_code == 200 and "Connection successful" in _text(accepted)
    assert Integration.objects.get(pk=integration.pk).opted_out_fields == ["hris_employees.salary"]


@pytest.mark.django_db
def test_missing_fields_show_the_form_again_in_the_links_language(client, integration):
    created = links.create_relink_link(integration, language="de")

    response = _submit(client, created, tool="sandbox", api_key="  ")

    body = _text(response)
    assert response.status_code == 400
    assert "Bitte prüfen Sie die unten markierten Felder." in body
    assert "Dieses Feld ist zwingend erforderlich." in body  # Django's own catalog, same language
    assert ConnectionLink.objects.get(pk=created.link.pk).completed_at is None


# --- Success -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_successful_reconnect_applies_the_new_scope_and_queues_a_sync(sandbox, environment, integration):
    new_scope = factories.ScopeConfigFactory(environment=environment, spec=EMPLOYEES_AND_ABSENCES)
    _, raw = sandbox.create_key("new")
    created = links.create_relink_link(integration, scope_config=new_scope, link_type="MAGIC_LINK")

    response = _submit(_customer(), created, tool="sandbox", api_key=raw, opt_out=["hris_employees.salary"])

    assert response.status_code == 200, response.content.decode()
    assert "Connection successful" in _text(response)
    assert "You can close this tab." in _text(response)
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "ACTIVE" and fresh.invalid_since is None and fresh.auth_failing_since is None
    assert fresh.get_credentials() == {"api_key": raw}
    assert fresh.scope_config == new_scope
    assert fresh.opted_out_fields == ["hris_employees.salary"]
    assert fresh.syncs.filter(status="QUEUED").count() == 1
    assert ConnectionLink.objects.get(pk=created.link.pk).status == "COMPLETED"
    log = RequestLog.objects.get()
    assert (log.status_code, log.error_code, log.request_body["api_key"]) == (200, "", "[REDACTED]")
    assert "data-activation-token" not in response.content.decode(), "a magic link has no frame to tell"


@pytest.mark.django_db(transaction=True)
def test_a_double_submit_is_harmless(sandbox, integration):
    _, raw = sandbox.create_key("new")
    _, other = sandbox.create_key("other")
    created = links.create_relink_link(integration)
    customer = _customer()
    form_token = _form_token(customer.get(_path(created)))

    first = customer.post(_path(created), {"form_token": form_token, "tool": "sandbox", "api_key": raw})
    second = customer.post(_path(created), {"form_token": form_token, "tool": "sandbox", "api_key": other})

    assert first.status_code == 200 and "Connection successful" in _text(first)
    assert second.status_code == 200 and "Already connected" in _text(second)
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.get_credentials() == {"api_key": raw}
    assert fresh.syncs.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_connect_link_with_a_tool_picker_creates_an_integration(sandbox, environment):
    factories.WebhookEndpointFactory(environment=environment)
    scope = factories.ScopeConfigFactory(environment=environment)
    created = links.create_connect_link(
        environment,
        end_user_email="hr@umbrella.test",
        end_user_organization_name="Umbrella AG",
        end_user_origin_id="umb-1",
        category="HRIS",
        scope_config=scope,
        language="es",
    )
    _, raw = sandbox.create_key("connect")
    customer = _customer()

    picker = _text(customer.get(_path(created)))
    assert "Elija el sistema que utiliza" in picker
    for label in ("Sandbox HR", "Personio", "BambooHR", "HiBob"):
        assert label in picker
    assert 'href="?tool=sandbox"' in picker

    page = customer.get(_path(created) + "?tool=sandbox")
    assert "Conectar Sandbox HR" in _text(page)
    response = customer.post(
        _path(created) + "?tool=sandbox", {"form_token": _form_token(page), "tool": "sandbox", "api_key": raw}
    )

    assert response.status_code == 200, response.content.decode()
    assert "Conexión realizada" in _text(response)
    integration = Integration.objects.get()
    assert integration.tool == "sandbox" and integration.state == "ACTIVE"
    assert integration.end_user_organization_name == "Umbrella AG" and integration.scope_config == scope
    assert ConnectionLink.objects.get(pk=created.link.pk).integration == integration
    created_event = WebhookDelivery.objects.get(event_type="integration-created")
    assert created_event.payload["data"]["id"] == integration.pk


@pytest.mark.django_db
def test_a_tool_outside_the_links_category_is_refused(client, environment):
    with pytest.raises(links.LinkInputError):  # no ATS tool here: such links are refused now
        links.create_connect_link(
            environment, end_user_email="", end_user_organization_name="Umbrella AG", category="ATS"
        )
    # One made before that rule still never connects an HRIS tool.
    created = links.create_connect_link(environment, end_user_email="", end_user_organization_name="Umbrella AG")
    ConnectionLink.objects.filter(pk=created.link.pk).update(category="ATS")
    page = client.get(_path(created) + "?tool=sandbox")
    assert 'id="tool-picker"' in page.content.decode(), "an HRIS tool is not offered for an ATS link"

    response = client.post(_path(created), {"form_token": _form_token_for(created), "tool": "sandbox"})

    assert response.status_code == 400
    assert not Integration.objects.exists()


def _form_token_for(created: links.CreatedLink) -> str:
    return signing.dumps({"link": created.link.pk}, salt="relink-connect-form")


# --- No cookies: the signed form token ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_post_works_without_any_cookie(sandbox, integration):
    _, raw = sandbox.create_key("new")
    created = links.create_relink_link(integration)
    customer = _customer()

    page = customer.get(_path(created))
    response = customer.post(_path(created), {"form_token": _form_token(page), "tool": "sandbox", "api_key": raw})

    assert not page.cookies and not response.cookies and not customer.cookies
    assert response.status_code == 200, response.content.decode()
    assert Integration.objects.get(pk=integration.pk).state == "ACTIVE"


@pytest.mark.django_db
@pytest.mark.parametrize("form_token", ["", "tampered", "other-link", "expired"])
def test_the_post_is_refused_without_a_valid_form_token(integration, form_token):
    # Magic links: still valid hours later, when the form token has expired.
    created = links.create_relink_link(integration, link_type="MAGIC_LINK")
    other = links.create_relink_link(integration, link_type="MAGIC_LINK")
    tokens = {
        "": "",
        "tampered": _form_token_for(created)[:-2] + "xx",
        "other-link": _form_token_for(other),
        "expired": signing.dumps({"link": created.link.pk}, salt="relink-connect-form"),
    }
    before = _snapshot(integration)
    if form_token == "expired":
        with time_machine.travel(timezone.now() + timedelta(hours=4)):
            response = _customer().post(
                _path(created), {"form_token": tokens[form_token], "tool": "sandbox", "api_key": "sbx_x"}
            )
    else:
        response = _customer().post(
            _path(created), {"form_token": tokens[form_token], "tool": "sandbox", "api_key": "sbx_x"}
        )

    assert response.status_code == 403
    assert "This page has expired" in response.content.decode()
    assert _snapshot(integration) == before
    assert not RequestLog.objects.exists()


# --- Headers -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_embedded_link_may_be_framed_by_the_allowed_origins_only(client, environment, integration):
    environment.allowed_origins = [APP_ORIGIN, "https://evil.test; script-src *", "javascript:alert(1)"]
    environment.save()
    created = links.create_relink_link(integration, link_type="EMBEDDED")

    response = client.get(_path(created))

    assert "X-Frame-Options" not in response
    assert response["Content-Security-Policy"].endswith(f"frame-ancestors {APP_ORIGIN}")
    body = response.content.decode()
    assert f'data-target-origins="{APP_ORIGIN}"' in body
    assert "/static/connect_flow/embedded.js" in body
    assert "<script>" not in body, "no inline script: the CSP forbids it"


@pytest.mark.django_db
def test_an_embedded_link_without_allowed_origins_may_not_be_framed(client, integration):
    created = links.create_relink_link(integration, link_type="EMBEDDED")

    response = client.get(_path(created))

    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_a_magic_link_may_not_be_framed(client, environment, integration):
    environment.allowed_origins = [APP_ORIGIN]
    environment.save()
    created = links.create_relink_link(integration, link_type="MAGIC_LINK")

    response = client.get(_path(created))

    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert "embedded.js" not in response.content.decode()


@pytest.mark.django_db
def test_every_connect_page_is_private_and_uncached(client, integration):
    live = links.create_relink_link(integration)
    revoked = links.create_relink_link(integration)
    links.revoke(revoked.link)
    responses = [
        client.get(_path(live)),
        client.get(_path(revoked)),
        client.get("/connect/unknown-token/"),
        client.post(_path(live), {"form_token": "bad"}),
        client.get("/connect/oauth/callback/?code=x&state=bad"),
        client.put(_path(live)),
    ]
    assert [r.status_code for r in responses] == [200, 410, 404, 403, 403, 405]
    for response in responses:
        assert response["Referrer-Policy"] == "no-referrer"
        assert response["Cache-Control"] == "no-store"


def test_only_well_formed_origins_reach_the_csp_header():
    raw = [
        APP_ORIGIN,
        "HTTPS://Other.Example:8443/",
        "https://a.test/path",
        "https://a.test; x",
        "ftp://a.test",
        "https://user@a.test",
        42,
        APP_ORIGIN,
    ]
    assert allowed_frame_origins(raw) == [APP_ORIGIN, "https://other.example:8443"]
    assert allowed_frame_origins("https://a.test") == []


# --- Embedded success ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_embedded_success_hands_the_activation_token_to_the_frame(sandbox, environment, integration):
    environment.allowed_origins = [APP_ORIGIN]
    environment.save()
    _, raw = sandbox.create_key("new")
    created = links.create_relink_link(integration, link_type="EMBEDDED")

    response = _submit(_customer(), created, tool="sandbox", api_key=raw)

    assert response.status_code == 200
    assert "X-Frame-Options" not in response
    match = re.search(r'data-relink-success data-activation-token="([^"]+)"', response.content.decode())
    assert match
    assert links.exchange_activation_token(environment, match.group(1)).pk == integration.pk
    assert "data-relink-close" in response.content.decode()


def test_the_embed_script_checks_the_source_and_the_origin_of_messages():
    script = (Path(django_settings.BASE_DIR) / "static" / "relink-connect.js").read_text()
    assert "event.source !== iframe.contentWindow" in script
    assert "event.origin !== origin" in script
    assert "new URL(url" in script
    assert "removeChild(overlay)" in script


# --- OAuth ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["missing", "garbage", "tampered", "wrong-salt", "expired"])
def test_the_oauth_callback_refuses_a_bad_state(client, integration, state):
    created = links.create_relink_link(integration)
    good = signing.dumps(
        {"link": created.link.pk, "tool": "sandbox_oauth", "opt_out": [], "nonce": "n"}, salt="relink-oauth"
    )
    values = {
        "missing": None,
        "garbage": "not-a-state",
        "tampered": good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb"),
        "wrong-salt": signing.dumps(
            {"link": created.link.pk, "tool": "sandbox_oauth", "opt_out": []}, salt="relink-connect-form"
        ),
        "expired": good,
    }
    query = {"code": "sbxac_whatever"}
    if values[state] is not None:
        query["state"] = values[state]
    if state == "expired":
        with time_machine.travel(timezone.now() + timedelta(hours=2)):
            response = client.get("/connect/oauth/callback/", query)
    else:
        response = client.get("/connect/oauth/callback/", query)

    assert response.status_code == 403
    assert ConnectionLink.objects.get(pk=created.link.pk).completed_at is None
    assert not RequestLog.objects.exists()


def _hr_admin(company: SandboxCompany, **fields) -> Client:
    """A browser signed in as an HR admin of Sandbox HR: an editor of the company's environment."""
    user = factories.member(company.environment, "editor", **fields)
    browser = Client()
    browser.force_login(user)
    return browser


def _consent(hr_admin: Client, authorize_url: str, company: SandboxCompany, decision: str = "allow"):
    page = hr_admin.get(authorize_url[authorize_url.index("/sandbox/") :])
    assert page.status_code == 200, page.content.decode()
    form = {name: unescape(value) for name, value in HIDDEN_INPUT_RE.findall(page.content.decode())}
    return hr_admin.post("/sandbox/oauth/authorize", {**form, "company": company.slug, "decision": decision})


@pytest.mark.django_db(transaction=True)
def test_a_full_sandbox_oauth_reconnect_ends_active(sandbox, live_server, environment):
    now = timezone.now()
    integration = factories.IntegrationFactory(
        environment=environment,
        tool="sandbox_oauth",
        credentials={"refresh_token": "revoked"},
        state="INVALID",
        invalid_since=now,
        auth_failing_since=now - timedelta(days=3),
    )
    created = links.create_relink_link(integration, link_type="MAGIC_LINK")
    customer = _customer()
    hr_admin = _hr_admin(sandbox, email="hr@initech.test")

    page = customer.get(_path(created))
    start = customer.post(
        _path(created), {"form_token": _form_token(page), "tool": "sandbox_oauth", "opt_out": "hris_employees.salary"}
    )
    assert start.status_code == 302
    authorize = urlsplit(start["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{live_server.url}/sandbox/oauth/authorize"
    assert parse_qs(authorize.query)["redirect_uri"] == [f"{live_server.url}/connect/oauth/callback/"]
    assert Integration.objects.get(pk=integration.pk).state == "INVALID", "starting OAuth changes nothing"

    consent = _consent(hr_admin, start["Location"], sandbox)
    assert consent.status_code == 302
    callback = urlsplit(consent["Location"])
    assert callback.path == "/connect/oauth/callback/"
    response = customer.get(f"{callback.path}?{callback.query}")

    assert response.status_code == 200, response.content.decode()
    assert "Connection successful" in _text(response)
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "ACTIVE"
    assert set(fresh.get_credentials()) == {"access_token", "refresh_token", "expires_at"}
    assert fresh.opted_out_fields == ["hris_employees.salary"]
    assert fresh.syncs.filter(status="QUEUED").count() == 1
    assert not customer.cookies

    # The callback reloaded: the link is used, the code is not exchanged again.
    again = customer.get(f"{callback.path}?{callback.query}")
    assert "Already connected" in _text(again)
    assert Integration.objects.get(pk=integration.pk).get_credentials() == fresh.get_credentials()


@pytest.mark.django_db(transaction=True)
def test_a_denied_consent_is_a_failed_attempt_with_a_retry(sandbox, environment):
    integration = factories.IntegrationFactory(
        environment=environment, tool="sandbox_oauth", credentials={"refresh_token": "old"}
    )
    created = links.create_relink_link(integration, language="fr")
    customer = _customer()
    hr_admin = _hr_admin(sandbox)
    before = _snapshot(integration)

    page = customer.get(_path(created))
    start = customer.post(_path(created), {"form_token": _form_token(page), "tool": "sandbox_oauth"})
    denied = _consent(hr_admin, start["Location"], sandbox, decision="deny")
    callback = urlsplit(denied["Location"])
    response = customer.get(f"{callback.path}?{callback.query}")

    body = _text(response)
    assert response.status_code == 400
    assert "L’accès n’a pas été autorisé dans Sandbox HR (OAuth)." in body
    retry = re.search(r'<a class="button primary" href="([^"]+)">Réessayer avec', body)
    assert retry and unescape(retry.group(1)).startswith(f"{django_settings.BASE_URL}/sandbox/oauth/authorize?")
    assert _snapshot(integration) == before
    log = RequestLog.objects.get()
    assert (log.method, log.path, log.status_code, log.error_code) == (
        "GET",
        "/connect/oauth/callback/",
        400,
        "ACCESS_DENIED",
    )


@pytest.mark.django_db(transaction=True)
def test_an_embedded_oauth_reconnect_hands_the_token_to_the_frame_that_waited(sandbox, live_server, environment):
    """The consent and the callback happen in another tab; the frame polls its handoff URL and
    receives the activation token once; the other tab's page carries none."""
    environment.allowed_origins = [APP_ORIGIN]
    environment.save()
    integration = factories.IntegrationFactory(
        environment=environment, tool="sandbox_oauth", credentials={"refresh_token": "revoked"}
    )
    created = links.create_relink_link(integration, link_type="EMBEDDED", language="de")
    frame, tab = _customer(), _customer()
    hr_admin = _hr_admin(sandbox)

    page = frame.get(_path(created))
    body = _text(page)
    assert 'target="_blank" data-relink-handoff="handoff/"' in body
    assert "Beenden Sie den Vorgang im Tab von Sandbox HR (OAuth)." in body  # the waiting text, translated
    form_token = _form_token(page)
    handoff = f"{_path(created)}handoff/"
    assert frame.post(handoff, {"form_token": form_token}).json() == {"status": "waiting"}

    start = tab.post(_path(created), {"form_token": form_token, "tool": "sandbox_oauth"})
    callback = urlsplit(_consent(hr_admin, start["Location"], sandbox)["Location"])
    done = tab.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 200
    assert "data-activation-token" not in done.content.decode()
    assert "kehren Sie zum Fenster zurück" in _text(done)

    first = frame.post(handoff, {"form_token": form_token})
    assert first["Content-Type"] == "application/json" and first["Cache-Control"] == "no-store"
    token = first.json()["activation_token"]
    assert frame.post(handoff, {"form_token": form_token}).json() == {"status": "completed"}  # once only
    assert links.exchange_activation_token(environment, token).pk == integration.pk  # the handed-off token works
    assert links.exchange_activation_token(environment, token) is None  # once


def test_the_handoff_needs_the_form_token_and_a_live_link(client, environment, integration):
    created = links.create_relink_link(integration, link_type="EMBEDDED")
    handoff = f"{_path(created)}handoff/"
    assert client.post(handoff, {"form_token": "forged"}).status_code == 403
    assert client.post(f"/connect/{'x' * 43}/handoff/", {"form_token": "x"}).status_code == 404
    assert client.get(handoff).status_code == 405
    form_token = _form_token(client.get(_path(created)))
    links.revoke(created.link)
    assert client.post(handoff, {"form_token": form_token}).json() == {"status": "revoked"}


def test_no_token_is_handed_off_for_a_link_completed_in_the_frame_or_a_magic_link(sandbox, environment, integration):
    _, raw = sandbox.create_key("new")
    embedded = links.create_relink_link(integration, link_type="EMBEDDED")
    page = _customer().get(_path(embedded))
    _submit(_customer(), embedded, tool="sandbox", api_key=raw)  # the frame got its token on the success page
    answer = _customer().post(f"{_path(embedded)}handoff/", {"form_token": _form_token(page)})
    assert answer.json() == {"status": "completed"}
    magic = links.create_relink_link(integration, link_type="MAGIC_LINK")
    assert links.hand_off_activation_token(ConnectionLink.objects.get(pk=magic.link.pk)) is None


# --- Catalogs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["de", "fr", "it", "es"])
def test_the_catalogs_translate_every_string(language):
    path = Path(django_settings.BASE_DIR) / "locale" / language / "LC_MESSAGES" / "django.po"
    catalog = polib.pofile(str(path))

    assert catalog.metadata["Language"] == language
    assert len(catalog) > 50
    # An entry with a plural ({% blocktranslate count %}) has a translation per plural form instead.
    translations = {e.msgid: list(e.msgstr_plural.values()) if e.msgid_plural else [e.msgstr] for e in catalog}
    assert not [msgid for msgid, texts in translations.items() if not all(t.strip() for t in texts)]
    assert not catalog.fuzzy_entries() and not catalog.obsolete_entries()
    for entry in catalog:
        placeholders = sorted(set(PLACEHOLDER_RE.findall(entry.msgid_plural or entry.msgid)))
        for text in translations[entry.msgid]:
            assert sorted(set(PLACEHOLDER_RE.findall(text))) == placeholders, entry.msgid
    assert path.with_suffix(".mo").exists()
    assert polib.mofile(str(path.with_suffix(".mo"))).find("Connection successful").msgstr
