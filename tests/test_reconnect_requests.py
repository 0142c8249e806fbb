"""Reconnect requests: one integration walked from its first failed check through every email step
to its repair, with time-machine and a real SMTP server of the test's own. Each step goes out once
— also with two workers racing and beat restarted in between — in the customer's language, with
the one magic link of the streak; the emails stop once the customer reconnects."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connections

from connect_flow import links, notifications
from connect_flow.models import ConnectionLink, LinkKind, ReconnectRequest
from integrations.health import record_auth_check
from integrations.models import AuditEvent, Integration, IntegrationState
from integrations.providers import Outcome
from integrations.providers.base import AuthResult
from tests import factories

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
REJECTED = AuthResult(Outcome.AUTH_FAILED, http_status=401, error_code="INVALID_KEY", message="key rejected")
OK = AuthResult(Outcome.OK, http_status=200)


@pytest.fixture
def integration(environment, settings):
    settings.BASE_URL = "http://relink.test"
    environment.notify_customers = True
    environment.notify_sender_name = "Acme HR Sync"
    environment.notify_reply_to = "support@acme.test"
    environment.save()
    with time_machine.travel(T0 - timedelta(days=30), tick=False):
        made = factories.IntegrationFactory(
            environment=environment,
            end_user_organization_name="Pinnacle Fitness",
            end_user_email="hr@pinnacle.test",
            tool="sandbox",
        )
    return made


def _check(integration, result, at):
    with time_machine.travel(at, tick=False):
        record_auth_check(integration.pk, result, checked_at=at)


def _tick(at, smtp=None) -> int:
    with time_machine.travel(at, tick=False):
        return notifications.send_reconnect_requests()


def _link_of(smtp, message) -> str:
    found = re.findall(r"http://relink\.test/connect/[\w-]+/", smtp.text(message))
    assert len(found) == 1, smtp.text(message)
    return found[0]


def test_one_integration_from_first_failure_to_repair(integration, smtp):
    # Failing daily from T0; the checks drive the health rule exactly as syncs do.
    _check(integration, REJECTED, T0)
    assert _tick(T0 + timedelta(hours=23)) == 0  # not yet: the first email comes after 24 h

    _check(integration, REJECTED, T0 + timedelta(hours=24))
    assert _tick(T0 + timedelta(hours=24, minutes=5)) == 1
    first = smtp.wait_for("hr@pinnacle.test")
    assert first["Subject"] == "Acme HR Sync: please reconnect your Sandbox HR account"
    assert first["Reply-To"] == "support@acme.test"
    assert first["From"].startswith("Acme HR Sync <")
    text = smtp.text(first)
    assert "since 2 November 2026, 09:00 UTC" in text
    assert "data syncs will pause on 5 November 2026, 09:00 UTC" in text
    html = smtp.html(first)
    assert html is not None and "<img" not in html  # no tracking pixel
    link = _link_of(smtp, first)
    assert _tick(T0 + timedelta(hours=25)) == 0  # once

    # INVALID after 72 hours: the "paused" email, with the same link.
    _check(integration, REJECTED, T0 + timedelta(hours=72))
    assert Integration.objects.get(pk=integration.pk).state == IntegrationState.INVALID
    assert _tick(T0 + timedelta(hours=72, minutes=1)) == 1
    paused = smtp.to("hr@pinnacle.test")[-1]
    assert "your Sandbox HR connection is paused" in paused["Subject"]
    assert "have been paused since 5 November 2026, 09:00 UTC" in smtp.text(paused)
    assert _link_of(smtp, paused) == link

    # Reminders 1, 3, 7 and 14 days later; each once, each with the same link.
    invalid_at = T0 + timedelta(hours=72)
    for days in (1, 3, 7, 14):
        assert _tick(invalid_at + timedelta(days=days) - timedelta(minutes=1)) == 0
        assert _tick(invalid_at + timedelta(days=days)) == 1, days
        assert _tick(invalid_at + timedelta(days=days, minutes=5)) == 0, days
        reminder = smtp.to("hr@pinnacle.test")[-1]
        assert "This is a reminder" in smtp.text(reminder)
        assert _link_of(smtp, reminder) == link
    assert len(smtp.to("hr@pinnacle.test")) == 6
    assert _tick(invalid_at + timedelta(days=40)) == 0  # the schedule ends

    steps = list(ReconnectRequest.objects.order_by("created_at").values_list("step_key", flat=True))
    assert steps == ["failing", "invalid", "reminder-1", "reminder-3", "reminder-7", "reminder-14"]
    assert ConnectionLink.objects.filter(integration=integration, kind=LinkKind.RECONNECT).count() == 1
    assert AuditEvent.objects.filter(action="reconnect_request.sent").count() == 6

    # The customer opens the link and reconnects: the emails stop.
    token = link.rstrip("/").rsplit("/", 1)[1]
    found = links.find_link(token)
    assert found is not None and found.link_type == "MAGIC_LINK" and found.language == "en"
    _check(integration, OK, invalid_at + timedelta(days=15))
    assert Integration.objects.get(pk=integration.pk).state == IntegrationState.ACTIVE
    assert _tick(invalid_at + timedelta(days=16)) == 0


def test_a_late_tick_sends_only_the_latest_step(integration, smtp):
    _check(integration, REJECTED, T0)
    _check(integration, REJECTED, T0 + timedelta(hours=72))

    assert _tick(T0 + timedelta(days=8)) == 1  # beat was down: one email, not four

    assert [m["Subject"].strip() for m in smtp.messages] == [
        "Acme HR Sync: your Sandbox HR connection is paused — please reconnect"
    ]
    assert list(ReconnectRequest.objects.values_list("step_key", flat=True)) == ["reminder-3"]


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("de", "Acme HR Sync: Bitte verbinden Sie Ihr Sandbox HR-Konto erneut"),
        ("fr", "Acme HR Sync : veuillez reconnecter votre compte Sandbox HR"),
        ("it", "Acme HR Sync: ricollega il tuo account Sandbox HR"),
        ("es", "Acme HR Sync: vuelva a conectar su cuenta de Sandbox HR"),
    ],
)
def test_the_email_speaks_the_customers_language(integration, smtp, language, subject):
    with time_machine.travel(T0 - timedelta(days=29), tick=False):
        created = links.create_relink_link(integration, link_type="MAGIC_LINK", language=language)
        ConnectionLink.objects.filter(pk=created.link.pk).update(completed_at=T0 - timedelta(days=29))
    _check(integration, REJECTED, T0)

    assert _tick(T0 + timedelta(hours=25)) == 1

    message = smtp.wait_for("hr@pinnacle.test")
    assert message["Subject"] == subject
    assert "UTC" in smtp.text(message) and "http://relink.test/connect/" in smtp.text(message)
    link = ConnectionLink.objects.exclude(pk=created.link.pk).get(integration=integration)
    assert link.language == language


def test_the_environment_default_language_without_a_previous_link(integration, environment, smtp):
    environment.notify_language = "es"
    environment.save()
    _check(integration, REJECTED, T0)

    _tick(T0 + timedelta(hours=25))

    assert smtp.wait_for("hr@pinnacle.test")["Subject"].startswith("Acme HR Sync: vuelva a conectar")


@pytest.mark.parametrize(
    "switch_off",
    [
        lambda i, e: setattr(e, "notify_customers", False) or e.save(),
        lambda i, e: Integration.objects.filter(pk=i.pk).update(reconnect_requests_off=True),
        lambda i, e: Integration.objects.filter(pk=i.pk).update(enabled=False),
        lambda i, e: Integration.objects.filter(pk=i.pk).update(end_user_email=""),
    ],
    ids=["environment-off", "integration-off", "disabled", "no-email"],
)
def test_nothing_is_sent_when_turned_off(integration, environment, smtp, switch_off):
    _check(integration, REJECTED, T0)
    switch_off(integration, environment)

    assert _tick(T0 + timedelta(days=5)) == 0
    assert smtp.messages == []


def test_a_failed_send_is_retried_and_sent_once(integration, smtp, settings):
    _check(integration, REJECTED, T0)
    real_port = settings.EMAIL_PORT
    settings.EMAIL_PORT = 1  # nobody listens: the send fails
    assert _tick(T0 + timedelta(hours=25)) == 0
    request = ReconnectRequest.objects.get()
    assert request.sent_at is None and request.attempts == 1 and request.error

    settings.EMAIL_PORT = real_port
    assert _tick(T0 + timedelta(hours=26)) == 1
    assert _tick(T0 + timedelta(hours=27)) == 0
    assert len(smtp.to("hr@pinnacle.test")) == 1
    assert ReconnectRequest.objects.get().sent_at is not None


def test_a_new_streak_gets_a_new_schedule_and_a_new_link(integration, smtp):
    _check(integration, REJECTED, T0)
    _tick(T0 + timedelta(hours=25))
    _check(integration, OK, T0 + timedelta(hours=30))
    _check(integration, REJECTED, T0 + timedelta(days=10))

    assert _tick(T0 + timedelta(days=11, hours=1)) == 1

    first, second = smtp.to("hr@pinnacle.test")
    assert _link_of(smtp, first) != _link_of(smtp, second)


def test_a_completed_link_is_replaced_by_a_fresh_one(integration, smtp):
    _check(integration, REJECTED, T0)
    _tick(T0 + timedelta(hours=25))
    ConnectionLink.objects.filter(integration=integration).update(completed_at=T0 + timedelta(hours=26))
    _check(integration, REJECTED, T0 + timedelta(hours=72))  # the new key was rejected too

    _tick(T0 + timedelta(hours=73))

    first, second = smtp.to("hr@pinnacle.test")
    assert _link_of(smtp, first) != _link_of(smtp, second)


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_and_a_beat_restart_send_each_step_once(environment, smtp, settings, is_postgres):
    if not is_postgres:
        pytest.skip("needs PostgreSQL: row locks (SQLite serialises the two workers anyway)")
    settings.BASE_URL = "http://relink.test"
    environment.notify_customers = True
    environment.save()
    integration = factories.IntegrationFactory(environment=environment, end_user_email="hr@pinnacle.test")
    _check(integration, REJECTED, T0)

    def race(at: datetime) -> list[int]:
        results: list[int] = []
        barrier = threading.Barrier(2)

        def worker():
            try:
                barrier.wait()
                results.append(_tick(at))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    assert sorted(race(T0 + timedelta(hours=25))) == [0, 1]
    # Beat restarts (a new process has no memory): its first tick finds the step already sent.
    assert _tick(T0 + timedelta(hours=25, minutes=1)) == 0
    _check(integration, REJECTED, T0 + timedelta(hours=72))
    assert sorted(race(T0 + timedelta(hours=72, minutes=1))) == [0, 1]
    assert sorted(race(T0 + timedelta(hours=72 + 24))) == [0, 1]

    assert len(smtp.to("hr@pinnacle.test")) == 3
    assert ReconnectRequest.objects.filter(sent_at__isnull=False).count() == 3
