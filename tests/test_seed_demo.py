"""`manage.py seed_demo`: idempotent demo data whose failures are real against the sandbox."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.http import HttpRequest
from django.utils import timezone

from integrations.models import (
    AuditEvent,
    AuthCheck,
    Environment,
    Integration,
    IntegrationState,
    Membership,
    Role,
    ScopeConfig,
    Sync,
    User,
)
from integrations.providers import Outcome, get_provider
from sandbox import demo
from sandbox.models import SandboxApiKey, SandboxCompany, SandboxEmployee

COUNTED = (AuthCheck, Sync, SandboxCompany, SandboxEmployee, SandboxApiKey, AuditEvent, ScopeConfig, Membership, User)


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    integrations = {
        (i.id, i.state, i.scope_config_id, i.get_credentials()["api_key"], i.updated_at, i.last_auth_check_at)
        for i in Integration.objects.all()
    }
    return {
        "integrations": integrations,
        "counts": {model.__name__: model.objects.count() for model in COUNTED},
        "sync_ids": set(Sync.objects.values_list("id", flat=True)),
        "keys": set(SandboxApiKey.objects.values_list("id", "revoked_at")),
        "passwords": set(User.objects.values_list("email", "password")),
    }


def api_key(integration: Integration) -> str:
    return integration.get_credentials()["api_key"]


@pytest.fixture
def seeded(db) -> Environment:
    seed()
    return Environment.objects.get(slug="demo")


def test_second_run_changes_nothing(seeded):
    before = snapshot()

    output = seed()

    assert snapshot() == before
    assert "nothing created" in output
    assert "30 ACTIVE, 6 INVALID, 4 INACTIVE" in output


def test_it_prints_counts_and_logins(db):
    output = seed()

    assert "40 integrations" in output
    assert "30 ACTIVE, 6 INVALID, 4 INACTIVE" in output
    assert "operator@example.com / relink-demo" in output
    assert "owner@example.com / relink-demo" in output
    assert "admin@example.com / relink-demo" in output


def test_it_keeps_existing_users_passwords(db):
    User.objects.create_user("operator@example.com", "changed-by-operator")

    seed()

    assert User.objects.get(email="operator@example.com").check_password("changed-by-operator")


def test_it_creates_environment_logins_and_scope_configs(seeded, client):
    assert seeded.name == "Demo production"
    operator = User.objects.get(email="operator@example.com")
    assert Membership.objects.get(environment=seeded, user=operator).role == Role.EDITOR
    assert Membership.objects.get(environment=seeded, user__email="owner@example.com").role == Role.OWNER
    assert client.login(request=HttpRequest(), username="owner@example.com", password="relink-demo")
    assert User.objects.get(email="admin@example.com").is_superuser
    assert client.login(request=HttpRequest(), username="operator@example.com", password="relink-demo")

    configs = {c.name: c.spec for c in seeded.scope_configs.filter(category="HRIS")}
    assert set(configs) == {"Core employees", "Employees + compensation", "Absences"}
    assert configs["Core employees"]["hris_employees"]["fields"]["salary"] == "DISABLED"
    assert configs["Core employees"]["hris_absences"]["availability"] == "DISABLED"
    assert configs["Employees + compensation"]["hris_employees"]["fields"]["salary"] == "ENABLED"
    assert configs["Employees + compensation"]["hris_employees"]["fields"]["department"] == "OPTIONAL"
    assert configs["Absences"]["hris_absences"]["availability"] == "ENABLED"


def test_integrations_spread_over_states(seeded):
    integrations = list(seeded.integrations.all())

    assert len(integrations) == 40
    assert {i.end_user_origin_id for i in integrations} == {f"cust-{n:03d}" for n in range(1, 41)}
    assert all(i.state == i.derived_state() for i in integrations)
    states = [i.state for i in integrations]
    assert states.count(IntegrationState.ACTIVE) == 30
    assert states.count(IntegrationState.INVALID) == 6
    assert states.count(IntegrationState.INACTIVE) == 4
    assert SandboxCompany.objects.filter(name__in=[i.end_user_organization_name for i in integrations]).count() == 40


def test_invalid_integrations_failed_for_three_days_with_a_revoked_key(seeded):
    invalid = seeded.integrations.filter(state=IntegrationState.INVALID)

    for integration in invalid:
        assert integration.invalid_since >= integration.auth_failing_since + timedelta(hours=72)
        assert integration.last_auth_outcome == Outcome.AUTH_FAILED
        assert integration.next_sync_at is None
        assert SandboxApiKey.objects.find_active(api_key(integration)) is None
        assert not integration.syncs.filter(created_at__gt=integration.invalid_since).exists()
        change = AuditEvent.objects.get(integration_id=integration.id, action="integration.state_changed")
        assert change.actor_label == "system"
        assert (change.details["from"], change.details["to"]) == ("ACTIVE", "INVALID")
        assert change.created_at == integration.invalid_since


def test_active_integrations_have_a_working_key_unless_failing(seeded):
    now = timezone.now()
    active = list(seeded.integrations.filter(state=IntegrationState.ACTIVE))
    healthy = [i for i in active if i.auth_failing_since is None]
    failing = [i for i in active if i.auth_failing_since is not None]

    assert 2 <= len(failing) <= 3
    for integration in healthy:
        assert SandboxApiKey.objects.find_active(api_key(integration)) is not None
        assert integration.last_auth_outcome == Outcome.OK
        assert now < integration.next_sync_at <= now + timedelta(hours=3)
    for integration in failing:
        assert SandboxApiKey.objects.find_active(api_key(integration)) is None
        assert now - integration.auth_failing_since < timedelta(hours=72)


def test_inactive_integrations_were_disabled_by_the_operator(seeded):
    operator = User.objects.get(email="operator@example.com")

    for integration in seeded.integrations.filter(state=IntegrationState.INACTIVE):
        assert SandboxApiKey.objects.find_active(api_key(integration)) is not None
        assert integration.next_sync_at is None
        disabled = AuditEvent.objects.get(integration_id=integration.id, action="integration.disabled")
        assert disabled.actor_user == operator
        assert integration.last_auth_check_at <= disabled.created_at
        change = AuditEvent.objects.get(integration_id=integration.id, action="integration.state_changed")
        assert (change.actor_user, change.details["to"]) == (operator, "INACTIVE")


def test_history_follows_the_checks(seeded):
    integration = seeded.integrations.filter(state=IntegrationState.ACTIVE, auth_failing_since=None).first()
    syncs = list(integration.syncs.all())

    assert integration.auth_checks.count() == len(syncs) >= 35
    assert {s.status for s in syncs} <= {"SUCCEEDED", "FAILED"}
    employees = SandboxEmployee.objects.filter(company__name=integration.end_user_organization_name).count()
    succeeded = [s for s in syncs if s.status == "SUCCEEDED"]
    assert all(s.records_per_model["hris_employees"] == employees for s in succeeded)
    assert all(s.started_at < s.ended_at for s in syncs)
    assert integration.last_sync_at == max(s.ended_at for s in syncs)


@pytest.mark.django_db(transaction=True)
def test_seeded_credentials_work_against_the_live_sandbox(live_server, settings):
    seed()
    settings.BASE_URL = live_server.url
    sandbox = get_provider("sandbox")
    active = Integration.objects.filter(state=IntegrationState.ACTIVE, auth_failing_since=None).first()
    invalid = Integration.objects.filter(state=IntegrationState.INVALID).first()

    assert sandbox.check_auth(active.get_credentials()).outcome is Outcome.OK
    failed = sandbox.check_auth(invalid.get_credentials())
    assert failed.outcome is Outcome.AUTH_FAILED
    assert failed.http_status == 401


def test_plans_are_deterministic():
    now = timezone.now()

    first, second = demo.plan_customer(3, now), demo.plan_customer(3, now)

    assert first.employees == second.employees
    assert [(c.at, c.outcome) for c in first.timeline.checks] == [(c.at, c.outcome) for c in second.timeline.checks]


def test_the_failing_demo_customers_get_their_first_reconnect_request(seeded, smtp, settings):
    """`make demo` sends the due reconnect requests right after seeding: a failing integration's
    first email ("syncs will pause on …") and the paused ones' emails, each with a magic link."""
    from connect_flow.models import ReconnectRequest

    settings.BASE_URL = "http://127.0.0.1:8000"
    out = io.StringIO()
    call_command("send_reconnect_requests", stdout=out)

    sent = ReconnectRequest.objects.filter(sent_at__isnull=False)
    steps = set(sent.values_list("step", flat=True))
    assert "failing" in steps and steps & {"invalid", "reminder"}  # paused a day ago: the first reminder
    failing = sent.filter(step="failing").first()
    assert failing.integration.state == IntegrationState.ACTIVE
    message = smtp.wait_for(failing.recipient)
    assert "syncs will pause on" in smtp.text(message)
    assert "http://127.0.0.1:8000/connect/" in smtp.text(message)
    assert f"{sent.count()} reconnect requests sent." in out.getvalue()
    # A second run (beat's next tick) sends nothing more.
    call_command("send_reconnect_requests", stdout=io.StringIO())
    assert len(smtp.messages) == sent.count()
