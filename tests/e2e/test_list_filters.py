"""The integrations list in a real browser: typing, choosing a state and paging swap only the
table, the address bar holds the clean bookmarkable URL, and Back restores the previous view."""

from __future__ import annotations

import pytest

from tests import factories
from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def _orgs(page) -> list[str]:
    return page.locator("#integrations-table tbody td:nth-child(2) a").all_inner_texts()


def test_filtering_and_searching_swap_the_table_and_push_a_clean_url(browser, live_server, shot):
    environment = factories.EnvironmentFactory(slug="acme", name="Acme production")
    user = factories.UserFactory(email="op@acme.test")
    factories.MembershipFactory(environment=environment, user=user, role="viewer")
    for name, state in [
        ("Umbrella Corp", "INVALID"),
        ("Umbrella Pharma", "ACTIVE"),
        ("Initech", "INVALID"),
        ("Globex", "ACTIVE"),
    ]:
        factories.IntegrationFactory(environment=environment, end_user_organization_name=name, state=state)
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, live_server.url, "op@acme.test", then="/env/acme/", next_url="/env/acme/")
    assert sorted(_orgs(page)) == ["Globex", "Initech", "Umbrella Corp", "Umbrella Pharma"]
    # A marker on the document: a full page load would drop it, an htmx swap keeps it.
    page.evaluate("window.__noReload = true")

    page.locator("#filter-q").press_sequentially("umbr", delay=40)
    page.wait_for_url("**/env/acme/?q=umbr")
    page.wait_for_function("() => document.querySelectorAll('#integrations-table tbody tr').length === 2")
    assert sorted(_orgs(page)) == ["Umbrella Corp", "Umbrella Pharma"]

    page.select_option("#filter-state", "INVALID")
    page.wait_for_url("**/env/acme/?state=INVALID&q=umbr")
    page.wait_for_function("() => document.querySelectorAll('#integrations-table tbody tr').length === 1")
    assert _orgs(page) == ["Umbrella Corp"]
    assert "1 integration matches the filters" in page.inner_text(".result-count")
    assert page.evaluate("window.__noReload") is True
    shot(page, "filtered")

    page.go_back()
    page.wait_for_url("**/env/acme/?q=umbr")
    page.wait_for_function("() => document.querySelectorAll('#integrations-table tbody tr').length === 2")
    assert page.input_value("#filter-q") == "umbr"

    # The bookmarked URL opens the same view in a fresh page.
    fresh = context.new_page()
    fresh.goto(f"{live_server.url}/env/acme/?state=INVALID&q=umbr")
    assert _orgs(fresh) == ["Umbrella Corp"] and fresh.input_value("#filter-state") == "INVALID"
    context.close()
