"""An operator signs in with a real browser and reaches an integration's page."""

from __future__ import annotations

import pytest

from tests import factories
from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_operator_signs_in_and_opens_an_integration(browser, live_server, shot):
    environment = factories.EnvironmentFactory(slug="acme", name="Acme production")
    user = factories.UserFactory(email="op@acme.test")
    factories.MembershipFactory(environment=environment, user=user, role="editor")
    factories.IntegrationFactory(
        environment=environment,
        end_user_organization_name="Umbrella Corp",
        state="INVALID",
        auth_failing_since="2026-11-19T10:02:00Z",
        invalid_since="2026-11-22T10:02:00Z",
    )
    context = browser.new_context()
    page = context.new_page()
    # The dashboard's CSP (same origin, no inline script or style) holds: the browser reports no
    # violation on any page visited (htmx included).
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    sign_in(page, live_server.url, "op@acme.test", then="/env/acme/overview/")  # home redirects to the overview
    shot(page, "integrations")
    page.click("text=Umbrella Corp")
    page.wait_for_selector("#health")
    shot(page, "integration")
    assert "syncs paused since 22 Nov 10:02 UTC" in page.inner_text("#health")
    page.goto(f"{live_server.url}/admin/")
    assert violations == []
    context.close()
