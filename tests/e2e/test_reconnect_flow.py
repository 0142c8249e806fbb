"""The end customer reconnects in a real browser: embedded in a host page, and by magic link."""

from __future__ import annotations

import httpx
import pytest

from connect_flow import links
from integrations import syncs
from integrations.models import ApiKey, Integration
from sandbox.models import SandboxCompany
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

HOST_ORIGIN = "http://host-app.test"
HOST_PAGE = """<!doctype html><html><body>
<h1>Acme HR app</h1><button id="reconnect">Reconnect your HR system</button><p id="result"></p>
<script src="{static}/static/relink-connect.js"></script>
<script>
document.getElementById("reconnect").addEventListener("click", function () {{
  openRelinkConnect("{link}").then(
    function (token) {{ document.getElementById("result").textContent = "token:" + token; }},
    function () {{ document.getElementById("result").textContent = "closed"; }});
}});
</script></body></html>"""


@pytest.fixture
def setup(live_server, settings, monkeypatch):
    settings.BASE_URL = live_server.url
    monkeypatch.setattr(syncs, "_enqueue", lambda ids, **kwargs: None)
    environment = factories.EnvironmentFactory(slug="acme", name="Acme production", allowed_origins=[HOST_ORIGIN])
    company = SandboxCompany.objects.create(name="Umbrella Corp", environment=environment)
    factories.SandboxEmployeeFactory.create_batch(2, company=company)
    old_key, old_raw = company.create_key()
    integration = factories.IntegrationFactory(
        environment=environment,
        end_user_organization_name="Umbrella Corp",
        credentials={"api_key": old_raw},
        state="INVALID",
        invalid_since="2026-11-22T10:02:00Z",
        auth_failing_since="2026-11-19T10:02:00Z",
    )
    old_key.revoked_at = old_key.created_at
    old_key.save()
    _, new_raw = company.create_key(label="new")
    return environment, integration, new_raw


def _open_in_host_page(browser, live_server, created: links.CreatedLink):
    """A fresh browser on the host app's origin, which opens the link in its iframe."""
    context = browser.new_context()
    page = context.new_page()
    page.route(
        f"{HOST_ORIGIN}/",
        lambda route: route.fulfill(
            content_type="text/html", body=HOST_PAGE.format(static=live_server.url, link=created.url)
        ),
    )
    page.goto(f"{HOST_ORIGIN}/")
    page.click("#reconnect")
    return context, page, page.frame_locator("iframe[title='Relink Connect']")


def test_embedded_reconnect_resolves_with_an_activation_token(browser, live_server, setup, shot):
    environment, integration, new_raw = setup
    created = links.create_relink_link(integration, link_type="EMBEDDED", language="en")
    context, page, frame = _open_in_host_page(browser, live_server, created)
    frame.locator("input[name=api_key]").fill(new_raw)
    shot(page, "embedded-form")
    frame.locator("button[type=submit]").click()
    page.wait_for_function("document.getElementById('result').textContent.startsWith('token:')", timeout=20000)
    shot(page, "embedded-done")
    token = page.inner_text("#result").removeprefix("token:")
    assert page.locator("iframe").count() == 0  # removed once the promise settled

    _, raw_key = ApiKey.create(environment, "backend")
    response = httpx.get(
        f"{live_server.url}/v1/connect/integration-by-token/{token}", headers={"Authorization": f"Bearer {raw_key}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == integration.pk
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "ACTIVE" and fresh.get_credentials() == {"api_key": new_raw}
    context.close()


def test_magic_link_reconnect_in_a_fresh_context_moves_to_the_new_scope(browser, live_server, setup, shot):
    environment, integration, new_raw = setup
    new_scope = factories.ScopeConfigFactory(environment=environment, name="Employees + compensation")
    created = links.create_relink_link(integration, link_type="MAGIC_LINK", language="de", scope_config=new_scope)
    context = browser.new_context()  # the customer: no session, no cookies
    page = context.new_page()
    page.goto(created.url)
    shot(page, "magic-link-form")
    page.fill("input[name=api_key]", new_raw)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    shot(page, "magic-link-done")
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "ACTIVE"
    assert fresh.scope_config == new_scope
    assert fresh.data_expired_at is not None
    assert links.find_link(created.token).status == "COMPLETED"
    context.close()


def test_embedded_oauth_reconnect_consents_in_a_new_tab_and_resolves_in_the_host(browser, live_server, setup, shot):
    """An OAuth tool's consent cannot be framed: it opens in a new tab; the frame waits, then
    hands the host page the activation token."""
    environment, _, _ = setup
    integration = factories.IntegrationFactory(
        environment=environment,
        tool="sandbox_oauth",
        end_user_organization_name="Umbrella Corp",
        credentials={"refresh_token": "revoked"},
        state="INVALID",
        invalid_since="2026-11-22T10:02:00Z",
        auth_failing_since="2026-11-19T10:02:00Z",
    )
    # Signs in to Sandbox HR to consent: an editor of the environment that company belongs to.
    hr_admin = factories.UserFactory(email="hr-admin@umbrella.test")
    factories.MembershipFactory(environment=integration.environment, user=hr_admin, role="editor")
    created = links.create_relink_link(integration, link_type="EMBEDDED", language="en")
    context, page, frame = _open_in_host_page(browser, live_server, created)
    with context.expect_page() as opened:
        frame.locator("button[type=submit]").click()
    frame.locator("#relink-waiting").wait_for()
    shot(page, "embedded-oauth-waiting")

    tab = opened.value
    tab.wait_for_selector("#id_username")  # Sandbox HR asks its admin to sign in first
    tab.fill("#id_username", "hr-admin@umbrella.test")
    tab.fill("#id_password", "password")
    tab.click("button[type=submit]")
    tab.select_option("select[name=company]", label="Umbrella Corp")
    shot(tab, "embedded-oauth-consent")
    tab.click("button[name=decision][value=allow]")
    tab.wait_for_selector("text=Close this tab and return to the window where you started.")
    shot(tab, "embedded-oauth-tab-done")

    page.wait_for_function("document.getElementById('result').textContent.startsWith('token:')", timeout=20000)
    shot(page, "embedded-oauth-host-done")
    token = page.inner_text("#result").removeprefix("token:")
    _, raw_key = ApiKey.create(environment, "backend")
    response = httpx.get(
        f"{live_server.url}/v1/connect/integration-by-token/{token}", headers={"Authorization": f"Bearer {raw_key}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == integration.pk
    assert Integration.objects.get(pk=integration.pk).state == "ACTIVE"
    context.close()
