"""The integration page: health in plain words, sync history polling, force sync and check now by role."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from integrations import outbox, syncs
from integrations.models import AuditEvent, Integration, Sync, WebhookDelivery

from . import factories

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 19, 10, 2, tzinfo=UTC)


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
    assert "Authentication failing since 19 Nov 10:02 UTC — syncs paused since 22 Nov 10:02 UTC" in body
    assert "last error: 401 invalid API key" in body


def test_a_failing_but_active_integration_says_when_syncs_pause(client, viewer, integration):
    integration.auth_failing_since = T
    integration.save()
    client.force_login(viewer)
    body = client.get(_url("integration", integration)).content.decode()
    assert "syncs pause at 22 Nov 10:02 UTC unless a check succeeds" in body


def test_a_viewer_sees_no_actions_and_cannot_force_a_sync(client, viewer, integration):
    client.force_login(viewer)
    assert "Force sync" not in client.get(_url("integration", integration)).content.decode()
    assert client.post(_url("force_sync", integration)).status_code == 403
    assert client.post(_url("check_now", integration)).status_code == 403
    assert not Sync.objects.exists()


def test_an_editor_forces_one_sync_and_a_second_click_reports_the_open_one(client, editor, integration, monkeypatch):
    monkeypatch.setattr(syncs, "_enqueue", lambda ids, **kwargs: None)
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
    sync = factories.SyncFactory(
        integration=integration, status="RUNNING", ended_at=None, models_done=1, models_total=2
    )
    client.force_login(viewer)
    page = client.get(_url("integration", integration)).content.decode()
    assert 'hx-trigger="every 2s"' in page and "1/2 models" in page
    fragment = client.get(_url("integration_syncs", integration), headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment and 'hx-trigger="every 2s"' in fragment
    Sync.objects.filter(pk=sync.pk).update(status="SUCCEEDED")
    done = client.get(_url("integration_syncs", integration), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in done and "Succeeded" in done


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


def test_disable_asks_for_confirmation_and_reloads_the_page_after_htmx(client, editor, environment):
    integration = factories.IntegrationFactory(environment=environment, end_user_organization_name="Umbrella Corp")
    client.force_login(editor)
    page = client.get(_url("integration", integration)).content.decode()
    assert 'hx-confirm="Disable Umbrella Corp? Its syncs and auth checks stop' in page
    response = client.post(_url("set_enabled", integration), {"enabled": "false"}, headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == _url("integration", integration)  # a full load, so the message shows
    assert Integration.objects.get(pk=integration.pk).state == "INACTIVE"


def test_the_nav_and_the_page_call_api_keys_the_same(client, owner, environment):
    client.force_login(owner)
    page = client.get(reverse("dashboard:api_keys", kwargs={"env": environment.slug})).content.decode()
    assert ">API keys</a>" in page and "<h1>API keys</h1>" in page and "Secrets</a>" not in page


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
    assert delivery.payload["data"]["id"] == integration.pk
    assert AuditEvent.objects.filter(action="integration.deleted", actor_user=editor).count() == 1


# --- Auth-check timeline, scope coverage, audit trail --------------------------------------------


def test_the_timeline_counts_this_integrations_checks_per_day(client, viewer, integration, environment):
    now = datetime.now(UTC)
    for days_ago, outcome in [(0, "OK"), (0, "OK"), (2, "AUTH_FAILED"), (40, "OK")]:  # 40 days ago: off the chart
        factories.AuthCheckFactory(integration=integration, outcome=outcome, checked_at=now - timedelta(days=days_ago))
    factories.AuthCheckFactory(integration=factories.IntegrationFactory(environment=environment), checked_at=now)
    client.force_login(viewer)
    body = client.get(_url("integration", integration)).content.decode()

    assert '<svg class="auth-chart"' in body and "for this integration</title>" in body
    today = re.search(rf'<g class="bar" data-day="{now:%Y-%m-%d}">\s*<title>([^<]+)</title>', body).group(1)
    failed_day = now - timedelta(days=2)
    failed = re.search(rf'<g class="bar" data-day="{failed_day:%Y-%m-%d}">\s*<title>([^<]+)</title>', body).group(1)
    assert today.endswith(": 2 OK, 0 auth failed, 0 unavailable")
    assert failed.endswith(": 0 OK, 1 auth failed, 0 unavailable")
    assert "3 checks since" in body


def test_the_scope_section_shows_what_a_sync_reads_with_the_customers_opt_outs(client, viewer, environment):
    scope = factories.ScopeConfigFactory(
        environment=environment,
        name="Payroll",
        spec={
            "hris_employees": {
                "availability": "ENABLED",
                "fields": {"first_name": "ENABLED", "salary": "OPTIONAL", "department": "OPTIONAL"},
            },
            "hris_absences": {"availability": "OPTIONAL", "fields": {"start_date": "ENABLED"}},
        },
    )
    integration = factories.IntegrationFactory(
        environment=environment,
        tool="sandbox",
        scope_config=scope,
        opted_out_fields=["hris_employees.salary", "hris_absences"],
    )
    client.force_login(viewer)
    body = client.get(_url("integration", integration)).content.decode()
    section = body[body.index('id="scope"') : body.index("</section>", body.index('id="scope"'))]
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"<tr class=[^>]*>\s*<td>[^<]*<br><code>(\w+)</code>.*?</tr>", section, re.S)
    }

    assert ">Payroll</a>" in section
    employees = rows["hris_employees"]
    assert (
        '<li class="field-read"><code>first_name</code> <span class="badge avail-enabled">Enabled</span></li>'
        in employees
    )
    assert (
        '<li class="field-read"><code>department</code> <span class="badge avail-optional">Optional</span></li>'
        in employees
    )
    assert (
        '<li class="field-skipped"><code>salary</code> <span class="badge avail-optional">Optional</span> '
        '<span class="badge optout">opted out</span></li>'
    ) in employees
    assert (
        '<li class="field-skipped"><code>email</code> <span class="badge avail-disabled">Disabled</span></li>'
        in employees
    )
    assert (
        'class="coverage-skipped muted"' in rows["hris_absences"]
        and "opted out by the customer" in rows["hris_absences"]
    )


def test_an_unreadable_scope_config_is_reported_not_a_500(client, viewer, environment):
    scope = factories.ScopeConfigFactory(environment=environment)
    type(scope).objects.filter(pk=scope.pk).update(spec={"hris_employees": {"availability": "SOMETIMES"}})
    integration = factories.IntegrationFactory(environment=environment, scope_config=scope)
    client.force_login(viewer)
    response = client.get(_url("integration", integration))
    assert response.status_code == 200 and "This scope config cannot be read" in response.content.decode()


def test_the_audit_trail_names_who_did_what(
    client, editor, integration, environment, published, django_capture_on_commit_callbacks
):
    other = factories.IntegrationFactory(environment=environment)
    AuditEvent.objects.create(environment=environment, integration_id=other.pk, action="integration.disabled")
    client.force_login(editor)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(_url("force_sync", integration))
        client.post(_url("check_now", integration))
        client.post(_url("set_enabled", integration), {"enabled": "false"})

    assert [args for task, args in published if task == outbox.CHECK_AUTH] == [(integration.pk,)]
    body = client.get(_url("integration", integration)).content.decode()
    trail = body[body.index('id="audit"') :]
    rows = re.findall(r"<tr><td>.*?</td><td>([^<]+)</td><td>([^<]+)</td></tr>", trail)
    assert rows == [
        ("editor@acme.test", "State Active → Inactive (disabled)"),
        ("editor@acme.test", "Disabled the integration"),
        ("editor@acme.test", "Asked for an authentication check"),
        ("editor@acme.test", "Forced a sync"),
    ]


@pytest.mark.parametrize(
    "action, details, text",
    [
        (
            "link.created",
            {"link_type": "MAGIC_LINK", "scope_config_id": "sc_1"},
            "Created a magic reconnection link to a new scope config",
        ),
        ("link.created", {"link_type": "EMBEDDED", "scope_config_id": None}, "Created an embedded reconnection link"),
        ("link.opened", {"link_type": "EMBEDDED"}, "Opened an embedded reconnection link"),
        ("link.completed", {"link_type": "MAGIC_LINK"}, "Completed the reconnection with new credentials"),
        ("link.revoked", {"link_type": "MAGIC_LINK"}, "Revoked a magic reconnection link"),
        ("link.expired", {"link_type": "EMBEDDED"}, "An embedded reconnection link expired unused"),
        (
            "link.attempt_failed",
            {"error_code": "MISSING_PERMISSIONS", "missing_permissions": ["compensation:read"]},
            "Reconnection attempt rejected: missing permissions (missing: compensation:read)",
        ),
        (
            "integration.state_changed",
            {"from": "ACTIVE", "to": "INVALID", "reason": "auth check AUTH_FAILED"},
            "State Active → Invalid (authentication failed)",
        ),
        ("sync.forced", {"type": "FULL"}, "Forced a sync (full)"),
        ("link.completed", {"link_type": "MAGIC_LINK", "kind": "CONNECT"}, "Connected for the first time"),
        ("link.created", {"link_type": "EMBEDDED", "kind": "CONNECT"}, "Created an embedded connection link"),
        (
            "link.completed",
            {"link_type": "MAGIC_LINK", "kind": "RECONNECT"},
            "Completed the reconnection with new credentials",
        ),
        ("something.new", {}, "something.new"),
    ],
)
def test_audit_events_in_plain_words(action, details, text):
    from dashboard.health import describe_event

    assert describe_event(AuditEvent(action=action, details=details)) == text
