"""The end customer gets Relink's reconnect request by email (the test's own SMTP server), opens its
magic link in a real browser, enters the new key — and the reminders stop."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from connect_flow import notifications
from connect_flow.models import ReconnectRequest
from integrations import syncs
from integrations.models import Integration, IntegrationState
from sandbox.models import SandboxCompany
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_customer_reconnects_from_the_email_and_the_reminders_stop(
    browser, live_server, settings, smtp, monkeypatch, shot
):
    settings.BASE_URL = live_server.url
    monkeypatch.setattr(
        syncs, "_enqueue", lambda ids, **kwargs: None
    )  # the sync after the reconnect is not this test's
    environment = factories.EnvironmentFactory(
        slug="acme", name="Acme production", notify_customers=True, notify_sender_name="Acme HR Sync"
    )
    company = SandboxCompany.objects.create(name="Pinnacle Fitness", environment=environment)
    factories.SandboxEmployeeFactory.create_batch(3, company=company)
    old_key, old_raw = company.create_key()
    now = timezone.now()
    integration = factories.IntegrationFactory(
        environment=environment,
        end_user_organization_name="Pinnacle Fitness",
        end_user_email="hr@pinnacle.test",
        credentials={"api_key": old_raw},
        state=IntegrationState.INVALID,
        auth_failing_since=now - timedelta(days=4),
        invalid_since=now - timedelta(days=1),
    )
    old_key.revoked_at = old_key.created_at
    old_key.save()
    _, new_raw = company.create_key(label="new")

    started = time.perf_counter()
    assert notifications.send_reconnect_requests() == 1
    message = smtp.wait_for("hr@pinnacle.test")
    # From the tick that finds the step due to the email in the inbox (the tick runs every
    # RECONNECT_REQUEST_MINUTES, so a step is due at most that long before it goes out).
    print(f"\nbench=reconnect_request tick_to_inbox_ms={(time.perf_counter() - started) * 1000:.0f}")
    assert "Pinnacle Fitness" in smtp.text(message)
    link = next(url for url in smtp.links(message) if "/connect/" in url)
    assert link.startswith(live_server.url)

    context = browser.new_context()
    page = context.new_page()
    page.goto(link)
    shot(page, "link-from-email")
    page.fill("input[name=api_key]", new_raw)
    page.click("button[type=submit]")
    page.wait_for_selector("#connect-result", timeout=20000)
    shot(page, "reconnected")
    context.close()

    integration.refresh_from_db()
    assert integration.state == IntegrationState.ACTIVE and integration.auth_failing_since is None
    # The reminders due later find a healthy integration: nothing more is sent.
    for days in (3, 7, 14):
        with time_machine.travel(now + timedelta(days=days), tick=False):
            assert notifications.send_reconnect_requests() == 0
    assert len(smtp.to("hr@pinnacle.test")) == 1
    assert ReconnectRequest.objects.count() == 1
    assert ReconnectRequest.objects.get().link.status == "COMPLETED"
    assert Integration.objects.get(pk=integration.pk).get_credentials() == {"api_key": new_raw}
