"""Webhooks in the dashboard: endpoints (owner-managed), the secret shown once, deliveries, replay."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integrations import outbox
from integrations.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

from . import factories

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
ROLE_MATRIX = [("owner", 302), ("editor", 403), ("viewer", 403), ("outsider", 404), (None, 302)]


@pytest.fixture
def queued(published):
    """The deliveries published to the broker so far (recorded instead of sent)."""
    return lambda: [args[0] for task, args in published if task == outbox.DELIVER_WEBHOOK]


@pytest.fixture
def endpoint(environment):
    return factories.WebhookEndpointFactory(environment=environment, url="https://hooks.acme.test/relink")


def _url(name: str, env: str = "acme", **kwargs) -> str:
    return reverse(f"dashboard:{name}", kwargs={"env": env, **kwargs})


def _login(client, request, persona):
    if persona:
        client.force_login(request.getfixturevalue(persona))


# --- List and detail --------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["owner", "editor", "viewer"])
def test_every_member_sees_the_endpoints(client, request, persona, environment, other_environment):
    factories.WebhookEndpointFactory(environment=environment, url="https://a.test/h", event_types=["sync-finished"])
    factories.WebhookEndpointFactory(environment=environment, url="https://b.test/h")
    factories.WebhookEndpointFactory(environment=other_environment, url="https://foreign.test/h")
    _login(client, request, persona)

    body = client.get(_url("webhooks")).content.decode()

    assert "https://a.test/h" in body and "<code>sync-finished</code>" in body
    assert "https://b.test/h" in body and "All events" in body
    assert "foreign.test" not in body
    assert (_url("webhook_new") in body) == (persona == "owner")


@pytest.mark.parametrize("persona", ["editor", "viewer"])
def test_non_owners_see_deliveries_without_buttons(client, request, persona, endpoint):
    factories.WebhookDeliveryFactory(endpoint=endpoint)
    _login(client, request, persona)

    body = client.get(_url("webhook", endpoint_id=endpoint.pk)).content.decode()

    assert "integration-state-changed" in body
    assert "Replay" not in body
    assert "Send test event" not in body
    assert _url("webhook_delete", endpoint_id=endpoint.pk) not in body


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        (404, "HTTP 404", "404 Not Found"),
        (None, "ConnectError: refused", "ConnectError: refused"),
        (299, "", "HTTP 299"),
    ],
)
def test_the_last_response_reads_as_words(status, error, shown):
    delivery = factories.WebhookDeliveryFactory(last_response_status=status, last_error=error)
    assert delivery.last_response == shown


def test_the_detail_page_shows_status_attempts_and_last_response(client, owner, endpoint):
    delivery = factories.WebhookDeliveryFactory(
        endpoint=endpoint, status=DeliveryStatus.FAILED, attempts=2, last_response_status=503
    )
    factories.WebhookAttemptFactory(delivery=delivery, response_status=500, response_body="boom")
    factories.WebhookAttemptFactory(delivery=delivery, response_status=503, response_body="still down")
    client.force_login(owner)

    body = client.get(_url("webhook", endpoint_id=endpoint.pk)).content.decode()

    row = re.search(rf'<tbody id="delivery-{delivery.pk}".*?</tbody>\s*</table>', body, re.S).group(0)
    assert 'class="badge delivery-failed">Failed' in row
    assert "<td>2</td>" in row
    assert "503 Service Unavailable" in row
    assert "Attempts (2)" in row
    assert "boom" in row and "still down" in row
    assert delivery.event_id in row
    assert "Replay" in row


def test_the_detail_page_runs_a_constant_number_of_queries(client, viewer, endpoint):
    client.force_login(viewer)
    url = _url("webhook", endpoint_id=endpoint.pk)

    def make(n: int) -> None:
        for _ in range(n):
            delivery = factories.WebhookDeliveryFactory(endpoint=endpoint)
            factories.WebhookAttemptFactory(delivery=delivery)
            factories.WebhookAttemptFactory(delivery=delivery)

    def rows(response) -> int:
        return len(re.findall(r'<tbody id="delivery-', response.content.decode()))

    make(3)
    with CaptureQueriesContext(connection) as with_3:
        assert rows(client.get(url)) == 3
    make(12)
    with CaptureQueriesContext(connection) as with_15:
        assert rows(client.get(url)) == 15

    assert len(with_15) == len(with_3), [q["sql"] for q in with_15.captured_queries]


def test_the_list_runs_a_constant_number_of_queries(client, viewer, environment):
    client.force_login(viewer)

    def make(n: int) -> None:
        for _ in range(n):
            factories.WebhookDeliveryFactory(endpoint=factories.WebhookEndpointFactory(environment=environment))

    def rows(response) -> int:
        return len(re.findall(r'class="badge endpoint-', response.content.decode()))

    make(3)
    with CaptureQueriesContext(connection) as with_3:
        assert rows(client.get(_url("webhooks"))) == 3
    make(12)
    with CaptureQueriesContext(connection) as with_15:
        assert rows(client.get(_url("webhooks"))) == 15

    assert len(with_15) == len(with_3)


def test_another_environments_endpoint_and_delivery_are_404s(client, owner, other_environment, endpoint, queued):
    foreign = factories.WebhookEndpointFactory(environment=other_environment)
    foreign_delivery = factories.WebhookDeliveryFactory(endpoint=foreign, status=DeliveryStatus.FAILED)
    client.force_login(owner)

    assert client.get(_url("webhook", endpoint_id=foreign.pk)).status_code == 404
    # Our endpoint's URL with another endpoint's delivery: still not found.
    replay = _url("webhook_replay", endpoint_id=endpoint.pk, delivery_id=foreign_delivery.pk)
    assert client.post(replay).status_code == 404
    foreign_delivery.refresh_from_db()
    assert foreign_delivery.status == DeliveryStatus.FAILED
    assert queued() == []


# --- Create and the secret shown once -----------------------------------------------------------


def test_creating_shows_the_secret_once(client, owner, environment):
    client.force_login(owner)

    created = client.post(
        _url("webhook_new"),
        {
            "url": "https://hooks.acme.test/in",
            "description": "CRM",
            "event_types": ["sync-finished", "integration-deleted"],
        },
    )

    endpoint = WebhookEndpoint.objects.get(environment=environment)
    assert created.status_code == 302 and created["Location"] == _url("webhook", endpoint_id=endpoint.pk)  # PRG
    response = client.get(created["Location"])
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = endpoint.get_secret()
    body = response.content.decode()
    assert secret.startswith("whsec_")
    assert secret in body
    assert endpoint.url == "https://hooks.acme.test/in"
    assert endpoint.description == "CRM"
    assert sorted(endpoint.event_types) == ["integration-deleted", "sync-finished"]
    assert endpoint.enabled

    for url in [_url("webhooks"), _url("webhook", endpoint_id=endpoint.pk)]:  # a refresh: no secret, no 2nd
        later = client.get(url).content.decode()
        assert secret not in later
        assert "whsec_" not in later
    assert WebhookEndpoint.objects.filter(environment=environment).count() == 1


def test_no_event_checked_means_all_events(client, owner, environment):
    client.force_login(owner)

    client.post(_url("webhook_new"), {"url": "http://localhost:8001/hook"})

    endpoint = WebhookEndpoint.objects.get(environment=environment)
    assert endpoint.event_types == []
    assert endpoint.wants("connection-flow-failed")


@pytest.mark.parametrize("url", ["ftp://hooks.acme.test/in", "javascript:alert(1)", "not a url", ""])
def test_only_http_and_https_urls_are_accepted(client, owner, environment, url):
    client.force_login(owner)

    response = client.post(_url("webhook_new"), {"url": url, "event_types": ["sync-finished"]})

    assert response.status_code == 200
    body = response.content.decode()
    assert "errorlist" in body
    assert body.count("Enter a valid URL.") <= 1 and body.count("This field is required.") <= 1  # one message
    assert "whsec_" not in body
    assert re.search(r'value="sync-finished" checked', body)  # the user's choices survive
    assert not WebhookEndpoint.objects.filter(environment=environment).exists()


def test_an_unknown_event_type_is_refused(client, owner, environment):
    client.force_login(owner)

    response = client.post(_url("webhook_new"), {"url": "https://x.test/h", "event_types": ["everything"]})

    assert response.status_code == 200
    assert not WebhookEndpoint.objects.filter(environment=environment).exists()


@pytest.mark.parametrize(
    ("persona", "status"), [("owner", 302), ("editor", 403), ("viewer", 403), ("outsider", 404), (None, 302)]
)
def test_who_may_create(client, request, environment, persona, status):  # owner: redirected to the new endpoint
    _login(client, request, persona)

    response = client.post(_url("webhook_new"), {"url": "https://x.test/h"})

    assert response.status_code == status
    assert WebhookEndpoint.objects.filter(environment=environment).exists() == (persona == "owner")


@pytest.mark.parametrize(("persona", "status"), [("owner", 200), ("editor", 403), ("viewer", 403)])
def test_the_new_form_is_for_owners(client, request, environment, persona, status):
    _login(client, request, persona)
    assert client.get(_url("webhook_new")).status_code == status


# --- Enable/disable, delete ------------------------------------------------------------------------


@pytest.mark.parametrize(("persona", "status"), ROLE_MATRIX)
def test_who_may_disable(client, request, endpoint, persona, status):
    _login(client, request, persona)

    response = client.post(_url("webhook_toggle", endpoint_id=endpoint.pk), {"enabled": "0"})

    assert response.status_code == status
    endpoint.refresh_from_db()
    assert endpoint.enabled == (persona != "owner")


def test_disable_then_enable(client, owner, endpoint):
    client.force_login(owner)
    url = _url("webhook_toggle", endpoint_id=endpoint.pk)

    response = client.post(url, {"enabled": "0"})
    assert response["Location"] == _url("webhook", endpoint_id=endpoint.pk)
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "Endpoint disabled." in client.get(response["Location"]).content.decode()

    client.post(url, {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_toggle_is_post_only(client, owner, endpoint):
    client.force_login(owner)
    assert client.get(_url("webhook_toggle", endpoint_id=endpoint.pk)).status_code == 405


def test_delete_asks_for_confirmation_first(client, owner, endpoint):
    client.force_login(owner)

    response = client.get(_url("webhook_delete", endpoint_id=endpoint.pk))

    assert response.status_code == 200
    assert "Delete endpoint?" in response.content.decode()
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


@pytest.mark.parametrize(("persona", "status"), ROLE_MATRIX)
def test_who_may_delete(client, request, endpoint, persona, status):
    factories.WebhookDeliveryFactory(endpoint=endpoint)
    _login(client, request, persona)

    response = client.post(_url("webhook_delete", endpoint_id=endpoint.pk))

    assert response.status_code == status
    exists = WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert exists == (persona != "owner")
    if persona == "owner":
        assert response["Location"] == _url("webhooks")
        assert not WebhookDelivery.objects.filter(endpoint_id=endpoint.pk).exists()


# --- Test event ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("persona", "status"), ROLE_MATRIX)
def test_who_may_send_a_test_event(
    client, request, endpoint, queued, persona, status, django_capture_on_commit_callbacks
):
    other = factories.WebhookEndpointFactory(environment=endpoint.environment)
    _login(client, request, persona)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("webhook_test", endpoint_id=endpoint.pk))

    assert response.status_code == status
    deliveries = list(WebhookDelivery.objects.all())
    if persona == "owner":
        assert len(deliveries) == 1  # this endpoint only
        delivery = deliveries[0]
        assert delivery.endpoint_id == endpoint.pk and delivery.endpoint_id != other.pk
        assert delivery.status == DeliveryStatus.PENDING
        assert delivery.next_attempt_at is not None  # due now, so the task's claim succeeds
        assert delivery.payload["id"] == delivery.event_id
        assert delivery.payload["type"] == "test"
        assert queued() == [delivery.pk]
    else:
        assert deliveries == [] and queued() == []


def test_a_disabled_endpoint_gets_no_test_event(client, owner, endpoint, queued, django_capture_on_commit_callbacks):
    endpoint.enabled = False
    endpoint.save(update_fields=["enabled"])
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(_url("webhook_test", endpoint_id=endpoint.pk))

    assert not WebhookDelivery.objects.exists()
    assert queued() == []


# --- Replay ---------------------------------------------------------------------------------------


@pytest.fixture
def failed(endpoint):
    delivery = factories.WebhookDeliveryFactory(
        endpoint=endpoint, status=DeliveryStatus.FAILED, attempts=8, last_response_status=500, next_attempt_at=None
    )
    factories.WebhookAttemptFactory(delivery=delivery)
    return delivery


@pytest.mark.parametrize(("persona", "status"), ROLE_MATRIX)
def test_who_may_replay(client, request, failed, persona, status, django_capture_on_commit_callbacks):
    _login(client, request, persona)
    url = _url("webhook_replay", endpoint_id=failed.endpoint_id, delivery_id=failed.pk)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url)

    assert response.status_code == status
    failed.refresh_from_db()
    if persona == "owner":
        assert failed.status == DeliveryStatus.PENDING
        assert len(callbacks) == 1
    else:
        assert failed.status == DeliveryStatus.FAILED
        assert callbacks == []


def test_replay_keeps_the_event_id_and_resets_to_pending(
    client, owner, failed, queued, django_capture_on_commit_callbacks
):
    event_id = failed.event_id
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("webhook_replay", endpoint_id=failed.endpoint_id, delivery_id=failed.pk))

    assert response.status_code == 302
    assert response["Location"] == _url("webhook", endpoint_id=failed.endpoint_id)
    failed.refresh_from_db()
    assert failed.event_id == event_id
    assert failed.status == DeliveryStatus.PENDING
    assert failed.next_attempt_at is not None
    assert WebhookDelivery.objects.count() == 1  # the same row, not a new event
    assert queued() == [failed.pk]


def test_replay_over_htmx_returns_the_row(client, owner, failed, queued, django_capture_on_commit_callbacks):
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            _url("webhook_replay", endpoint_id=failed.endpoint_id, delivery_id=failed.pk), headers=HTMX
        )

    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert body.lstrip().startswith(f'<tbody id="delivery-{failed.pk}"')
    assert 'class="badge delivery-pending">Pending' in body
    assert failed.event_id in body
    assert "Attempts (1)" in body
    assert queued() == [failed.pk]


def test_replay_is_post_only(client, owner, failed):
    client.force_login(owner)
    url = _url("webhook_replay", endpoint_id=failed.endpoint_id, delivery_id=failed.pk)
    assert client.get(url).status_code == 405


def test_endpoint_changes_are_audited_with_the_owner_as_actor(client, owner, environment):
    from integrations.models import AuditEvent

    client.force_login(owner)
    client.post(_url("webhook_new"), {"url": "https://hooks.acme.test/a", "description": "", "event_types": []})
    endpoint = WebhookEndpoint.objects.get(url="https://hooks.acme.test/a")
    client.post(_url("webhook_toggle", endpoint_id=endpoint.pk), {"enabled": "0"})
    client.post(_url("webhook_toggle", endpoint_id=endpoint.pk), {"enabled": "0"})  # no change: no event
    client.post(_url("webhook_delete", endpoint_id=endpoint.pk))

    events = list(AuditEvent.objects.filter(environment=environment).order_by("created_at", "pk"))
    assert [e.action for e in events] == [
        "webhook_endpoint.created",
        "webhook_endpoint.disabled",
        "webhook_endpoint.deleted",
    ]
    assert {e.actor_user_id for e in events} == {owner.pk}
    assert all(e.details["endpoint_id"] == endpoint.pk for e in events)
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


# --- Edit -----------------------------------------------------------------------------------------


def _edit(client, endpoint, headers=None, **data):
    fields = {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types}
    return client.post(_url("webhook_edit", endpoint_id=endpoint.pk), {**fields, **data}, headers=headers or {})


@pytest.mark.parametrize(("persona", "status"), ROLE_MATRIX)
def test_who_may_edit(client, request, endpoint, persona, status):
    _login(client, request, persona)

    response = _edit(client, endpoint, url="https://changed.test/h")

    assert response.status_code == status
    endpoint.refresh_from_db()
    assert (endpoint.url == "https://changed.test/h") == (persona == "owner")
    if persona in ("editor", "viewer", "outsider"):
        assert client.get(_url("webhook_edit", endpoint_id=endpoint.pk)).status_code == status


def test_the_edit_form_shows_the_endpoint_as_it_is(client, owner, endpoint):
    endpoint.description, endpoint.event_types = "CRM", ["sync-finished"]
    endpoint.save(update_fields=["description", "event_types"])
    client.force_login(owner)

    page = client.get(_url("webhook", endpoint_id=endpoint.pk)).content.decode()
    body = client.get(_url("webhook_edit", endpoint_id=endpoint.pk)).content.decode()

    assert _url("webhook_edit", endpoint_id=endpoint.pk) in page
    assert "Edit webhook endpoint" in body and "Save endpoint" in body
    assert f'action="{_url("webhook_edit", endpoint_id=endpoint.pk)}"' in body
    assert 'value="https://hooks.acme.test/relink"' in body and 'value="CRM"' in body
    assert 'value="sync-finished" checked' in body and 'value="integration-deleted" checked' not in body
    assert "whsec_" not in body


@pytest.mark.parametrize("htmx", [False, True])
def test_editing_saves_redirects_and_is_audited_without_the_secret(client, owner, endpoint, htmx):
    from integrations.models import AuditEvent

    token = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted
    secret = endpoint.get_secret()
    client.force_login(owner)

    response = _edit(
        client,
        endpoint,
        headers=HTMX if htmx else None,
        url="https://hooks.acme.test/v2",
        description="CRM v2",
        event_types=["sync-finished", "integration-deleted"],
    )

    page = _url("webhook", endpoint_id=endpoint.pk)
    assert (response["HX-Redirect"] if htmx else response["Location"]) == page  # PRG
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (stored.url, stored.description) == ("https://hooks.acme.test/v2", "CRM v2")
    assert stored.event_types == ["integration-deleted", "sync-finished"]
    assert stored.secret_encrypted == token  # the secret is not touched
    assert "Endpoint saved." in client.get(page).content.decode()
    [event] = AuditEvent.objects.filter(action="webhook_endpoint.updated")
    assert event.actor_user_id == owner.pk and event.details["endpoint_id"] == endpoint.pk
    assert event.details["changed"] == {
        "url": {"from": "https://hooks.acme.test/relink", "to": "https://hooks.acme.test/v2"},
        "description": {"from": "", "to": "CRM v2"},
        "event_types": {"from": [], "to": ["integration-deleted", "sync-finished"]},
    }
    dumped = str(event.details)
    assert secret not in dumped and token not in dumped and "whsec_" not in dumped


def test_saving_without_a_change_writes_nothing(client, owner, endpoint):
    from integrations.models import AuditEvent

    client.force_login(owner)

    response = _edit(client, endpoint)

    assert response.status_code == 302
    assert not AuditEvent.objects.exists()
    assert "Nothing to save" in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize("url", ["not a url", "ftp://hooks.acme.test/in", "javascript:alert(1)"])
def test_an_invalid_url_is_one_message_and_keeps_what_was_typed(client, owner, endpoint, url):
    client.force_login(owner)

    response = _edit(client, endpoint, url=url, description="typed", event_types=["sync-finished"])

    assert response.status_code == 200
    body = response.content.decode()
    assert body.count("Enter a valid URL.") == 1
    assert 'value="typed"' in body and 'value="sync-finished" checked' in body
    endpoint.refresh_from_db()
    assert endpoint.url == "https://hooks.acme.test/relink" and endpoint.description == ""


def test_a_private_address_is_refused_on_edit_like_on_create(client, owner, endpoint, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    client.force_login(owner)

    created = client.post(_url("webhook_new"), {"url": "http://10.0.0.5/internal"}).content.decode()
    response = _edit(client, endpoint, url="http://10.0.0.5/internal", event_types=["sync-finished"])

    body = response.content.decode()
    assert response.status_code == 200
    message = "Relink cannot send webhooks there: 10.0.0.5 is a private address; webhooks go to public addresses only."
    assert message in body and message in created
    assert 'value="http://10.0.0.5/internal"' in body and 'value="sync-finished" checked' in body
    endpoint.refresh_from_db()
    assert endpoint.url == "https://hooks.acme.test/relink" and endpoint.event_types == []


def test_the_edited_event_filter_decides_what_the_endpoint_receives(client, owner, endpoint, environment):
    from integrations import webhooks

    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(owner)

    _edit(client, endpoint, event_types=["sync-finished"])
    assert webhooks.emit_integration_state_changed(integration) == []

    _edit(client, endpoint, event_types=["integration-state-changed"])
    assert [d.endpoint_id for d in webhooks.emit_integration_state_changed(integration)] == [endpoint.pk]

    _edit(client, endpoint, event_types=[])  # none checked: all events
    endpoint.refresh_from_db()
    assert endpoint.event_types == [] and endpoint.wants("connection-flow-failed")


# --- Deliveries: readable status, live refresh ------------------------------------------------------


def _region(body: str) -> str:
    return re.search(r'<section class="card" id="deliveries-region"[^>]*>', body).group(0)


def test_the_status_and_last_response_read_as_words(client, viewer, endpoint):
    from datetime import timedelta

    from django.utils import timezone

    factories.WebhookDeliveryFactory(
        endpoint=endpoint,
        attempts=1,
        last_response_status=404,
        last_error="HTTP 404",
        next_attempt_at=timezone.now() + timedelta(minutes=5),
    )
    factories.WebhookDeliveryFactory(
        endpoint=endpoint, status=DeliveryStatus.FAILED, attempts=8, last_error="ConnectError: connection refused"
    )
    factories.WebhookDeliveryFactory(endpoint=endpoint, status=DeliveryStatus.DELIVERED, last_response_status=200)
    client.force_login(viewer)

    body = client.get(_url("webhook", endpoint_id=endpoint.pk)).content.decode()

    assert 'class="badge delivery-pending">Pending</span> <small class="muted">retry' in body
    assert 'class="badge delivery-failed">Failed' in body and 'class="badge delivery-delivered">Delivered' in body
    assert "<td>404 Not Found</td>" in body and "<td>200 OK</td>" in body
    assert "<td>ConnectError: connection refused</td>" in body
    for code in ("PENDING", "DELIVERED", "FAILED"):
        assert f">{code}<" not in body


def test_the_deliveries_poll_while_one_is_due_and_stop_when_done(client, viewer, endpoint):
    from datetime import timedelta

    from django.utils import timezone

    delivery = factories.WebhookDeliveryFactory(endpoint=endpoint, next_attempt_at=timezone.now())
    client.force_login(viewer)
    url = _url("webhook", endpoint_id=endpoint.pk)

    region = _region(client.get(url).content.decode())
    assert f'hx-get="{url}"' in region and 'hx-trigger="every 2s, deliveriesChanged from:body"' in region

    for status, next_attempt_at in [
        (DeliveryStatus.DELIVERED, None),
        (DeliveryStatus.FAILED, None),
        (DeliveryStatus.PENDING, timezone.now() + timedelta(hours=2)),  # the next retry is hours away
        (DeliveryStatus.PENDING, timezone.now() - timedelta(minutes=10)),  # lost: the sweep resends it
    ]:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=status, next_attempt_at=next_attempt_at)
        body = client.get(url).content.decode()
        assert "every 2s" not in body, status
        assert 'hx-trigger="deliveriesChanged from:body"' in _region(body)
    # Being sent: claimed for the lease, still polled.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now() + timedelta(seconds=60)
    )
    assert "every 2s" in _region(client.get(url).content.decode())


def test_the_poll_gets_only_the_region(client, viewer, endpoint):
    factories.WebhookDeliveryFactory(endpoint=endpoint)
    client.force_login(viewer)

    response = client.get(_url("webhook", endpoint_id=endpoint.pk), headers=HTMX)

    body = response.content.decode()
    assert "<html" not in body and "Rotate secret" not in body
    assert body.lstrip().startswith('<section class="card" id="deliveries-region"')
    assert "integration-state-changed" in body
    assert "HX-Request" in response["Vary"]


def test_a_test_event_shows_its_result_without_a_reload(client, owner, environment, queued):
    """Send test event (a plain POST, then the page), the worker sends it, the region's poll shows it."""
    from integrations import webhooks

    from .webhook_receiver import start_receiver

    receiver, server = start_receiver([404])
    try:
        endpoint = factories.WebhookEndpointFactory(environment=environment, url=receiver.url)
        client.force_login(owner)
        page = _url("webhook", endpoint_id=endpoint.pk)

        response = client.post(_url("webhook_test", endpoint_id=endpoint.pk))
        assert response["Location"] == page
        body = client.get(page).content.decode()
        assert "Test event queued" in body and "every 2s" in _region(body)
        [delivery] = WebhookDelivery.objects.filter(endpoint=endpoint)
        assert 'class="badge delivery-pending">Pending' in body

        webhooks.attempt_delivery(delivery.pk)  # the worker: 404, retried in 5 s
        poll = client.get(page, headers=HTMX).content.decode()
        assert "404 Not Found" in poll and "every 2s" in _region(poll)

        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
        webhooks.attempt_delivery(delivery.pk)  # the retry: 200
        poll = client.get(page, headers=HTMX).content.decode()
    finally:
        server.shutdown()
    assert len(receiver.received) == 2
    assert 'class="badge delivery-delivered">Delivered' in poll and "200 OK" in poll
    assert "every 2s" not in poll  # done: the poll stops


def test_a_replay_over_htmx_asks_the_region_to_refresh(
    client, owner, failed, queued, django_capture_on_commit_callbacks
):
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            _url("webhook_replay", endpoint_id=failed.endpoint_id, delivery_id=failed.pk), headers=HTMX
        )

    assert "deliveriesChanged" in response["HX-Trigger-After-Settle"]
    region = _region(client.get(_url("webhook", endpoint_id=failed.endpoint_id)).content.decode())
    assert "every 2s" in region


def test_the_endpoint_page_has_no_inline_script_or_handler(client, owner, endpoint):
    from integrations import audit, webhooks

    webhooks.rotate_secret(endpoint, audit.SYSTEM, webhooks.MAX_SECRET_OVERLAP)
    factories.WebhookDeliveryFactory(endpoint=endpoint)
    client.force_login(owner)

    for url in (_url("webhook", endpoint_id=endpoint.pk), _url("webhook_rotate", endpoint_id=endpoint.pk)):
        body = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body)
        assert not re.search(r"\son[a-z]+=", body)
