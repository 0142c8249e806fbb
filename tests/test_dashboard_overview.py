"""The environment overview: counts by state, what needs attention, recent state changes, and the
auth-check chart."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from integrations.models import IntegrationState

from . import factories
from .test_dashboard_access import ENV_PATTERNS

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _url(env="acme") -> str:
    return reverse("dashboard:overview", kwargs={"env": env})


def _list_url(env="acme") -> str:
    return reverse("dashboard:integrations", kwargs={"env": env})


def test_the_generic_tenancy_tests_cover_the_overview():
    assert "dashboard:overview" in [name for name, _ in ENV_PATTERNS]


def test_an_outsider_gets_404(client, environment, owner, outsider):
    client.force_login(outsider)
    assert client.get(_url("acme")).status_code == 404
    assert client.get(_url("globex")).status_code == 200


def test_home_redirects_to_the_overview(client, viewer):
    client.force_login(viewer)
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == _url()
    assert "<h1>Overview</h1>" in response.content.decode()


def _count_card(body: str, state: str) -> tuple[str, str]:
    m = re.search(
        rf'<a class="count-card[^"]*" href="([^"]+)" data-state="{state}">\s*<span class="count-number">(\d+)</span>',
        body,
    )
    assert m, state
    return m.group(1), m.group(2)


def test_counts_by_state_link_to_the_filtered_list(client, viewer, environment, other_environment):
    for state, n in [(IntegrationState.ACTIVE, 3), (IntegrationState.INVALID, 2)]:
        for _ in range(n):
            factories.IntegrationFactory(environment=environment, state=state)
    factories.IntegrationFactory(environment=other_environment, state=IntegrationState.INACTIVE)
    client.force_login(viewer)

    body = client.get(_url()).content.decode()

    assert _count_card(body, "ACTIVE") == (_list_url() + "?state=ACTIVE", "3")
    assert _count_card(body, "INVALID") == (_list_url() + "?state=INVALID", "2")
    assert _count_card(body, "INACTIVE") == (_list_url() + "?state=INACTIVE", "0")  # the other env's is not counted
    # The link is a working filter.
    listed = client.get(_list_url() + "?state=INVALID").content.decode()
    assert len(re.findall(r'<span class="badge state-invalid">', listed)) == 2


def _attention_rows(body: str) -> dict[str, str]:
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r'<tr class="attention-row" data-integration="([^"]+)">(.*?)</tr>', body, re.S)
    }


@time_machine.travel(NOW, tick=False)
def test_needs_attention_lists_invalid_failing_and_warning_integrations(client, viewer, environment, other_environment):
    invalid = factories.IntegrationFactory(
        environment=environment,
        state=IntegrationState.INVALID,
        auth_failing_since=NOW - timedelta(days=4),
        invalid_since=NOW - timedelta(days=1),
        end_user_organization_name="Invalid Org",
    )
    failing = factories.IntegrationFactory(
        environment=environment, auth_failing_since=NOW - timedelta(hours=30), end_user_organization_name="Failing Org"
    )
    almost = factories.IntegrationFactory(
        environment=environment,
        auth_failing_since=NOW - timedelta(hours=71, minutes=30),
        end_user_organization_name="Almost Org",
    )
    warned = factories.IntegrationFactory(environment=environment, end_user_organization_name="Warned Org")
    factories.SyncFactory(integration=warned, status="SUCCEEDED", created_at=NOW - timedelta(hours=5))
    factories.SyncFactory(
        integration=warned,
        status="PARTIALLY_FAILED",
        created_at=NOW - timedelta(hours=1),
        warnings=["permission hris_employees.salary not granted"],
    )
    # Not needing attention: healthy; latest sync fine (an older one had warnings); disabled; other env.
    healthy = factories.IntegrationFactory(environment=environment)
    recovered = factories.IntegrationFactory(environment=environment)
    factories.SyncFactory(integration=recovered, status="PARTIALLY_FAILED", created_at=NOW - timedelta(hours=5))
    factories.SyncFactory(integration=recovered, status="SUCCEEDED", created_at=NOW - timedelta(hours=1))
    disabled = factories.IntegrationFactory(
        environment=environment,
        state=IntegrationState.INACTIVE,
        enabled=False,
        auth_failing_since=NOW - timedelta(days=1),
    )
    foreign = factories.IntegrationFactory(environment=other_environment, state=IntegrationState.INVALID)
    client.force_login(viewer)

    body = client.get(_url()).content.decode()
    rows = _attention_rows(body)

    assert list(rows) == [invalid.pk, almost.pk, failing.pk, warned.pk]  # most urgent first
    for obj in (invalid, failing, almost, warned):
        assert f'href="{reverse("dashboard:integration", args=["acme", obj.pk])}"' in rows[obj.pk]
    assert "syncs paused since 19 Nov 12:00 UTC" in rows[invalid.pk]
    assert "broken" in rows[invalid.pk] or "<svg" in rows[invalid.pk]
    assert "syncs pause in 42 hours" in rows[failing.pk]
    assert "syncs pause in less than an hour" in rows[almost.pk]
    assert "partially failed with 1 warning: permission hris_employees.salary not granted" in rows[warned.pk]
    for obj in (healthy, recovered, disabled, foreign):
        assert obj.pk not in body


@time_machine.travel(NOW, tick=False)
def test_the_pause_countdown_follows_the_clock(client, viewer, environment):
    integration = factories.IntegrationFactory(environment=environment, auth_failing_since=NOW - timedelta(hours=2))
    client.force_login(viewer)

    assert "syncs pause in 70 hours" in _attention_rows(client.get(_url()).content.decode())[integration.pk]
    with time_machine.travel(NOW + timedelta(hours=69), tick=False):
        assert re.search(r"syncs pause in 1 hour(?!s)", client.get(_url()).content.decode())
    with time_machine.travel(NOW + timedelta(hours=75), tick=False):
        assert "syncs pause at the next failed check" in client.get(_url()).content.decode()


def test_nothing_needs_attention(client, viewer, environment):
    factories.IntegrationFactory(environment=environment)
    client.force_login(viewer)
    assert "Nothing needs attention" in client.get(_url()).content.decode()


def test_recent_state_changes_are_the_last_ten_of_this_environment(client, viewer, environment, other_environment):
    integration = factories.IntegrationFactory(environment=environment, end_user_organization_name="Changed Org")
    now = timezone.now()
    for i in range(12):
        factories.AuditEventFactory(
            environment=environment,
            integration_id=integration.pk,
            action="integration.state_changed",
            details={"from": "ACTIVE", "to": "INVALID", "reason": f"reason-{i:02d}"},
            created_at=now - timedelta(minutes=i),
        )
    factories.AuditEventFactory(
        environment=environment,
        integration_id=integration.pk,
        action="link.created",
        details={"reason": "not-a-state-change"},
    )
    factories.AuditEventFactory(
        environment=other_environment,
        action="integration.state_changed",
        details={"from": "ACTIVE", "to": "INACTIVE", "reason": "foreign-change"},
    )
    client.force_login(viewer)

    body = client.get(_url()).content.decode()
    changes = re.search(r'<ol class="changes">(.*?)</ol>', body, re.S).group(1)

    assert re.findall(r"reason-\d\d", changes) == [f"reason-{i:02d}" for i in range(10)]  # newest first
    assert "Changed Org" in changes
    assert reverse("dashboard:integration", args=["acme", integration.pk]) in changes
    assert "not-a-state-change" not in body and "foreign-change" not in body


def _bar(body: str, day: str) -> str:
    m = re.search(rf'<g class="bar" data-day="{day}">(.*?)</g>', body, re.S)
    assert m, day
    return m.group(1)


@time_machine.travel(NOW, tick=False)
def test_the_chart_stacks_outcomes_per_day(client, viewer, environment, other_environment):
    integration = factories.IntegrationFactory(environment=environment)
    yesterday = NOW - timedelta(days=1)
    for hour in (1, 5, 9):
        factories.AuthCheckFactory(integration=integration, outcome="OK", checked_at=yesterday.replace(hour=hour))
    factories.AuthCheckFactory(
        integration=integration, outcome="AUTH_FAILED", checked_at=yesterday.replace(hour=23, minute=59)
    )
    factories.AuthCheckFactory(integration=integration, outcome="UNAVAILABLE", checked_at=NOW - timedelta(hours=1))
    factories.AuthCheckFactory(integration=integration, outcome="OK", checked_at=NOW - timedelta(days=31))  # too old
    foreign = factories.IntegrationFactory(environment=other_environment)
    factories.AuthCheckFactory(integration=foreign, outcome="AUTH_FAILED", checked_at=yesterday)
    client.force_login(viewer)

    body = client.get(_url()).content.decode()
    svg = re.search(r'<svg class="auth-chart".*?</svg>', body, re.S).group(0)

    assert '<title id="auth-chart-title">' in svg
    assert len(re.findall(r'<g class="bar"', svg)) == 30
    bar = _bar(svg, "2026-11-19")
    assert "<title>19 Nov: 3 OK, 1 auth failed, 0 unavailable</title>" in bar
    segments = re.findall(
        r'<rect class="(bar-\w+)" x="[\d.]+" y="([\d.]+)" width="\d+" height="([\d.]+)" data-count="(\d+)"', bar
    )
    assert [(css, count) for css, _, _, count in segments] == [("bar-ok", "3"), ("bar-auth_failed", "1")]
    # Stacked: AUTH_FAILED sits on top of OK, and the busiest day fills the plot height.
    (ok_y, ok_h), (failed_y, failed_h) = [(float(y), float(h)) for _, y, h, _ in segments]
    assert failed_y + failed_h == pytest.approx(ok_y)
    assert ok_h == pytest.approx(3 * failed_h)
    assert ok_h + failed_h == pytest.approx(120)
    assert "<title>20 Nov: 0 OK, 0 auth failed, 1 unavailable</title>" in _bar(svg, "2026-11-20")
    assert "<title>18 Nov: 0 OK, 0 auth failed, 0 unavailable</title>" in _bar(svg, "2026-11-18")
    assert 'data-day="2026-10-22"' in svg and 'data-day="2026-10-21"' not in svg  # 30 days, today included
    assert "5 checks" in body
    for label in ("OK", "Auth failed", "Unavailable"):
        assert f"</span>{label}</li>" in body  # the legend


@pytest.mark.parametrize("header", [{}, {"HX-Request": "true"}])
def test_the_overview_runs_a_constant_number_of_queries(client, viewer, environment, header):
    client.force_login(viewer)
    now = timezone.now()

    def make(n: int) -> None:
        for i in range(n):
            integration = factories.IntegrationFactory(
                environment=environment,
                state=[IntegrationState.INVALID, IntegrationState.ACTIVE][i % 2],
                auth_failing_since=now - timedelta(hours=10),
                invalid_since=now if i % 2 == 0 else None,
            )
            factories.AuthCheckFactory(
                integration=integration, outcome="AUTH_FAILED", checked_at=now - timedelta(days=i % 29)
            )
            factories.SyncFactory(integration=integration, status="PARTIALLY_FAILED", warnings=["w"])
            factories.AuditEventFactory(
                environment=environment,
                integration_id=integration.pk,
                action="integration.state_changed",
                details={"from": "ACTIVE", "to": "INVALID"},
            )

    make(3)
    client.get(_url())  # the first request may write the session
    with CaptureQueriesContext(connection) as with_3:
        body = client.get(_url(), headers=header).content.decode()
    assert len(_attention_rows(body)) == 3
    make(27)
    with CaptureQueriesContext(connection) as with_30:
        body = client.get(_url(), headers=header).content.decode()
    assert len(_attention_rows(body)) == 30

    assert len(with_30) == len(with_3), [q["sql"] for q in with_30.captured_queries]
    chart_queries = [q["sql"] for q in with_30.captured_queries if "integrations_authcheck" in q["sql"]]
    assert len(chart_queries) == 1 and "GROUP BY" in chart_queries[0]
