"""Repair where the problem is: Reconnect on the status card and in the lists, link status of
broken integrations, bulk reconnection links with their CSV, and the live status card after
"Check authentication now"."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connect_flow.links import find_link
from connect_flow.models import ConnectionLink, LinkKind, LinkType
from integrations.models import AuditEvent, IntegrationState

from . import factories

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def _invalid(environment, name="Pinnacle Fitness", **kw):
    now = timezone.now()
    return factories.IntegrationFactory(
        environment=environment,
        end_user_organization_name=name,
        state=IntegrationState.INVALID,
        auth_failing_since=now - timedelta(days=4),
        invalid_since=now - timedelta(days=1),
        **kw,
    )


def _page(client, env, integration) -> str:
    return client.get(reverse("dashboard:integration", args=[env.slug, integration.pk])).content.decode()


def _health_card(html: str) -> str:
    start = html.index('id="health"')
    return html[start : html.index("</section>", start)]


# --- Status card ------------------------------------------------------------------------------


def test_invalid_status_card_leads_with_reconnect_and_offers_no_force_sync(client, environment, editor):
    integration = _invalid(environment)
    client.force_login(editor)
    card = _health_card(_page(client, environment, integration))
    assert reverse("dashboard:reconnect", args=[environment.slug, integration.pk]) in card
    assert "No reconnection link has been sent yet" in card
    assert card.index("Reconnect") < card.index("Check authentication now")
    assert reverse("dashboard:force_sync", args=[environment.slug, integration.pk]) not in card


def test_healthy_status_card_has_force_sync_and_no_reconnect(client, environment, editor):
    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(editor)
    card = _health_card(_page(client, environment, integration))
    assert reverse("dashboard:force_sync", args=[environment.slug, integration.pk]) in card
    assert reverse("dashboard:reconnect", args=[environment.slug, integration.pk]) not in card


def test_viewer_sees_the_link_status_but_no_reconnect_button(client, environment, viewer):
    integration = _invalid(environment)
    factories.ConnectionLinkFactory(integration=integration, opened_at=timezone.now())
    client.force_login(viewer)
    card = _health_card(_page(client, environment, integration))
    assert "Opened" in card
    assert reverse("dashboard:reconnect", args=[environment.slug, integration.pk]) not in card


# --- One-click reconnect ----------------------------------------------------------------------


def test_reconnect_creates_a_magic_link_shown_once_in_the_relink_section(client, environment, editor):
    integration = _invalid(environment)
    factories.ConnectionLinkFactory(integration=integration, language="fr", revoked_at=timezone.now())
    client.force_login(editor)
    url = reverse("dashboard:reconnect", args=[environment.slug, integration.pk])
    response = client.post(url)
    section = reverse("dashboard:relink", args=[environment.slug, integration.pk])
    assert response.status_code == 302 and response["Location"] == section + "#relink"
    link = ConnectionLink.objects.exclude(revoked_at__isnull=False).get(integration=integration)
    assert link.link_type == LinkType.MAGIC_LINK and link.language == "fr"  # the language last used

    shown = client.get(section).content.decode()
    token = re.search(r'id="relink-url" value="[^"]*/connect/([^/"]+)/"', shown).group(1)
    assert find_link(token) == link
    assert 'id="relink-url"' not in client.get(section).content.decode()  # once


def test_reconnect_with_a_live_link_points_to_it_instead_of_making_a_second(client, environment, editor):
    integration = _invalid(environment)
    factories.ConnectionLinkFactory(integration=integration, link_type=LinkType.MAGIC_LINK)
    client.force_login(editor)
    url = reverse("dashboard:reconnect", args=[environment.slug, integration.pk])
    response = client.post(url, follow=True)
    assert "is still valid" in response.content.decode()
    assert ConnectionLink.objects.filter(integration=integration).count() == 1
    # Asking explicitly for a new one (the status card's button when a link is live) makes one.
    client.post(url, {"new": "1"})
    assert ConnectionLink.objects.filter(integration=integration).count() == 2


def test_reconnect_htmx_answers_hx_redirect(client, environment, editor):
    integration = _invalid(environment)
    client.force_login(editor)
    response = client.post(reverse("dashboard:reconnect", args=[environment.slug, integration.pk]), headers=HTMX)
    assert response.status_code == 200 and response["HX-Redirect"].endswith("#relink")


def test_reconnect_role_matrix(client, environment, viewer, outsider):
    integration = _invalid(environment)
    url = reverse("dashboard:reconnect", args=[environment.slug, integration.pk])
    client.force_login(viewer)
    assert client.post(url).status_code == 403
    client.force_login(outsider)
    assert client.post(url).status_code == 404
    assert client.get(url).status_code in (404, 405)
    assert not ConnectionLink.objects.exists()


# --- Link status in the lists -----------------------------------------------------------------


def test_list_and_overview_show_each_broken_integrations_link_status(client, environment, editor):
    none = _invalid(environment, "No Link AG")
    sent = _invalid(environment, "Sent Ltd")
    factories.ConnectionLinkFactory(integration=sent)
    expired = _invalid(environment, "Expired SA")
    factories.ConnectionLinkFactory(integration=expired, expires_at=timezone.now() - timedelta(minutes=1))
    healthy = factories.IntegrationFactory(environment=environment, end_user_organization_name="Fine Inc")
    client.force_login(editor)
    for url in (
        reverse("dashboard:integrations", args=[environment.slug]),
        reverse("dashboard:overview", args=[environment.slug]),
    ):
        html = client.get(url).content.decode()
        for obj, label in ((none, "No link"), (sent, "Sent, not opened"), (expired, "Expired")):
            row = html[html.index(obj.end_user_organization_name) :]
            row = row[: row.index("</tr>")]
            assert label in row, (url, obj.end_user_organization_name)
        assert reverse("dashboard:reconnect", args=[environment.slug, none.pk]) in html
        assert reverse("dashboard:reconnect", args=[environment.slug, healthy.pk]) not in html


def test_link_status_costs_the_same_queries_for_1_or_20_broken_integrations(client, environment, editor):
    client.force_login(editor)
    url = reverse("dashboard:integrations", args=[environment.slug])
    factories.ConnectionLinkFactory(integration=_invalid(environment, "One"))
    client.get(url)
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    for i in range(19):
        factories.ConnectionLinkFactory(integration=_invalid(environment, f"Broken {i}"))
    with CaptureQueriesContext(connection) as twenty:
        client.get(url)
    assert len(twenty) == len(one)


# --- Bulk links and CSV -------------------------------------------------------------------------


def test_bulk_links_shown_once_then_csv_once(client, environment, editor):
    a = _invalid(environment, "Alpha")
    b = _invalid(environment, "=HYPERLINK(evil)")
    client.force_login(editor)
    listing = client.get(reverse("dashboard:integrations", args=[environment.slug]) + "?state=INVALID").content.decode()
    assert 'form="bulk-relink"' in listing

    response = client.post(
        reverse("dashboard:relink_bulk", args=[environment.slug]),
        {"integration": [a.pk, b.pk], "link_type": LinkType.MAGIC_LINK, "language": "es"},
    )
    results_url = reverse("dashboard:relink_bulk", args=[environment.slug])
    assert response.status_code == 302 and response["Location"] == results_url
    links = ConnectionLink.objects.filter(kind=LinkKind.RECONNECT)
    assert {link.integration_id for link in links} == {a.pk, b.pk}
    assert all(link.language == "es" for link in links)
    assert AuditEvent.objects.filter(action="link.created").count() == 2

    page = client.get(results_url)
    html = page.content.decode()
    assert "Alpha" in html and html.count("/connect/") >= 2
    assert "no-store" in page["Cache-Control"]
    assert f"{settings.BASE_URL}/connect/" in html
    assert f"{settings.BASE_URL}/connect/" not in client.get(results_url, follow=True).content.decode()  # once

    download = client.get(reverse("dashboard:relink_bulk_csv", args=[environment.slug]))
    assert download["Content-Type"].startswith("text/csv")
    assert "attachment" in download["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    assert {r["organization"] for r in rows} == {"Alpha", "'=HYPERLINK(evil)"}  # no formula runs
    for row in rows:
        token = row["link"].rstrip("/").rsplit("/", 1)[-1]
        assert find_link(token).integration_id == row["integration_id"]
    assert set(rows[0]) >= {"organization", "email", "link"}
    again = client.get(reverse("dashboard:relink_bulk_csv", args=[environment.slug]))
    assert again.status_code == 302  # once
    assert ConnectionLink.objects.count() == 2  # nothing was created twice


def test_bulk_ignores_another_environments_integrations(client, environment, other_environment, editor):
    mine = _invalid(environment)
    theirs = _invalid(other_environment)
    client.force_login(editor)
    client.post(reverse("dashboard:relink_bulk", args=[environment.slug]), {"integration": [mine.pk, theirs.pk]})
    assert list(ConnectionLink.objects.values_list("integration_id", flat=True)) == [mine.pk]


def test_bulk_with_nothing_selected_or_bad_choice_creates_nothing(client, environment, editor):
    mine = _invalid(environment)
    client.force_login(editor)
    url = reverse("dashboard:relink_bulk", args=[environment.slug])
    assert "Select at least one" in client.post(url, {}, follow=True).content.decode()
    assert (
        "Choose a link type"
        in client.post(url, {"integration": mine.pk, "language": "xx"}, follow=True).content.decode()
    )
    assert not ConnectionLink.objects.exists()


def test_bulk_role_matrix(client, environment, viewer, outsider):
    mine = _invalid(environment)
    url = reverse("dashboard:relink_bulk", args=[environment.slug])
    client.force_login(viewer)
    assert client.post(url, {"integration": mine.pk}).status_code == 403
    assert client.get(reverse("dashboard:relink_bulk_csv", args=[environment.slug])).status_code == 403
    assert (
        'form="bulk-relink"'
        not in client.get(reverse("dashboard:integrations", args=[environment.slug])).content.decode()
    )
    client.force_login(outsider)
    assert client.post(url, {"integration": mine.pk}).status_code == 404
    assert not ConnectionLink.objects.exists()


# --- Check now, live ---------------------------------------------------------------------------


def test_check_now_htmx_polls_the_card_until_the_result_is_in(client, environment, editor, published):
    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(editor)
    response = client.post(reverse("dashboard:check_now", args=[environment.slug, integration.pk]), headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith("<section")
    assert 'hx-trigger="every 2s"' in html and "Checking authentication" in html
    poll = re.search(r'hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")

    still = client.get(poll, headers=HTMX).content.decode()
    assert 'hx-trigger="every 2s"' in still

    integration.last_auth_check_at = timezone.now()
    integration.last_auth_outcome = "AUTH_FAILED"
    integration.save()
    done = client.get(poll, headers=HTMX).content.decode()
    assert 'hx-trigger="every 2s"' not in done
    assert "Check finished" in done and "Authentication failed" in done


def test_check_now_without_javascript_redirects_with_a_message(client, environment, editor, published):
    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(editor)
    response = client.post(reverse("dashboard:check_now", args=[environment.slug, integration.pk]))
    assert response.status_code == 302


def test_health_poll_is_tenant_checked_and_tolerates_bad_input(client, environment, editor, outsider):
    integration = factories.IntegrationFactory(environment=environment)
    url = reverse("dashboard:integration_health", args=[environment.slug, integration.pk])
    client.force_login(editor)
    assert client.get(url + "?after=nonsense").status_code == 200
    assert client.get(url + "?after=1e400").status_code == 200
    client.force_login(outsider)
    assert client.get(url).status_code == 404
