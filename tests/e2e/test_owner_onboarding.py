"""An owner sets an environment up and onboards a customer without admin or a shell, in a real browser.

Settings: allow the host app's origin → Connect a new customer: an embedded link, shown once →
the host app (a real HTTP server of the test's own on another loopback origin) opens the link in
its iframe, the customer enters their key → the owner sees the new integration with its first
sync. Then: invite a colleague by email (read from the test's own SMTP server), who sets a
password, joins, signs out and signs in again with it.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from integrations.models import Integration, Membership, Role, SyncStatus
from sandbox.models import SandboxCompany
from tests import factories
from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

HOST_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Umbrella HR app</title></head><body>
<h1>Umbrella's app</h1><button id="connect">Connect your HR system</button><p id="result"></p>
<script src="{static}/static/relink-connect.js"></script>
<script>
document.getElementById("connect").addEventListener("click", function () {{
  openRelinkConnect("{link}").then(
    function (token) {{ document.getElementById("result").textContent = "token:" + token; }},
    function () {{ document.getElementById("result").textContent = "closed"; }});
}});
</script></body></html>"""
NEW_PASSWORD = "a long and unusual passphrase 7"


class HostApp:
    """The customer-facing app that embeds Relink: one page, served on 127.0.0.1 (a different
    origin from the live server's localhost), with the link filled in once it exists."""

    def __init__(self) -> None:
        self.body = ""
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's hook name)
                payload = app.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostApp:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_owner_sets_up_embedding_onboards_a_customer_and_invites_a_colleague(
    browser, live_server, settings, smtp, shot
):
    settings.BASE_URL = live_server.url
    environment = factories.EnvironmentFactory(slug="acme", name="Acme production")
    owner = factories.member(environment, Role.OWNER, "owner@acme.test")
    factories.ScopeConfigFactory(environment=environment, name="All HRIS data", is_default=True)
    company = SandboxCompany.objects.create(name="Umbrella Corp", environment=environment)
    factories.SandboxEmployeeFactory.create_batch(5, company=company)
    _, customer_key = company.create_key()

    with HostApp() as host:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, live_server.url, owner.email, then="/env/acme/overview/")

        # 1. Settings: allow the host app's origin.
        page.click("nav >> text=Settings")
        page.wait_for_url("**/env/acme/settings/")
        page.fill("#id_allowed_origins", host.origin + "/")
        page.fill("#id_sync_interval", "60")
        page.click("button:has-text('Save settings')")
        page.wait_for_selector("text=Settings saved.")
        shot(page, "settings-saved")
        assert page.input_value("#id_allowed_origins") == host.origin  # normalized
        environment.refresh_from_db()
        assert environment.allowed_origins == [host.origin]

        # 2. Connect a new customer: an embedded link, shown once.
        page.goto(f"{live_server.url}/env/acme/connect/")
        assert page.locator("#embed-warning").count() == 0  # an origin is allowed now
        page.fill("#id_end_user_organization_name", "Umbrella Corp")
        page.fill("#id_end_user_email", "hr@umbrella.test")
        page.fill("#id_end_user_origin_id", "cust-42")
        page.select_option("#id_tool", "sandbox")
        page.select_option("#id_link_type", "EMBEDDED")
        page.click("button:has-text('Create link')")
        page.wait_for_selector("#connect-url")
        shot(page, "link-created")
        link = page.input_value("#connect-url")
        assert link.startswith(f"{live_server.url}/connect/")
        page.reload()
        assert page.locator("#connect-url").count() == 0  # shown once; the refresh created nothing
        assert page.locator("tr.link-row").count() == 1

        # 3. The customer completes it inside the host app's iframe.
        host.body = HOST_PAGE.format(static=live_server.url, link=link)
        customer = browser.new_context()
        app = customer.new_page()
        app.goto(f"{host.origin}/")
        app.click("#connect")
        frame = app.frame_locator("iframe[title='Relink Connect']")
        frame.locator("input[name=api_key]").fill(customer_key)
        shot(app, "embedded-form")
        frame.locator("button[type=submit]").click()
        app.wait_for_function("document.getElementById('result').textContent.startsWith('token:')", timeout=30000)
        shot(app, "embedded-done")
        customer.close()

        # 4. The owner sees the new integration with its first sync.
        integration = Integration.objects.get(environment=environment, end_user_origin_id="cust-42")
        first = integration.syncs.get()
        assert first.status == SyncStatus.SUCCEEDED, first.error_message
        assert first.records_per_model.get("hris_employees") == 5
        page.goto(f"{live_server.url}/env/acme/")
        page.click("text=Umbrella Corp")
        page.wait_for_selector("#health")
        shot(page, "new-integration")
        body = page.inner_text("main")
        assert "Succeeded" in body
        page.goto(f"{live_server.url}/env/acme/connect/")
        assert "Completed" in page.inner_text("#links")

        # 5. Invite a colleague by email.
        page.click("nav >> text=Members")
        page.fill("#id_email", "colleague@acme.test")
        page.select_option("#id_role", "editor")
        page.click("button:has-text('Send invitation')")
        page.wait_for_selector("text=Invitation sent to colleague@acme.test")
        assert "colleague@acme.test" in page.inner_text("#invitations")
        message = smtp.wait_for("colleague@acme.test")
        invite_link = next(link for link in smtp.links(message) if "/invite/" in link)
        context.close()

    colleague = browser.new_context()
    them = colleague.new_page()
    them.goto(invite_link)
    assert "Join Acme production" in them.inner_text("main")
    them.fill("#id_name", "Cole League")
    them.fill("#id_password1", NEW_PASSWORD)
    them.fill("#id_password2", NEW_PASSWORD)
    shot(them, "invitation")
    them.click("button:has-text('Create account and join')")
    them.wait_for_url("**/env/acme/overview/")
    assert re.search(r"Welcome to Acme production", them.inner_text("main"))
    membership = Membership.objects.get(environment=environment, user__email="colleague@acme.test")
    assert membership.role == Role.EDITOR
    # Signs out, and in again with the password they chose.
    them.click("button:has-text('Sign out')")
    them.wait_for_url("**/login/")
    them.fill("#id_username", "colleague@acme.test")
    them.fill("#id_password", NEW_PASSWORD)
    them.click("button[type=submit]")
    them.wait_for_url("**/env/acme/overview/")
    shot(them, "colleague-signed-in")
    colleague.close()
