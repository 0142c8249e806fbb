"""The "Relink integration" section: scope preview, creating a link (shown once), the links list, revoke."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connect_flow.models import ConnectionLink, LinkStatus
from integrations.lib.tokens import hash_secret
from integrations.models import AuditEvent

from . import factories

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 23, 10, 2, tzinfo=UTC)
HTMX = {"HX-Request": "true"}
NEW = '<span class="badge perm-new">new</span>'
REMOVED = '<span class="badge perm-removed">removed</span>'


def _employees(salary: str) -> dict:
    return {"availability": "ENABLED", "fields": {"first_name": "ENABLED", "last_name": "ENABLED", "salary": salary}}


@pytest.fixture
def no_salary(environment):
    """The integration's current scope: employees without salary, plus absences."""
    return factories.ScopeConfigFactory(
        environment=environment,
        name="Basic",
        spec={"hris_employees": _employees("DISABLED"), "hris_absences": {"availability": "ENABLED"}},
    )


@pytest.fixture
def with_salary(environment):
    """Employees with salary, no absences."""
    return factories.ScopeConfigFactory(
        environment=environment, name="Payroll", spec={"hris_employees": _employees("ENABLED")}
    )


@pytest.fixture
def integration(environment, no_salary):
    return factories.IntegrationFactory(
        environment=environment, scope_config=no_salary, end_user_organization_name="Umbrella Corp"
    )


@pytest.fixture
def foreign_scope(other_environment):
    return factories.ScopeConfigFactory(
        environment=other_environment, name="Globex secret scope", spec={"hris_employees": _employees("ENABLED")}
    )


def _url(name: str, integration, **kwargs) -> str:
    kwargs = {"env": integration.environment.slug, "integration_id": integration.pk, **kwargs}
    return reverse(f"dashboard:{name}", kwargs=kwargs)


def _create(client, integration, htmx: bool = False, **data):
    data = {"scope_config": "", "link_type": "EMBEDDED", "language": "en", **data}
    return client.post(_url("relink_create", integration), data, headers=HTMX if htmx else {})


def _shown_token(body: str) -> str:
    match = re.search(r'id="relink-url" value="http://[^"]+/connect/([\w-]+)/"', body)
    assert match, "no link shown"
    return match.group(1)


# --- The section on the integration page -------------------------------------------------------


def test_the_integration_page_renders_the_section_without_javascript(client, viewer, integration):
    client.force_login(viewer)

    body = client.get(_url("integration", integration)).content.decode()

    assert 'id="relink"' in body and 'name="scope_config"' in body
    assert 'hx-trigger="load"' not in body  # rendered in place, no second request


