"""Connect a new customer from the dashboard: the form, the link shown once after a redirect,
the list of connection links with their status, revoke, and the role matrix."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from connect_flow.links import find_link
from connect_flow.models import ConnectionLink, LinkKind, LinkType
from integrations.models import AuditEvent

from . import factories

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def _url(env) -> str:
    return reverse("dashboard:connect", kwargs={"env": env.slug})


def _form(**overrides) -> dict:
    data = {
        "end_user_organization_name": "Initech",
        "end_user_email": "it@initech.test",
        "end_user_origin_id": "cust-42",
        "tool": "",
        "scope_config": "",
        "language": "de",
        "link_type": LinkType.MAGIC_LINK,
    }
    data.update(overrides)
    return data


def _shown_url(html: str) -> str | None:
    match = re.search(r'id="connect-url" value="([^"]+)"', html)
    return match.group(1) if match else None


def test_editor_creates_a_link_shown_once_after_a_redirect(client, environment, editor):
    client.force_login(editor)
    response = client.post(_url(environment), _form())
    assert response.status_code == 302
    assert response["Location"] == _url(environment) + "#new-link"

    page = client.get(_url(environment))
    html = page.content.decode()
    url = _shown_url(html)
    assert url and "/connect/" in url
    assert "no-store" in page["Cache-Control"]
    link = ConnectionLink.objects.get()
    assert link.kind == LinkKind.CONNECT and link.end_user_organization_name == "Initech"
    assert link.language == "de" and link.link_type == LinkType.MAGIC_LINK and link.end_user_origin_id == "cust-42"
    token = url.rstrip("/").rsplit("/", 1)[-1]
    assert find_link(token) == link  # the shown URL opens this link; only its hash is stored
    assert link.token_hash != token
    assert "shown only this once" in html

    # Refresh: the link is not shown again and nothing new is created.
    again = client.get(_url(environment)).content.decode()
    assert _shown_url(again) is None
    assert ConnectionLink.objects.count() == 1
    assert AuditEvent.objects.filter(action="link.created").count() == 1


def test_htmx_post_redirects_with_hx_redirect(client, environment, editor):
    client.force_login(editor)
    response = client.post(_url(environment), _form(), headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == _url(environment) + "#new-link"
    assert ConnectionLink.objects.count() == 1


def test_chosen_tool_and_scope_config(client, environment, editor):
    config = factories.ScopeConfigFactory(environment=environment, name="Everything")
    client.force_login(editor)
    client.post(_url(environment), _form(tool="sandbox", scope_config=config.pk))
    link = ConnectionLink.objects.get()
    assert link.tool == "sandbox" and link.scope_config == config and link.category == "HRIS"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"end_user_organization_name": ""}, "This field is required."),
        ({"end_user_email": "not-an-email"}, "Enter a valid email address."),
        ({"tool": "no-such-tool"}, "Select a valid choice."),
        ({"language": "xx"}, "Select a valid choice."),
    ],
)
def test_invalid_input_rerenders_with_the_message_and_keeps_what_was_typed(
    client, environment, editor, overrides, message
):
    client.force_login(editor)
    response = client.post(_url(environment), _form(end_user_origin_id="kept-value", **overrides))
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert 'value="kept-value"' in html
    assert not ConnectionLink.objects.exists()


def test_another_environments_scope_config_is_refused(client, environment, other_environment, editor):
    foreign = factories.ScopeConfigFactory(environment=other_environment, name="Theirs")
    client.force_login(editor)
    response = client.post(_url(environment), _form(scope_config=foreign.pk))
    assert response.status_code == 400
    assert not ConnectionLink.objects.exists()


def test_embedded_link_without_allowed_origins_is_explained(client, environment, editor):
    client.force_login(editor)
    page = client.get(_url(environment)).content.decode()
    assert "allowed embed origins" in page
    client.post(_url(environment), _form(link_type=LinkType.EMBEDDED))
    shown = client.get(_url(environment)).content.decode()
    assert "blank frame" in shown

    environment.allowed_origins = ["https://app.example.com"]
    environment.save()
    assert "blank frame" not in client.get(_url(environment)).content.decode()


def test_links_list_shows_status_and_leads_to_the_completed_integration(client, environment, viewer):
    pending = factories.ConnectionLinkFactory(
        integration=None, environment=environment, kind=LinkKind.CONNECT, end_user_organization_name="Waiting Inc"
    )
    done_integration = factories.IntegrationFactory(environment=environment, end_user_organization_name="Done GmbH")
    factories.ConnectionLinkFactory(
        integration=done_integration,
        environment=environment,
        kind=LinkKind.CONNECT,
        end_user_organization_name="Done GmbH",
        completed_at=done_integration.created_at,
    )
    client.force_login(viewer)
    html = client.get(_url(environment)).content.decode()
    assert "Waiting Inc" in html and "Sent, not opened" in html
    assert reverse("dashboard:integration", args=[environment.slug, done_integration.pk]) in html
    assert "Completed" in html
    # A viewer sees the list but no form and no revoke button.
    assert 'name="end_user_email"' not in html
    assert reverse("dashboard:connect_revoke", args=[environment.slug, pending.pk]) not in html


def test_revoke_a_connect_link(client, environment, editor):
    link = factories.ConnectionLinkFactory(integration=None, environment=environment, kind=LinkKind.CONNECT)
    client.force_login(editor)
    response = client.post(reverse("dashboard:connect_revoke", args=[environment.slug, link.pk]))
    assert response.status_code == 302
    link.refresh_from_db()
    assert link.revoked_at is not None
    assert AuditEvent.objects.filter(action="link.revoked").exists()


def test_role_matrix(client, environment, viewer, outsider):
    client.force_login(viewer)
    assert client.get(_url(environment)).status_code == 200
    assert client.post(_url(environment), _form()).status_code == 403
    link = factories.ConnectionLinkFactory(integration=None, environment=environment, kind=LinkKind.CONNECT)
    assert client.post(reverse("dashboard:connect_revoke", args=[environment.slug, link.pk])).status_code == 403
    client.force_login(outsider)
    assert client.get(_url(environment)).status_code == 404
    assert client.post(_url(environment), _form()).status_code == 404
    assert not ConnectionLink.objects.filter(kind=LinkKind.CONNECT, end_user_organization_name="Initech").exists()


def test_anonymous_is_sent_to_login(client, environment):
    response = client.get(_url(environment))
    assert response.status_code == 302 and "/login" in response["Location"]


def test_another_environments_link_cannot_be_revoked(client, environment, other_environment, editor):
    foreign = factories.ConnectionLinkFactory(integration=None, environment=other_environment, kind=LinkKind.CONNECT)
    client.force_login(editor)
    assert client.post(reverse("dashboard:connect_revoke", args=[environment.slug, foreign.pk])).status_code == 404
    foreign.refresh_from_db()
    assert foreign.revoked_at is None


def test_the_links_audit_names_a_first_connection(client, environment, editor):
    client.force_login(editor)
    client.post(_url(environment), _form())
    event = AuditEvent.objects.get(action="link.created")
    assert event.details["kind"] == "CONNECT"


# --- Your preferences (time zone) ---------------------------------------------------------------


def test_preferences_save_the_time_zone_after_a_redirect(client, editor):
    client.force_login(editor)
    response = client.post("/preferences/", {"name": "Eddie", "time_zone": "Europe/Berlin"})
    assert response.status_code == 302 and response["Location"] == "/preferences/"
    editor.refresh_from_db()
    assert (editor.name, editor.time_zone) == ("Eddie", "Europe/Berlin")
    page = client.get("/preferences/").content.decode()
    assert "CET</time>" in page or "CEST</time>" in page


def test_preferences_refuse_an_unknown_zone_and_keep_the_name(client, editor):
    client.force_login(editor)
    response = client.post("/preferences/", {"name": "Kept Name", "time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Select a valid choice." in html and 'value="Kept Name"' in html
    editor.refresh_from_db()
    assert editor.time_zone == ""


def test_preferences_need_a_sign_in(client):
    assert client.get("/preferences/").status_code == 302
