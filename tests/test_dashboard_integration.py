"""The integration page: health in plain words, sync history polling, force sync and check now by role."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.urls import reverse

from integrations import syncs
from integrations.models import AuditEvent, Integration, Sync, WebhookDelivery

from . import factories

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 19, 10, 2, tzinfo=dt_timezone.utc)


@pytest.fixture
def integration(environment):
    return factories.IntegrationFactory(environment=environment, end_user_organization_name="Umbrella Corp")


def _url(name, integration):
    return reverse(f"dashboard:{name}", kwargs={"env": integration.environment.slug, "integration_id": integration.pk})


def test_an_invalid_integration_says_what_is_wrong_in_plain_words(client, viewer, integration):
    integration.state, integration.invalid_since, integration.auth_failing_since = "INVALID", T + timedelta(days=3), T
    integration.last_auth_error = "401 invalid API key"
    integration.save()
    client.force_login(viewer)
    body = client.get(_url("integration", integration)).content.decode()
    assert "Authentication failing since 19 Nov 10:02 — syncs paused since 22 Nov 10:02" in body
    assert "last error: 401 invalid API key" in body


def test_a_failing_but_active_integration_says_when_syncs_pause(client, viewer, integration):
    integration.auth_failing_since = T
    integration.save()
    client.force_login(viewer)
    body = client.get(_url("integration", integration)).content.decode()
    assert "syncs pause at 22 Nov 10:02 unless a check succeeds" in body


def test_a_viewer_sees_no_actions_and_cannot_force_a_sync(client, viewer, integration):
    client.force_login(viewer)
    assert "Force sync" not in client.get(_url("integration", integration)).content.decode()
    assert client.post(_url("force_sync", integration)).status_code == 403
    assert client.post(_url("check_now", integration)).status_code == 403
    assert not Sync.objects.exists()


def test_an_editor_forces_one_sync_and_a_second_click_reports_the_open_one(client, editor, integration, monkeypatch):
    monkeypatch.setattr(syncs, "_enqueue", lambda ids: None)
    client.force_login(editor)
    first = client.post(_url("force_sync", integration), follow=True)
    assert "Sync queued." in first.content.decode()
    second = client.post(_url("force_sync", integration), follow=True)
    assert "A sync is already queued." in second.content.decode()
    assert Sync.objects.filter(integration=integration).count() == 1


def test_force_sync_refuses_an_invalid_integration(client, editor, integration):
    integration.state = "INVALID"
    integration.save()
    client.force_login(editor)
    response = client.post(_url("force_sync", integration), follow=True)
    assert "Cannot sync: the integration is invalid." in response.content.decode()
    assert not Sync.objects.exists()


def test_force_sync_needs_post(client, editor, integration):
    client.force_login(editor)
    assert client.get(_url("force_sync", integration)).status_code == 405


def test_a_running_sync_is_polled_and_polling_stops_when_it_ends(client, viewer, integration):
    sync = factories.SyncFactory(integration=integration, status="RUNNING", ended_at=None, models_done=1, models_total=2)
    client.force_login(viewer)
    page = client.get(_url("integration", integration)).content.decode()
    assert 'hx-trigger="every 2s"' in page and "1/2 models" in page
    fragment = client.get(_url("integration_syncs", integration), headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment and 'hx-trigger="every 2s"' in fragment
    Sync.objects.filter(pk=sync.pk).update(status="SUCCEEDED")
    done = client.get(_url("integration_syncs", integration), headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger' not in done and "Succeeded" in done


def test_credentials_are_never_rendered(client, owner, environment):
    integration = factories.IntegrationFactory(environment=environment, credentials={"api_key": "sbx_NEVER_SHOWN_42"})
    client.force_login(owner)
    body = client.get(_url("integration", integration)).content.decode()
    assert "sbx_NEVER_SHOWN_42" not in body and integration.credentials_encrypted not in body


def test_an_editor_disables_and_enables_keeping_credentials(client, editor, environment):
    integration = factories.IntegrationFactory(environment=environment, credentials={"api_key": "kept"})
    client.force_login(editor)
    client.post(_url("set_enabled", integration), {"enabled": "false"})
    fresh = Integration.objects.get(pk=integration.pk)
    assert (fresh.enabled, fresh.state) == (False, "INACTIVE")
    client.post(_url("set_enabled", integration), {"enabled": "true"})
    fresh = Integration.objects.get(pk=integration.pk)
    assert (fresh.enabled, fresh.state) == (True, "ACTIVE") and fresh.get_credentials() == {"api_key": "kept"}


def test_delete_asks_for_confirmation_then_deletes_with_a_webhook(client, editor, viewer, environment):
    integration = factories.IntegrationFactory(environment=environment)
    factories.WebhookEndpointFactory(environment=environment)
    client.force_login(viewer)
    assert client.post(_url("delete", integration)).status_code == 403
    client.force_login(editor)
    assert "Delete this integration?" in client.get(_url("delete", integration)).content.decode()
    assert Integration.objects.filter(pk=integration.pk).exists()  # GET deletes nothing
    client.post(_url("delete", integration))
    assert not Integration.objects.filter(pk=integration.pk).exists()
    delivery = WebhookDelivery.objects.get(event_type="integration-deleted")
    assert delivery.payload["data"]["integration_id"] == integration.pk
    assert AuditEvent.objects.filter(action="integration.deleted", actor_user=editor).count() == 1
