"""Django admin actions: each runs through the changelist POST as a superuser, and goes through
the same domain functions as the dashboard (audit trail, state, link tokens)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from connect_flow.models import ConnectionLink, LinkType
from integrations import health, outbox
from integrations.lib.tokens import hash_secret
from integrations.models import AuditEvent, OutboxMessage

from . import factories

INTEGRATIONS_URL = reverse("admin:integrations_integration_changelist")
LINKS_URL = reverse("admin:connect_flow_connectionlink_changelist")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _run(admin_client, url: str, action: str, objects) -> list[str]:
    response = admin_client.post(url, {"action": action, "_selected_action": [o.pk for o in objects]})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == url
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_check_authentication_now_enqueues_one_check_per_integration(
    admin_client, environment, published, django_capture_on_commit_callbacks
):
    a, b = factories.IntegrationFactory.create_batch(2, environment=environment)
    other = factories.IntegrationFactory(environment=environment)

    with django_capture_on_commit_callbacks(execute=True):
        msgs = _run(admin_client, INTEGRATIONS_URL, "check_auth_now", [a, b])

    queued = [args[0] for task, args in published if task == outbox.CHECK_AUTH]
    assert sorted(queued) == sorted([a.pk, b.pk])
    assert other.pk not in queued
    assert any("2 integrations" in m for m in msgs), msgs


def test_check_authentication_now_enqueues_after_commit(
    admin_client, environment, django_capture_on_commit_callbacks, monkeypatch
):
    integration = factories.IntegrationFactory(environment=environment)
    sent: list[str] = []
    monkeypatch.setattr(
        health.check_integration, "apply_async", lambda args=None, kwargs=None, **kw: sent.append(args[0])
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        _run(admin_client, INTEGRATIONS_URL, "check_auth_now", [integration])
        assert sent == []  # not before the commit

    assert len(callbacks) == 1
    assert sent == [integration.pk]
    assert not OutboxMessage.objects.exists()  # published, so no longer waiting


def test_disable_and_enable_go_through_set_enabled_with_the_admin_as_actor(admin_client, environment, superuser):
    a, b = factories.IntegrationFactory.create_batch(2, environment=environment)

    msgs = _run(admin_client, INTEGRATIONS_URL, "disable_integrations", [a, b])

    for obj in (a, b):
        obj.refresh_from_db()
        assert obj.enabled is False
        assert obj.state == "INACTIVE"
    disabled = AuditEvent.objects.filter(action="integration.disabled")
    assert {e.integration_id for e in disabled} == {a.pk, b.pk}
    assert all(e.actor_user == superuser for e in disabled)
    assert any("2 integrations disabled" in m for m in msgs), msgs

    msgs = _run(admin_client, INTEGRATIONS_URL, "enable_integrations", [a])

    a.refresh_from_db()
    b.refresh_from_db()
    assert a.enabled is True and a.state == "ACTIVE"
    assert b.enabled is False
    enabled = AuditEvent.objects.get(action="integration.enabled")
    assert enabled.integration_id == a.pk and enabled.actor_user == superuser
    assert any("1 integration enabled" in m for m in msgs), msgs


def test_enabling_an_enabled_integration_is_a_no_op(admin_client, environment):
    integration = factories.IntegrationFactory(environment=environment)

    msgs = _run(admin_client, INTEGRATIONS_URL, "enable_integrations", [integration])

    assert not AuditEvent.objects.filter(action__startswith="integration.").exists()
    assert any("already enabled" in m for m in msgs), msgs


def test_create_relink_link_makes_one_magic_link_per_integration_and_shows_its_url(
    admin_client, environment, superuser
):
    a, b = factories.IntegrationFactory.create_batch(2, environment=environment)

    response = admin_client.post(INTEGRATIONS_URL, {"action": "create_magic_links", "_selected_action": [a.pk, b.pk]})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    body = response.content.decode()
    msgs = [line for line in body.splitlines() if "/connect/" in line]

    links = ConnectionLink.objects.filter(integration__in=[a, b])
    assert links.count() == 2
    for integration in (a, b):
        link = links.get(integration=integration)
        assert link.link_type == LinkType.MAGIC_LINK
        assert link.created_by_user == superuser
        assert link.expires_at > timezone.now() + timedelta(days=360)
        shown = [m for m in msgs if integration.pk in m]
        assert len(shown) == 1, msgs
        token = re.search(r"/connect/([^/\s]+)/", shown[0]).group(1)
        assert hash_secret(token) == link.token_hash
    assert AuditEvent.objects.filter(action="link.created").count() == 2
    assert "shown only on this page" in body
    assert "/connect/" not in response.cookies.output()  # never carried in a messages cookie


def test_the_magic_link_url_is_shown_once(admin_client, environment):
    integration = factories.IntegrationFactory(environment=environment)
    response = admin_client.post(
        INTEGRATIONS_URL, {"action": "create_magic_links", "_selected_action": [integration.pk]}, follow=True
    )
    url = re.search(r"https?://[^\s<]+/connect/[^\s<]+/", response.content.decode()).group(0)

    again = admin_client.get(INTEGRATIONS_URL).content.decode()

    assert url not in again
    assert url.rsplit("/", 2)[-2] not in again


def test_revoke_selected_links_revokes_usable_links_and_counts_the_rest(admin_client, environment, superuser):
    integration = factories.IntegrationFactory(environment=environment)
    pending = factories.ConnectionLinkFactory(integration=integration)
    opened = factories.ConnectionLinkFactory(integration=integration, opened_at=timezone.now())
    completed = factories.ConnectionLinkFactory(integration=integration, completed_at=timezone.now())
    expired = factories.ConnectionLinkFactory(integration=integration, expires_at=timezone.now() - timedelta(minutes=1))
    untouched = factories.ConnectionLinkFactory(integration=integration)

    msgs = _run(admin_client, LINKS_URL, "revoke_links", [pending, opened, completed, expired])

    for link in (pending, opened):
        link.refresh_from_db()
        assert link.revoked_at is not None
    for link in (completed, expired, untouched):
        link.refresh_from_db()
        assert link.revoked_at is None
    events = AuditEvent.objects.filter(action="link.revoked")
    assert events.count() == 2
    assert all(e.actor_user == superuser for e in events)
    assert any("2 links revoked" in m and "2 were already unusable" in m for m in msgs), msgs


def test_the_actions_are_offered_on_the_changelists(admin_client, environment):
    factories.ConnectionLinkFactory(integration=factories.IntegrationFactory(environment=environment))

    integrations = admin_client.get(INTEGRATIONS_URL).content.decode()
    links = admin_client.get(LINKS_URL).content.decode()

    for label in ("Check authentication now", "Enable", "Disable", "Create a relink link (magic link, 1 year)"):
        assert label in integrations
    assert "Revoke selected links" in links
