"""Webhook targets: public addresses only (a server-side request forgery guard), checked when an
endpoint is saved and again on the address each delivery connects to."""

from __future__ import annotations

import ipaddress
import time

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations import webhooks
from integrations.lib import targets
from integrations.models import DeliveryStatus, WebhookEndpoint

from . import factories
from .webhook_receiver import start_receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def guarded(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # the production default


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "100.64.0.1"]
    + ["::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::"],
)
def test_non_public_addresses_are_refused(address):
    assert targets.refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert targets.refusal(ipaddress.ip_address(address)) == ""


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "https://localhost/hook", "http://169.254.169.254/latest", "http://[::1]/"]
)
def test_the_dashboard_refuses_a_private_target_and_keeps_the_input(guarded, client, owner, environment, url):
    client.force_login(owner)
    response = client.post(f"/env/{environment.slug}/webhooks/new/", {"url": url, "event_types": ["sync-finished"]})
    body = response.content.decode()
    assert response.status_code == 200 and "Relink cannot send webhooks there" in body
    assert "public addresses only" in body and 'value="sync-finished" checked' in body
    assert not WebhookEndpoint.objects.exists()


def test_the_command_refuses_a_private_target(guarded, environment):
    with pytest.raises(CommandError, match="loopback"):
        call_command("create_webhook_endpoint", "--environment", environment.slug, "--url", "http://127.0.0.1:9/h")
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_delivery_to_an_address_that_became_private_is_refused_and_nothing_is_sent(settings, host):
    """Saved while allowed (or while its name resolved to a public address: DNS rebinding), then
    delivered under the guard: the connection is refused on the resolved address."""
    receiver, server = start_receiver()
    try:
        url = receiver.url.replace("127.0.0.1", host)
        delivery = factories.WebhookDeliveryFactory(
            endpoint=factories.WebhookEndpointFactory(url=url), next_attempt_at=timezone.now()
        )
        settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
        done = webhooks.attempt_delivery(delivery.pk)
    finally:
        server.shutdown()
    assert receiver.received == []
    assert done.status == DeliveryStatus.PENDING and "loopback address" in done.last_error


def test_with_private_targets_allowed_a_local_receiver_gets_the_delivery(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver, server = start_receiver()
    try:
        delivery = factories.WebhookDeliveryFactory(
            endpoint=factories.WebhookEndpointFactory(url=receiver.url), next_attempt_at=timezone.now()
        )
        assert webhooks.attempt_delivery(delivery.pk).status == DeliveryStatus.DELIVERED
    finally:
        server.shutdown()
    assert len(receiver.received) == 1


def test_the_admin_refuses_a_private_target_on_edit(guarded, rf, superuser):
    from django.contrib import admin

    endpoint = factories.WebhookEndpointFactory(url="https://hooks.example.com/relink")
    request = rf.post("/admin/")
    request.user = superuser
    form_class = admin.site._registry[WebhookEndpoint].get_form(request, endpoint)
    data = {"url": "http://10.0.0.5/internal", "description": "", "event_types": "[]", "enabled": "on"}
    form = form_class(data=data, instance=endpoint)
    assert not form.is_valid() and "private address" in str(form.errors["url"])


# --- With one pooled client per process ----------------------------------------------------------


def _deliver(url: str):
    delivery = factories.WebhookDeliveryFactory(
        endpoint=factories.WebhookEndpointFactory(url=url), next_attempt_at=timezone.now()
    )
    return webhooks.attempt_delivery(delivery.pk)


def test_a_kept_alive_connection_does_not_outlive_the_private_targets_setting(settings):
    """A connection pooled while private targets were allowed is never reused once they are not:
    the process's client is rebuilt (its pool closed) and the new connection is checked."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver, server = start_receiver(keep_alive=True)
    try:
        assert _deliver(receiver.url).status == DeliveryStatus.DELIVERED
        settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
        refused = _deliver(receiver.url)
    finally:
        receiver.hang_up()
        server.shutdown()
    assert refused.status == DeliveryStatus.PENDING and "loopback address" in refused.last_error
    assert len(receiver.received) == 1


def test_every_new_connection_is_checked_and_only_a_checked_one_is_reused(settings, monkeypatch):
    """The guard runs on each connection the pool opens; keep-alive reuses a connection to the
    address checked when it was opened. When the host later resolves to a refused address (DNS
    rebinding), the next new connection is refused."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_DELIVERY_BATCH = 1
    checked: list[str] = []
    refuse = False
    real = targets.checked_addresses

    def spy(host, port):
        checked.append(host)
        if refuse:
            raise targets.TargetRefused(f"{host} (127.0.0.1) is a loopback address; webhooks go to public addresses")
        return real(host, port)

    monkeypatch.setattr(targets, "checked_addresses", spy)
    receiver, server = start_receiver(keep_alive=True)
    try:
        assert _deliver(receiver.url).status == DeliveryStatus.DELIVERED
        assert _deliver(receiver.url).status == DeliveryStatus.DELIVERED
        assert (len(checked), receiver.connections) == (1, 1)  # the second reused the checked connection

        receiver.hang_up()  # the receiver's idle timeout: the next delivery needs a new connection
        time.sleep(0.1)
        assert _deliver(receiver.url).status == DeliveryStatus.DELIVERED
        assert (len(checked), receiver.connections) == (2, 2)

        refuse = True  # the name now answers a private address
        receiver.hang_up()
        time.sleep(0.1)
        refused = _deliver(receiver.url)
    finally:
        receiver.hang_up()
        server.shutdown()
    assert refused.status == DeliveryStatus.PENDING and "loopback address" in refused.last_error
    assert len(checked) == 3 and len(receiver.received) == 3
    assert receiver.connections == 2  # refused before connecting
