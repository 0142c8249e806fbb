"""The health rule under an environment's own policy: its auth-failure window (24 hours to 14 days)
and whether transient errors count — in the rule, the dashboard, the demo and the hosted page."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from connect_flow import links
from dashboard.overview import pause_text
from integrations.environments import (
    AUTH_WINDOW_MAX,
    AUTH_WINDOW_MIN,
    SettingsError,
    check_auth_failure_window,
)
from integrations.health import DEFAULT_POLICY, HealthPolicy, apply_check_to_streak, record_auth_check
from integrations.models import Environment, Integration, Role
from integrations.providers import Outcome
from integrations.providers.base import AuthResult
from sandbox import demo

from . import factories

T = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
FAILED = AuthResult(Outcome.AUTH_FAILED, http_status=401, error_code="INVALID_API_KEY", message="invalid API key")
OK = AuthResult(Outcome.OK, http_status=200)
DOWN = AuthResult(Outcome.UNAVAILABLE, http_status=503, message="Service Unavailable")


def _environment(window: timedelta = timedelta(hours=72), transient: bool = False, **fields) -> Environment:
    return factories.EnvironmentFactory(auth_failure_window=window, transient_errors_count=transient, **fields)


def check_at(integration, at: datetime, result: AuthResult) -> Integration:
    with time_machine.travel(at, tick=False):
        record_auth_check(integration.pk, result)
    return Integration.objects.get(pk=integration.pk)


# --- The rule -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_24_hour_window_pauses_after_one_day():
    integration = factories.IntegrationFactory(environment=_environment(timedelta(hours=24)))
    check_at(integration, T, FAILED)
    assert check_at(integration, T + timedelta(hours=23, minutes=59), FAILED).state == "ACTIVE"
    after = check_at(integration, T + timedelta(hours=24), FAILED)
    assert after.state == "INVALID" and after.invalid_since == T + timedelta(hours=24)


@pytest.mark.django_db
def test_a_14_day_window_keeps_it_active_for_two_weeks():
    integration = factories.IntegrationFactory(environment=_environment(timedelta(days=14)))
    for hours in (0, 72, 24 * 7, 24 * 14 - 1):
        assert check_at(integration, T + timedelta(hours=hours), FAILED).state == "ACTIVE"
    assert check_at(integration, T + timedelta(days=14), FAILED).state == "INVALID"


@pytest.mark.django_db
def test_each_environment_applies_its_own_window():
    short = factories.IntegrationFactory(environment=_environment(timedelta(hours=24)))
    default = factories.IntegrationFactory()
    for integration in (short, default):
        check_at(integration, T, FAILED)
    assert check_at(short, T + timedelta(hours=30), FAILED).state == "INVALID"
    assert check_at(default, T + timedelta(hours=30), FAILED).state == "ACTIVE"


@pytest.mark.django_db
def test_when_transient_errors_count_unavailable_starts_extends_and_completes_a_streak():
    integration = factories.IntegrationFactory(environment=_environment(timedelta(hours=24), transient=True))
    started = check_at(integration, T, DOWN)
    assert started.auth_failing_since == T and started.state == "ACTIVE"
    assert started.last_auth_outcome == "UNAVAILABLE"  # the check is recorded as what it was
    assert check_at(integration, T + timedelta(hours=12), FAILED).auth_failing_since == T
    after = check_at(integration, T + timedelta(hours=24), DOWN)
    assert after.state == "INVALID"
    # Counted as a failure, an UNAVAILABLE never heals it either; an OK does.
    assert check_at(integration, T + timedelta(hours=48), DOWN).state == "INVALID"
    healed = check_at(integration, T + timedelta(hours=49), OK)
    assert healed.state == "ACTIVE" and healed.auth_failing_since is None


@pytest.mark.django_db
def test_by_default_transient_errors_do_not_count():
    integration = factories.IntegrationFactory(environment=_environment(timedelta(hours=24)))
    assert check_at(integration, T, DOWN).auth_failing_since is None
    assert check_at(integration, T + timedelta(hours=30), DOWN).state == "ACTIVE"


def test_the_default_policy_is_the_rule_as_designed():
    assert DEFAULT_POLICY == HealthPolicy(window=timedelta(hours=72), transient_errors_count=False)
    env = Environment()  # the model's defaults
    assert HealthPolicy.of(env) == DEFAULT_POLICY

    class Streak:
        auth_failing_since = None
        invalid_since = None

    streak = Streak()
    apply_check_to_streak(streak, Outcome.AUTH_FAILED, T)
    apply_check_to_streak(streak, Outcome.UNAVAILABLE, T + timedelta(hours=71))
    assert streak.invalid_since is None
    apply_check_to_streak(streak, Outcome.AUTH_FAILED, T + timedelta(hours=72))
    assert streak.invalid_since == T + timedelta(hours=72)


def test_the_window_in_words():
    assert (HealthPolicy(timedelta(hours=72)).window_days, HealthPolicy(timedelta(hours=72)).window_hours) == (3, 72)
    assert (HealthPolicy(timedelta(hours=36)).window_days, HealthPolicy(timedelta(hours=36)).window_hours) == (None, 36)


# --- The bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [AUTH_WINDOW_MIN, timedelta(hours=72), timedelta(days=7), AUTH_WINDOW_MAX])
def test_windows_from_24_hours_to_14_days_are_accepted(window):
    assert AUTH_WINDOW_MIN == timedelta(hours=24) and AUTH_WINDOW_MAX == timedelta(days=14)
    assert check_auth_failure_window(window) == window


@pytest.mark.parametrize(
    "window",
    [timedelta(0), timedelta(hours=23, minutes=59), timedelta(days=14, seconds=1), timedelta(days=30)],
)
def test_windows_outside_the_bounds_are_refused(window):
    with pytest.raises(SettingsError, match="between 24 hours and 14 days"):
        check_auth_failure_window(window)


# --- Where it is quoted --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_integration_page_says_when_the_environments_window_pauses_syncs(client):
    environment = _environment(timedelta(hours=24))
    viewer = factories.member(environment, Role.VIEWER, "viewer@window.test")
    integration = factories.IntegrationFactory(environment=environment, auth_failing_since=T)
    client.force_login(viewer)
    url = reverse("dashboard:integration", kwargs={"env": environment.slug, "integration_id": integration.pk})
    assert "syncs pause at 3 Nov 10:00 UTC unless a check succeeds" in client.get(url).content.decode()


@pytest.mark.django_db
def test_the_integrations_list_names_the_environments_window(client):
    environment = _environment(timedelta(hours=36))
    viewer = factories.member(environment, Role.VIEWER, "viewer@window.test")
    factories.IntegrationFactory(environment=environment, auth_failing_since=T)
    client.force_login(viewer)
    body = client.get(reverse("dashboard:integrations", kwargs={"env": environment.slug})).content.decode()
    assert "syncs pause after 36 hours of failures" in body


@pytest.mark.django_db
def test_the_overview_counts_down_the_environments_window(client):
    environment = _environment(timedelta(days=5))
    viewer = factories.member(environment, Role.VIEWER, "viewer@window.test")
    factories.IntegrationFactory(environment=environment, auth_failing_since=T)
    assert pause_text(T, T + timedelta(hours=20), HealthPolicy.of(environment)) == "syncs pause in 100 hours"
    client.force_login(viewer)
    with time_machine.travel(T + timedelta(hours=20), tick=False):
        body = client.get(reverse("dashboard:overview", kwargs={"env": environment.slug})).content.decode()
    assert "syncs pause in 100 hours" in body


def test_the_demo_replays_history_under_the_given_policy():
    now = T + timedelta(days=5)
    revoked = T + timedelta(hours=12)
    default = demo.simulate(random.Random(1), T, now, revoked)
    patient = demo.simulate(random.Random(1), T, now, revoked, HealthPolicy(timedelta(days=14)))
    assert default.invalid_since is not None and default.invalid_since >= revoked + timedelta(hours=72)
    assert patient.invalid_since is None and patient.auth_failing_since is not None


@pytest.fixture(scope="module")
def compiled_catalogs(django_db_blocker):
    """The .mo files are build output: build them, then make Django reload its catalogs."""
    with django_db_blocker.unblock():
        call_command("compile_catalogs", verbosity=0)
    with override_settings(LOCALE_PATHS=list(django_settings.LOCALE_PATHS)):
        pass


@pytest.mark.django_db
@pytest.mark.usefixtures("compiled_catalogs")
@pytest.mark.parametrize(
    ("window", "language", "sentence"),
    [
        (
            timedelta(days=5),
            "en",
            "When the connection has been failing for 5 days, synchronisation pauses until you reconnect.",
        ),
        (
            timedelta(days=5),
            "de",
            "Schlägt die Verbindung 5 Tage lang fehl, wird die Synchronisierung angehalten, bis Sie erneut verbinden.",
        ),
        (
            timedelta(days=1),
            "de",
            "Schlägt die Verbindung 1 Tag lang fehl, wird die Synchronisierung angehalten, bis Sie erneut verbinden.",
        ),
        (
            timedelta(hours=36),
            "fr",
            "Lorsque la connexion échoue depuis 36 heures, la synchronisation est suspendue jusqu’à ce que vous "
            "la rétablissiez.",
        ),
    ],
)
def test_the_reconnect_page_quotes_the_environments_window_in_the_links_language(client, window, language, sentence):
    integration = factories.IntegrationFactory(environment=_environment(window), state="INVALID", invalid_since=T)
    created = links.create_relink_link(integration, language=language)
    body = client.get(f"/connect/{created.token}/").content.decode()
    assert f'<p class="muted small" id="auth-window">{sentence}</p>' in body
