"""The operator's path from "something broke" to "it syncs again", in a real browser.

Overview → the INVALID integration → pick a new scope config (diff appears without a page load)
→ magic link created and copied → the customer completes it in a fresh context → the operator
sees ACTIVE, the new scope config and the new sync finished. Screenshots of every step.
"""

from __future__ import annotations

import pytest

from integrations.models import Integration
from sandbox.models import SandboxCompany
from tests import factories
from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

CORE = {
    "hris_employees": {
        "availability": "ENABLED",
        "fields": {"first_name": "ENABLED", "last_name": "ENABLED", "salary": "DISABLED"},
    }
}
COMPENSATION = {
    "hris_employees": {
        "availability": "ENABLED",
        "fields": {"first_name": "ENABLED", "last_name": "ENABLED", "salary": "ENABLED"},
    }
}


def test_operator_repairs_an_invalid_integration(browser, live_server, settings, shot):
    settings.BASE_URL = live_server.url
    environment = factories.EnvironmentFactory(slug="acme", name="Acme production")
    operator = factories.UserFactory(email="op@acme.test")
    factories.MembershipFactory(environment=environment, user=operator, role="editor")
    core = factories.ScopeConfigFactory(environment=environment, name="Core employees", spec=CORE)
    compensation = factories.ScopeConfigFactory(
        environment=environment, name="Employees + compensation", spec=COMPENSATION
    )
    company = SandboxCompany.objects.create(name="Umbrella Corp")
    factories.SandboxEmployeeFactory.create_batch(4, company=company)
    old_key, old_raw = company.create_key()
    integration = factories.IntegrationFactory(
        environment=environment,
        end_user_organization_name="Umbrella Corp",
        scope_config=core,
        credentials={"api_key": old_raw},
        state="INVALID",
        auth_failing_since="2026-11-19T10:02:00Z",
        invalid_since="2026-11-22T10:02:00Z",
    )
    old_key.revoked_at = old_key.created_at
    old_key.save()
    _, new_raw = company.create_key(label="new")

    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    sign_in(page, live_server.url, "op@acme.test", then="/env/acme/overview/")
    shot(page, "overview")

    page.click("text=Umbrella Corp")  # click 1
    page.wait_for_selector("#relink")
    shot(page, "integration-invalid")
    url_before = page.url
    page.select_option("#relink-scope", label="Employees + compensation")
    page.wait_for_selector("#scope-diff >> text=compensation:read")
    assert page.url == url_before  # swapped in place, no page load
    shot(page, "scope-diff")
    page.select_option("#relink-link-type", "MAGIC_LINK")
    page.click("button:has-text('Create link')")  # click 2
    page.wait_for_selector("#relink-url")
    link = page.input_value("#relink-url")
    page.click("button[data-copy-target=relink-url]")  # click 3: the link is on the clipboard
    assert page.evaluate("navigator.clipboard.readText()") == link
    shot(page, "link-created")

    customer = browser.new_context()
    customer_page = customer.new_page()
    customer_page.goto(link)
    customer_page.fill("input[name=api_key]", new_raw)
    shot(customer_page, "customer-form")
    customer_page.click("button[type=submit]")
    customer_page.wait_for_selector("text=Connection successful")
    shot(customer_page, "customer-done")
    customer.close()

    page.reload()
    page.wait_for_selector("#health")
    shot(page, "integration-active")
    assert "Active" in page.inner_text("#health")
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "ACTIVE" and fresh.scope_config == compensation
    latest = fresh.syncs.order_by("-created_at").first()
    assert latest.status == "SUCCEEDED" and latest.records_per_model == {"hris_employees": 4}
    assert "Succeeded" in page.inner_text("#syncs")
    context.close()