def test_the_section_fragment_has_the_scope_selector_and_the_create_form(client, editor, integration, with_salary):
    other_category = factories.ScopeConfigFactory(
        environment=integration.environment, name="Recruiting", category="ATS"
    )
    client.force_login(editor)

    response = client.get(_url("relink", integration), headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="relink"' in body
    assert '<option value="">Keep current (Basic)</option>' in body
    assert f'<option value="{with_salary.pk}">Payroll</option>' in body
    assert other_category.name not in body  # only the integration's category
    assert 'hx-trigger="change"' in body and 'hx-include="#relink-scope"' in body and 'hx-target="#scope-diff"' in body
    assert "Create link" in body
    assert 'value="MAGIC_LINK">Magic link (1 year)' in body
    assert ">Deutsch<" in body and ">Français<" in body and ">Español<" in body
    assert 'hx-trigger="linksChanged from:body"' in body


def test_the_plain_section_url_is_the_whole_page_with_the_section(client, editor, integration):
    client.force_login(editor)

    body = client.get(_url("relink", integration)).content.decode()

    assert "<html" in body and 'id="syncs"' in body and "Create link" in body


def test_a_viewer_sees_the_links_but_neither_the_create_form_nor_revoke(client, viewer, integration):
    factories.ConnectionLinkFactory(integration=integration)
    client.force_login(viewer)

    body = client.get(_url("relink", integration), headers=HTMX).content.decode()

    assert "Create link" not in body and 'name="link_type"' not in body
    assert "Revoke" not in body
    assert "Sent, not opened" in body


# --- The scope diff -----------------------------------------------------------------------------


def test_choosing_a_scope_config_shows_added_permissions_as_new_and_removed_ones(
    client, viewer, integration, with_salary
):
    client.force_login(viewer)

    response = client.get(_url("relink_scope_diff", integration), {"scope_config": with_salary.pk}, headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="scope-diff"') and "<html" not in body
    assert f"<code>compensation:read</code> {NEW}" in body
    assert "<code>employees:read</code></li>" in body  # needed before too: not new
    assert f"<del><code>absences:read</code></del> {REMOVED}" in body
    changes = _changes(body)
    assert ("hris_employees.salary", "DISABLED", "ENABLED") in changes
    assert ("hris_absences", "ENABLED", "DISABLED") in changes
    assert ("hris_employees.first_name", "ENABLED", "ENABLED") not in changes  # unchanged rows are left out
    assert "HX-Request" in response["Vary"]


def test_preview_without_javascript_shows_the_same_diff_on_the_page(client, viewer, integration, with_salary):
    client.force_login(viewer)

    body = client.get(_url("relink_scope_diff", integration), {"scope_config": with_salary.pk}).content.decode()

    assert "<html" in body and 'id="syncs"' in body
    assert f"<code>compensation:read</code> {NEW}" in body
    assert f"<del><code>absences:read</code></del> {REMOVED}" in body
    assert f'<option value="{with_salary.pk}" selected>Payroll</option>' in body
    assert re.search(r'<form class="relink-form" method="get" action="[^"]+/relink/scope-diff/#relink">', body)
    assert "Preview changes" in body


def test_the_reverse_move_marks_salary_removed(client, viewer, environment, no_salary, with_salary):
    integration = factories.IntegrationFactory(environment=environment, scope_config=with_salary)
    client.force_login(viewer)

    body = _diff(client, integration, no_salary.pk)

    assert f"<del><code>compensation:read</code></del> {REMOVED}" in body
    assert f"<code>absences:read</code> {NEW}" in body


def test_keep_current_shows_no_changes(client, viewer, integration):
    client.force_login(viewer)

    body = _diff(client, integration, "")

    assert "keeps the current scope config (Basic)" in body
    assert NEW not in body and REMOVED not in body


def test_the_diff_refuses_another_environments_scope_config(client, viewer, integration, foreign_scope):
    client.force_login(viewer)

    body = _diff(client, integration, foreign_scope.pk)

    assert "Choose one of this environment&#x27;s HRIS scope configs." in body
    assert foreign_scope.name not in body and NEW not in body


def _diff(client, integration, scope_config_id: str) -> str:
    url = _url("relink_scope_diff", integration)
    return client.get(url, {"scope_config": scope_config_id}, headers=HTMX).content.decode()


def _changes(body: str) -> list[tuple[str, str, str]]:
    return re.findall(
        r'<tr><td><code>([\w.]+)</code>.*?<span class="badge avail-\w+">(\w+)</span></td>'
        r'<td><span class="badge avail-\w+">(\w+)</span>',
        body,
    )


# --- Creating a link ----------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["owner", "editor"])
def test_owners_and_editors_create_links(client, request, persona, integration):
    client.force_login(request.getfixturevalue(persona))

    response = _create(client, integration)

    assert response.status_code == 302  # Post/Redirect/Get (no JavaScript)
    assert ConnectionLink.objects.filter(integration=integration).count() == 1


def test_a_viewer_cannot_create_a_link(client, viewer, integration):
    client.force_login(viewer)

    assert _create(client, integration).status_code == 403
    assert _create(client, integration, htmx=True).status_code == 403
    assert not ConnectionLink.objects.exists()


def test_an_outsider_gets_404_and_creates_nothing(client, outsider, integration):
    client.force_login(outsider)

    response = _create(client, integration)

    assert response.status_code == 404
    assert "Umbrella Corp" not in response.content.decode()
    assert not ConnectionLink.objects.exists()


def test_anonymous_users_are_sent_to_login(client, integration):
    response = _create(client, integration)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")
    assert not ConnectionLink.objects.exists()


def test_creating_needs_post(client, editor, integration):
    client.force_login(editor)

    assert client.get(_url("relink_create", integration)).status_code == 405


def test_a_magic_link_with_a_scope_config_is_shown_once_with_its_expiry(client, editor, integration, with_salary):
    client.force_login(editor)

    with time_machine.travel(T, tick=False):
        created = _create(client, integration, scope_config=with_salary.pk, link_type="MAGIC_LINK", language="de")
        # Without JavaScript: Post/Redirect/Get; the redirected page shows the link once.
        assert created.status_code == 302 and created["Location"] == _url("relink", integration) + "#relink"
        response = client.get(created["Location"])

    link = ConnectionLink.objects.get()
    assert (link.integration, link.scope_config) == (integration, with_salary)
    assert (link.link_type, link.language) == ("MAGIC_LINK", "de")
    assert link.created_by_user.email == "editor@acme.test"
    assert link.expires_at == T + timedelta(days=365)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert "<html" in body
    token = _shown_token(body)
    assert hash_secret(token) == link.token_hash
    assert "valid until 23 Nov 2027 10:02 (1 year)" in body
    assert "Deutsch · valid until" in body
    assert AuditEvent.objects.filter(action="link.created", details__link_id=link.pk).exists()

    # Only its hash is stored: no later page shows the link again.
    for url in (_url("integration", integration), _url("relink", integration), _url("relink_links", integration)):
        for headers in ({}, HTMX):
            later = client.get(url, headers=headers).content.decode()
            assert token not in later, url
    assert "Payroll" in client.get(_url("relink_links", integration), headers=HTMX).content.decode()


def test_the_htmx_branch_returns_the_form_fragment_and_announces_the_change(client, editor, integration):
    client.force_login(editor)

    with time_machine.travel(T, tick=False):
        response = _create(client, integration, htmx=True)

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="relink-create">') and "<html" not in body
    assert "linksChanged" in response["HX-Trigger"]
    assert "no-store" in response["Cache-Control"]
    link = ConnectionLink.objects.get()
    assert (link.link_type, link.scope_config) == ("EMBEDDED", None)
    assert f'id="relink-result-{link.pk}"' in body  # what a revoke replaces out of band
    assert hash_secret(_shown_token(body)) == link.token_hash
    assert "valid until 23 Nov 2026 11:02 (1 hour)" in body
    assert 'data-copy-target="relink-url"' in body and 'id="relink-url"' in body and "readonly" in body


def test_another_environments_scope_config_is_refused_and_creates_nothing(client, editor, integration, foreign_scope):
    client.force_login(editor)

    for htmx in (False, True):
        response = _create(client, integration, htmx=htmx, scope_config=foreign_scope.pk)

        body = response.content.decode()
        assert "No link created: choose one of this environment&#x27;s HRIS scope configs." in body
        assert foreign_scope.name not in body
        assert 'id="relink-url"' not in body
        assert "HX-Trigger" not in response
    assert not ConnectionLink.objects.exists()


@pytest.mark.parametrize(("field", "value"), [("language", "nl"), ("link_type", "SMOKE_SIGNAL")])
def test_bad_input_is_refused_with_a_message(client, editor, integration, field, value):
    client.force_login(editor)

    response = _create(client, integration, htmx=True, **{field: value})

    body = response.content.decode()
    assert "No link created:" in body and f"{field} must be one of" in body
    assert not ConnectionLink.objects.exists()


def test_a_scope_config_of_another_category_is_refused(client, editor, integration):
    ats = factories.ScopeConfigFactory(environment=integration.environment, name="Recruiting", category="ATS")
    client.force_login(editor)

    body = _create(client, integration, htmx=True, scope_config=ats.pk).content.decode()

    assert "No link created:" in body and "is for ATS, not HRIS" in body
    assert not ConnectionLink.objects.exists()


# --- The links list and revoking ----------------------------------------------------------------


def _revoke(client, link, htmx: bool = False):
    return client.post(_url("relink_revoke", link.integration, link_id=link.pk), headers=HTMX if htmx else {})


def _row(body: str, link) -> str:
    match = re.search(rf'<tr id="link-{link.pk}">(.*?)</tr>', body, re.S)
    assert match, f"no row for {link.pk}"
    return match.group(1)


def test_the_links_list_shows_each_links_facts(client, editor, integration, with_salary):
    api_key = factories.ApiKeyFactory(environment=integration.environment, name="Backend", prefix="rlk_abcd")
    now = timezone.now()
    pending = factories.ConnectionLinkFactory(
        integration=integration,
        created_by_user=editor,
        scope_config=with_salary,
        link_type="MAGIC_LINK",
        language="fr",
        expires_at=now + timedelta(days=365),
    )
    opened = factories.ConnectionLinkFactory(integration=integration, created_by_api_key=api_key, opened_at=now)
    completed = factories.ConnectionLinkFactory(integration=integration, completed_at=now)
    expired = factories.ConnectionLinkFactory(integration=integration, expires_at=now - timedelta(minutes=1))
    revoked = factories.ConnectionLinkFactory(integration=integration, revoked_at=now)
    sibling = factories.IntegrationFactory(environment=integration.environment)
    elsewhere = factories.ConnectionLinkFactory(integration=sibling)
    client.force_login(editor)

    body = client.get(_url("relink_links", integration), headers=HTMX).content.decode()

    assert body.lstrip().startswith('<div id="relink-links"')
    row = _row(body, pending)
    assert "Magic link (1 year)" in row and "Français" in row and "Payroll" in row and "editor@acme.test" in row
    assert "Sent, not opened" in row and ">Revoke</button>" in row
    row = _row(body, opened)
    assert "Opened" in row and ">Revoke</button>" in row and "API key Backend" in row and "Keep current" in row
    for link, status in ((completed, "Completed"), (expired, "Expired"), (revoked, "Revoked")):
        row = _row(body, link)
        assert status in row and ">Revoke</button>" not in row
    assert f'id="link-{elsewhere.pk}"' not in body


@pytest.mark.parametrize("persona", ["owner", "editor"])
def test_revoking_marks_the_link_revoked(client, request, persona, integration):
    user = request.getfixturevalue(persona)
    link = factories.ConnectionLinkFactory(integration=integration)
    client.force_login(user)

    response = _revoke(client, link)

    assert response.status_code == 302
    assert response["Location"] == _url("relink", integration) + "#relink-links"
    link.refresh_from_db()
    assert link.revoked_at is not None and link.status == LinkStatus.REVOKED
    assert AuditEvent.objects.filter(action="link.revoked", actor_user=user, details__link_id=link.pk).exists()
    page = client.get(response["Location"]).content.decode()
    assert "Link revoked" in page
    assert "Revoked" in _row(page, link) and ">Revoke</button>" not in _row(page, link)


def test_the_htmx_revoke_asks_the_table_to_refresh(client, editor, integration):
    link = factories.ConnectionLinkFactory(integration=integration)
    client.force_login(editor)

    response = _revoke(client, link, htmx=True)

    assert response.status_code == 200
    assert "linksChanged" in response["HX-Trigger"]
    # The box that may still show the link's address is replaced out of band: no dead URL stays.
    body = response.content.decode()
    assert f'id="relink-result-{link.pk}"' in body and 'hx-swap-oob="true"' in body and "/connect/" not in body
    link.refresh_from_db()
    assert link.revoked_at is not None
    table = client.get(_url("relink_links", integration), headers=HTMX).content.decode()
    assert "Revoked" in _row(table, link)


def test_a_completed_link_cannot_be_revoked(client, editor, integration):
    link = factories.ConnectionLinkFactory(integration=integration, completed_at=timezone.now())
    client.force_login(editor)

    page = client.post(_url("relink_revoke", integration, link_id=link.pk), follow=True).content.decode()

    link.refresh_from_db()
    assert link.revoked_at is None
    assert "That link was already completed." in page
    assert not AuditEvent.objects.filter(action="link.revoked").exists()


def test_a_viewer_cannot_revoke(client, viewer, integration):
    link = factories.ConnectionLinkFactory(integration=integration)
    client.force_login(viewer)

    assert _revoke(client, link).status_code == 403
    assert _revoke(client, link, htmx=True).status_code == 403
    link.refresh_from_db()
    assert link.revoked_at is None


def test_an_outsider_cannot_revoke(client, outsider, integration):
    link = factories.ConnectionLinkFactory(integration=integration)
    client.force_login(outsider)

    assert _revoke(client, link).status_code == 404
    link.refresh_from_db()
    assert link.revoked_at is None


def test_anonymous_users_cannot_revoke(client, integration):
    link = factories.ConnectionLinkFactory(integration=integration)

    response = _revoke(client, link)

    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    link.refresh_from_db()
    assert link.revoked_at is None


def test_a_link_is_revoked_only_through_its_own_integration(client, editor, integration):
    sibling = factories.IntegrationFactory(environment=integration.environment)
    link = factories.ConnectionLinkFactory(integration=sibling)
    client.force_login(editor)

    response = client.post(_url("relink_revoke", integration, link_id=link.pk))

    assert response.status_code == 404
    link.refresh_from_db()
    assert link.revoked_at is None


@pytest.mark.parametrize("url_name", ["relink_links", "relink"])
def test_the_links_list_runs_a_constant_number_of_queries(client, editor, integration, with_salary, url_name):
    api_key = factories.ApiKeyFactory(environment=integration.environment)
    client.force_login(editor)
    url = _url(url_name, integration)

    def make(n: int) -> None:
        for i in range(n):
            factories.ConnectionLinkFactory(
                integration=integration,
                scope_config=with_salary if i % 2 else None,
                created_by_user=editor if i % 2 else None,
                created_by_api_key=None if i % 2 else api_key,
                opened_at=timezone.now() if i % 3 else None,
            )

    make(2)
    with CaptureQueriesContext(connection) as with_2:
        assert client.get(url, headers=HTMX).content.decode().count('<tr id="link-') == 2
    make(10)
    with CaptureQueriesContext(connection) as with_12:
        assert client.get(url, headers=HTMX).content.decode().count('<tr id="link-') == 12

    assert len(with_12) == len(with_2), [q["sql"] for q in with_12.captured_queries]


def test_without_javascript_only_the_create_button_carries_the_csrf_token(editor, integration, with_salary):
    """The section is one GET form (Preview changes); "Create link" switches it to POST and is the
    only carrier of the CSRF token, so the token never lands in a preview URL."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(editor)
    page = browser.get(_url("relink", integration)).content.decode()
    form = re.search(r'<form class="relink-form".*?</form>', page, re.S).group(0)
    assert 'type="hidden"' not in form
    button = re.search(
        r'<button type="submit" class="primary" formmethod="post" formaction="([^"#]+)#relink" '
        r'name="csrfmiddlewaretoken" value="([^"]+)"',
        form,
    )
    assert button, form

    refused = browser.post(button.group(1), {"scope_config": with_salary.pk, "link_type": "EMBEDDED", "language": "en"})
    assert refused.status_code == 403  # CSRF
    created = browser.post(
        button.group(1),
        {
            "scope_config": with_salary.pk,
            "link_type": "EMBEDDED",
            "language": "en",
            "csrfmiddlewaretoken": button.group(2),
        },
    )
    assert created.status_code == 302 and created["Location"].endswith("#relink")
    assert ConnectionLink.objects.get().scope_config == with_salary
    shown = browser.get(created["Location"]).content.decode()
    assert hash_secret(_shown_token(shown)) == ConnectionLink.objects.get().token_hash  # once, after the redirect
    again = browser.get(created["Location"]).content.decode()  # a refresh: no link, and no second one
    assert ConnectionLink.objects.count() == 1 and "/connect/" not in again
