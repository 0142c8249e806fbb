"""Rotating an endpoint's signing secret with an overlap window.

During the window every delivery carries two Standard Webhooks signatures ("v1,<new> v1,<old>"),
so a receiver verifying with either secret accepts it; after the window (or once the operator ends
it) only the new secret signs. The new secret is shown once, after the redirect; the audit trail
records the rotation, never a secret. Deliveries here are really sent to a local receiver.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations import audit, webhooks
from integrations.models import AuditEvent, DeliveryStatus, WebhookEndpoint

from . import factories
from .webhook_receiver import start_receiver

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
DAY = timedelta(hours=24)
ROLE_MATRIX = [("owner", 302), ("editor", 403), ("viewer", 403), ("outsider", 404), (None, 302)]


@pytest.fixture
def receiver():
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()


@pytest.fixture
def endpoint(environment, receiver):
    return factories.WebhookEndpointFactory(environment=environment, url=receiver.url)


def _url(name: str, endpoint: WebhookEndpoint) -> str:
    return reverse(f"dashboard:{name}", kwargs={"env": endpoint.environment.slug, "endpoint_id": endpoint.pk})


def _login(client, request, persona):
    if persona:
        client.force_login(request.getfixturevalue(persona))


def _deliver(endpoint: WebhookEndpoint, receiver):
    """One test event, really sent; the request the receiver got."""
    delivery = webhooks.send_test_event(endpoint)
    assert webhooks.attempt_delivery(delivery.pk).status == DeliveryStatus.DELIVERED
    return receiver.received[-1]


def _verifies(secret: str, request) -> bool:
    with time_machine.travel(int(request.headers["webhook-timestamp"]), tick=False):
        try:
            Webhook(secret).verify(request.body, request.headers)
        except WebhookVerificationError:
            return False
    return True


def _rotate(endpoint: WebhookEndpoint, overlap: timedelta = DAY) -> tuple[str, str]:
    old = endpoint.get_secret()
    new = webhooks.rotate_secret(endpoint, audit.SYSTEM, overlap)
    return old, new


# --- Signing ------------------------------------------------------------------------------------


def test_during_the_overlap_every_delivery_is_signed_with_both_secrets(endpoint, receiver):
    old, new = _rotate(endpoint)
    assert new.startswith("whsec_") and new != old

    request = _deliver(endpoint, receiver)

    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert _verifies(old, request) and _verifies(new, request)  # the same headers, either secret
    assert not _verifies(factories.WebhookEndpointFactory().get_secret(), request)
    # The new secret signs first.
    timestamp = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), tz=UTC)
    expected = Webhook(new).sign(request.headers["webhook-id"], timestamp, request.body.decode())
    assert signatures[0] == expected


def test_after_the_window_only_the_new_secret_signs_and_the_old_one_is_cleared(endpoint, receiver):
    old, new = _rotate(endpoint, timedelta(hours=1))

    with time_machine.travel(timezone.now() + timedelta(hours=1, seconds=1)):
        request = _deliver(endpoint, receiver)

    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert _verifies(new, request) and not _verifies(old, request)
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert stored.previous_secret_encrypted == "" and stored.previous_secret_expires_at is None


def test_still_inside_the_window_both_sign(endpoint, receiver):
    old, new = _rotate(endpoint, timedelta(hours=1))

    with time_machine.travel(timezone.now() + timedelta(minutes=59)):
        request = _deliver(endpoint, receiver)

    assert _verifies(old, request) and _verifies(new, request)


def test_without_an_overlap_the_old_secret_stops_at_once(endpoint, receiver):
    old, new = _rotate(endpoint, timedelta(0))

    request = _deliver(endpoint, receiver)

    assert _verifies(new, request) and not _verifies(old, request)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).previous_secret_encrypted == ""


def test_ending_the_overlap_now_stops_the_old_secret(endpoint, receiver):
    old, new = _rotate(endpoint)

    assert webhooks.end_secret_overlap(endpoint, audit.SYSTEM) is True
    assert webhooks.end_secret_overlap(endpoint, audit.SYSTEM) is False  # nothing left to end
    request = _deliver(endpoint, receiver)

    assert _verifies(new, request) and not _verifies(old, request)
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("webhook_endpoint.secret_overlap_ended") == 1


def test_a_second_rotation_inside_the_window_keeps_only_one_previous_secret(endpoint, receiver):
    first, second = _rotate(endpoint)
    _, third = _rotate(endpoint)

    request = _deliver(endpoint, receiver)

    assert _verifies(third, request) and _verifies(second, request) and not _verifies(first, request)
    rotated = AuditEvent.objects.filter(action="webhook_endpoint.secret_rotated").order_by("pk")
    assert [e.details["replaced_open_overlap"] for e in rotated] == [False, True]


def test_an_overlap_longer_than_seven_days_is_refused(endpoint):
    with pytest.raises(ValueError):
        webhooks.rotate_secret(endpoint, audit.SYSTEM, timedelta(days=8))
    assert not AuditEvent.objects.exists()


def test_secrets_stay_encrypted_and_the_key_commands_cover_the_previous_secret(endpoint, settings, capsys):
    old, new = _rotate(endpoint)
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert stored.previous_secret_encrypted.startswith("gAAAA") and old not in stored.previous_secret_encrypted
    before = stored.previous_secret_encrypted
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, *settings.FERNET_KEYS]

    call_command("rotate_fernet_keys")

    out = capsys.readouterr().out
    assert "webhook endpoints.previous_secret: rotated=1 already_current=0 undecryptable=0" in out
    assert "webhook endpoints: rotated=1" in out  # the current secret, as before
    settings.FERNET_KEYS = [new_key]  # the old key gone: both secrets still decrypt and sign
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert stored.previous_secret_encrypted != before
    assert webhooks.signing_secrets(stored) == [new, old]
    call_command("check_encrypted_rows")
    assert "webhook endpoints.previous_secret: 1 rows, 0 undecryptable" in capsys.readouterr().out


def test_the_admin_never_joins_either_secret_column():
    from integrations.admin import SECRET_COLUMNS

    assert SECRET_COLUMNS[WebhookEndpoint] == ("secret_encrypted", "previous_secret_encrypted")


# --- Dashboard: rotate, shown once, end the overlap ----------------------------------------------


@pytest.mark.parametrize(("persona", "status"), ROLE_MATRIX)
def test_who_may_rotate(client, request, endpoint, persona, status):
    before = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted
    _login(client, request, persona)

    response = client.post(_url("webhook_rotate", endpoint), {"overlap": "86400", "confirmed": "1"})

    assert response.status_code == status
    rotated = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted != before
    assert rotated == (persona == "owner")
    if persona in ("editor", "viewer", "outsider"):
        assert client.get(_url("webhook_rotate", endpoint)).status_code == status


@pytest.mark.parametrize(("persona", "status"), ROLE_MATRIX)
def test_who_may_end_the_overlap(client, request, endpoint, persona, status):
    _rotate(endpoint)
    _login(client, request, persona)

    response = client.post(_url("webhook_end_overlap", endpoint))

    assert response.status_code == status
    still_open = webhooks.previous_secret_signs_until(WebhookEndpoint.objects.get(pk=endpoint.pk)) is not None
    assert still_open == (persona != "owner")


def test_the_endpoint_page_offers_rotation_with_a_confirmation(client, owner, endpoint):
    client.force_login(owner)

    body = client.get(_url("webhook", endpoint)).content.decode()

    form = re.search(r'<form[^>]*id="rotate-secret".*?</form>', body, re.S).group(0)
    assert f'action="{_url("webhook_rotate", endpoint)}"' in form and 'method="post"' in form
    assert "hx-confirm=" in form and """hx-vals='{"confirmed": "1"}'""" in form
    assert '<option value="86400" selected>24 hours</option>' in form
    assert all(f'value="{s}"' in form for s in ("0", "3600", "604800"))
    assert "Previous secret still signs" not in body and "End overlap now" not in body


def test_without_javascript_rotating_asks_for_confirmation_first(client, owner, endpoint):
    before = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted
    client.force_login(owner)

    response = client.post(_url("webhook_rotate", endpoint), {"overlap": "3600"})  # no "confirmed"

    assert response.status_code == 200
    body = response.content.decode()
    assert "Rotate the signing secret?" in body
    assert 'name="confirmed" value="1"' in body
    assert 'value="3600" checked' in body  # the choice survives
    assert "whsec_" not in body
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted == before
    assert not AuditEvent.objects.exists()


def test_the_confirmation_page_defaults_to_a_day(client, owner, endpoint):
    client.force_login(owner)
    body = client.get(_url("webhook_rotate", endpoint)).content.decode()
    assert 'value="86400" checked' in body and body.count(" checked") == 1


def test_an_unknown_overlap_is_refused(client, owner, endpoint):
    client.force_login(owner)

    response = client.post(_url("webhook_rotate", endpoint), {"overlap": "99999999", "confirmed": "1"})

    assert response.status_code == 400
    assert "errorlist" in response.content.decode()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("htmx", [False, True])
def test_rotating_shows_the_new_secret_exactly_once(client, owner, endpoint, receiver, htmx):
    old = endpoint.get_secret()
    client.force_login(owner)

    response = client.post(
        _url("webhook_rotate", endpoint), {"overlap": "86400", "confirmed": "1"}, headers=HTMX if htmx else {}
    )

    page = _url("webhook", endpoint)
    if htmx:  # hx-post: htmx follows HX-Redirect with a full page load
        assert response.status_code == 200 and response["HX-Redirect"] == page
    else:  # Post/Redirect/Get
        assert response.status_code == 302 and response["Location"] == page
    assert "whsec_" not in response.content.decode()
    assert not any("whsec_" in value for value in response.cookies.values())
    new = WebhookEndpoint.objects.get(pk=endpoint.pk).get_secret()

    shown = client.get(page)
    body = shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    assert new in body and old not in body
    assert "Signing secret rotated" in body and "signed with both the previous secret and this one" in body

    for _ in range(2):  # a refresh: no secret, and nothing rotated again
        later = client.get(page).content.decode()
        assert "whsec_" not in later and new not in later
        assert "Previous secret still signs until" in later
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).get_secret() == new
    assert AuditEvent.objects.filter(action="webhook_endpoint.secret_rotated").count() == 1
    # Both secrets sign the next delivery.
    request = _deliver(endpoint, receiver)
    assert _verifies(old, request) and _verifies(new, request)


def test_a_poll_of_the_deliveries_does_not_take_the_secret_shown_once(client, owner, endpoint):
    client.force_login(owner)
    client.post(_url("webhook_rotate", endpoint), {"overlap": "0", "confirmed": "1"})

    poll = client.get(_url("webhook", endpoint), headers=HTMX).content.decode()
    assert "whsec_" not in poll

    body = client.get(_url("webhook", endpoint)).content.decode()
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).get_secret() in body
    assert "The previous secret no longer signs deliveries" in body


def test_the_secret_is_shown_only_on_its_own_endpoints_page(client, owner, endpoint, environment):
    other = factories.WebhookEndpointFactory(environment=environment)
    client.force_login(owner)
    client.post(_url("webhook_rotate", endpoint), {"overlap": "0", "confirmed": "1"})

    assert "whsec_" not in client.get(_url("webhook", other)).content.decode()
    assert "whsec_" in client.get(_url("webhook", endpoint)).content.decode()


@pytest.mark.parametrize("htmx", [False, True])
def test_ending_the_overlap_from_the_page(client, owner, endpoint, htmx):
    _rotate(endpoint)
    client.force_login(owner)
    page = _url("webhook", endpoint)
    body = client.get(page).content.decode()
    assert "Previous secret still signs until" in body
    form = re.search(rf'<form[^>]*action="{_url("webhook_end_overlap", endpoint)}".*?</form>', body, re.S).group(0)
    assert "hx-confirm=" in form and "End overlap now" in form

    response = client.post(_url("webhook_end_overlap", endpoint), headers=HTMX if htmx else {})

    assert (response["HX-Redirect"] if htmx else response["Location"]) == page
    body = client.get(page).content.decode()
    assert "The previous secret no longer signs deliveries" in body
    assert "Previous secret still signs until" not in body and "End overlap now" not in body
    assert webhooks.signing_secrets(WebhookEndpoint.objects.get(pk=endpoint.pk)) == [endpoint.get_secret()]
    # Again: nothing to end, nothing audited.
    client.post(_url("webhook_end_overlap", endpoint))
    assert "had already stopped signing" in client.get(page).content.decode()
    assert AuditEvent.objects.filter(action="webhook_endpoint.secret_overlap_ended").count() == 1


def test_the_overlap_notice_goes_once_the_window_has_passed(client, viewer, endpoint):
    _rotate(endpoint, timedelta(hours=1))
    client.force_login(viewer)

    assert "Previous secret still signs until" in client.get(_url("webhook", endpoint)).content.decode()
    assert "End overlap now" not in client.get(_url("webhook", endpoint)).content.decode()  # owners only
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert "Previous secret still signs until" not in client.get(_url("webhook", endpoint)).content.decode()


def test_rotation_audit_rows_name_the_overlap_and_never_a_secret(client, owner, endpoint):
    old = endpoint.get_secret()
    old_token = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted
    client.force_login(owner)

    client.post(_url("webhook_rotate", endpoint), {"overlap": "604800", "confirmed": "1"})
    client.post(_url("webhook_end_overlap", endpoint))

    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    events = list(AuditEvent.objects.order_by("pk"))
    assert [e.action for e in events] == ["webhook_endpoint.secret_rotated", "webhook_endpoint.secret_overlap_ended"]
    assert {e.actor_user_id for e in events} == {owner.pk}
    assert all(e.details["endpoint_id"] == endpoint.pk for e in events)
    assert events[0].details["overlap_seconds"] == 604800
    assert events[0].details["previous_signs_until"]
    dumped = json.dumps([e.details for e in events])
    for secret in (old, stored.get_secret(), old_token, stored.secret_encrypted):
        assert secret not in dumped
    assert "whsec_" not in dumped and "gAAAA" not in dumped
