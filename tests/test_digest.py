"""The operators' email digest: opt-in per member, immediate or daily, each change once, through a
real SMTP server of the test's own."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connections
from django.urls import reverse

from integrations import digest
from integrations.health import record_auth_check
from integrations.models import Membership, Role
from integrations.providers import Outcome
from integrations.providers.base import AuthResult
from tests import factories

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
REJECTED = AuthResult(Outcome.AUTH_FAILED, http_status=401, error_code="INVALID_KEY", message="key rejected")
OK = AuthResult(Outcome.OK, http_status=200)


def _member(environment, email: str, frequency: str, last_sent: datetime = T0 - timedelta(hours=25)) -> Membership:
    user = factories.member(environment, Role.VIEWER, email)
    membership = Membership.objects.get(user=user)
    Membership.objects.filter(pk=membership.pk).update(digest=frequency, digest_sent_until=last_sent)
    return membership


def _check(integration, result, at):
    with time_machine.travel(at, tick=False):
        record_auth_check(integration.pk, result, checked_at=at)


def _run(at) -> int:
    with time_machine.travel(at, tick=False):
        return digest.send_digests()


@pytest.fixture
def integration(environment, settings):
    settings.BASE_URL = "http://relink.test"
    return factories.IntegrationFactory(environment=environment, end_user_organization_name="Pinnacle Fitness")


def test_an_immediate_digest_reports_each_change_once(environment, integration, smtp):
    _member(environment, "now@acme.test", "immediate")
    _member(environment, "never@acme.test", "off")

    _check(integration, REJECTED, T0)
    assert _run(T0 + timedelta(minutes=5)) == 1
    first = smtp.wait_for("now@acme.test")
    assert "Pinnacle Fitness" in smtp.text(first) and "authentication started failing" in smtp.text(first)
    assert "http://relink.test/env/acme/integrations/" in smtp.text(first)
    assert _run(T0 + timedelta(minutes=10)) == 0  # nothing new

    _check(integration, REJECTED, T0 + timedelta(hours=72))
    assert _run(T0 + timedelta(hours=72, minutes=5)) == 1
    assert "syncs paused (Invalid)" in smtp.text(smtp.to("now@acme.test")[-1])

    _check(integration, OK, T0 + timedelta(hours=80))
    assert _run(T0 + timedelta(hours=80, minutes=5)) == 1
    assert "recovered (Active again)" in smtp.text(smtp.to("now@acme.test")[-1])

    assert len(smtp.to("now@acme.test")) == 3
    assert smtp.to("never@acme.test") == []


def test_a_daily_digest_goes_out_at_most_once_a_day(environment, integration, smtp):
    _member(environment, "daily@acme.test", "daily")
    _check(integration, REJECTED, T0)

    assert _run(T0 + timedelta(hours=1)) == 1  # a day since the last one (none yet in the window)
    _check(integration, REJECTED, T0 + timedelta(hours=72))
    assert _run(T0 + timedelta(hours=12)) == 0
    assert _run(T0 + timedelta(hours=73)) == 1
    assert len(smtp.to("daily@acme.test")) == 2


def test_another_environments_changes_are_not_in_the_digest(environment, other_environment, integration, smtp):
    _member(other_environment, "globex@acme.test", "immediate")
    _check(integration, REJECTED, T0)

    assert _run(T0 + timedelta(minutes=5)) == 0
    assert smtp.messages == []


def test_a_failed_send_keeps_the_changes_for_the_next_run(environment, integration, smtp, settings):
    _member(environment, "now@acme.test", "immediate")
    _check(integration, REJECTED, T0)
    port, settings.EMAIL_PORT = settings.EMAIL_PORT, 1

    assert _run(T0 + timedelta(minutes=5)) == 0
    settings.EMAIL_PORT = port
    assert _run(T0 + timedelta(minutes=10)) == 1
    assert "authentication started failing" in smtp.text(smtp.wait_for("now@acme.test"))


@pytest.mark.django_db(transaction=True)
def test_two_workers_send_one_digest(environment, smtp, settings, is_postgres):
    if not is_postgres:
        pytest.skip("needs PostgreSQL: SKIP LOCKED")
    settings.BASE_URL = "http://relink.test"
    integration = factories.IntegrationFactory(environment=environment)
    _member(environment, "now@acme.test", "immediate")
    _check(integration, REJECTED, T0)
    results: list[int] = []
    barrier = threading.Barrier(2)

    def worker():
        try:
            barrier.wait()
            results.append(_run(T0 + timedelta(minutes=5)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [0, 1]
    assert len(smtp.to("now@acme.test")) == 1


def test_members_choose_their_digest_on_the_preferences_page(client, owner, environment, other_environment):
    factories.MembershipFactory(environment=other_environment, user=owner, role=Role.VIEWER)
    client.force_login(owner)
    mine = Membership.objects.get(user=owner, environment=environment)
    page = client.get(reverse("dashboard:preferences")).content.decode()
    assert "Email digest for Acme production" in page and "Email digest for Globex production" in page

    response = client.post(
        reverse("dashboard:preferences"),
        {"name": "Owner", "time_zone": "", f"digest_{mine.pk}": "daily"}
        | {f"digest_{m.pk}": "off" for m in Membership.objects.filter(user=owner).exclude(pk=mine.pk)},
    )

    assert response.status_code == 302
    mine.refresh_from_db()
    assert mine.digest == "daily" and mine.digest_sent_until is not None
    bad = client.post(reverse("dashboard:preferences"), {"name": "", "time_zone": "", f"digest_{mine.pk}": "hourly"})
    assert bad.status_code == 400


# --- Relink's own webhook: integration-auth-failing ------------------------------------------------


def test_auth_failing_is_announced_once_per_streak_with_when_syncs_pause(environment, integration, broker):
    from integrations.models import WebhookDelivery

    environment.auth_failure_window = timedelta(hours=48)
    environment.save()
    factories.WebhookEndpointFactory(environment=environment, event_types=["integration-auth-failing"])

    _check(integration, REJECTED, T0)
    _check(integration, REJECTED, T0 + timedelta(hours=5))

    deliveries = WebhookDelivery.objects.filter(event_type="integration-auth-failing")
    assert deliveries.count() == 1
    data = deliveries.get().payload["data"]
    assert data["integration_id"] == integration.pk
    assert data["failing_since"].startswith("2026-11-02T09:00:00")
    assert data["pauses_at"].startswith("2026-11-04T09:00:00")
    assert data["state"] == "ACTIVE"

    _check(integration, OK, T0 + timedelta(hours=6))
    _check(integration, REJECTED, T0 + timedelta(hours=7))  # a new streak: announced again
    assert deliveries.count() == 2
