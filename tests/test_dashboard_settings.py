"""Environment settings (owner) and new environments (staff): bounds, origin syntax, default scope
configs, audit, Post/Redirect/Get, and the same rules in Django admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from connect_flow.headers import allowed_frame_origins
from integrations import environments
from integrations.lib.origins import parse_origin
from integrations.models import AuditEvent, Environment, Integration, Membership, Role, ScopeConfig

from . import factories

EVERYTHING = {"hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED"}}}
NOTHING = {"hris_employees": {"availability": "DISABLED", "fields": {}}}


def _url(env: str = "acme") -> str:
    return reverse("dashboard:environment_settings", kwargs={"env": env})


def _form(**overrides) -> dict:
    data = {
        "name": "Acme production",
        "sync_interval": "180",
        "allowed_origins": "",
        "default_HRIS": "",
        "auth_failure_window": "72",
        "notify_language": "en",
        "notify_first_after": "24",
        "notify_reminder_days": "1, 3, 7, 14",
        "volume_drop_percent": "50",
        "volume_drop_min_records": "20",
    }
    return data | overrides


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Origins -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("  HTTPS://App.Example.com:8443/ ", "https://app.example.com:8443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_an_origin_is_normalized(raw, origin):
    assert parse_origin(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(1)",
        "app.example.com",
        "https://app.example.com/settings",
        "https://app.example.com?x=1",
        "https://*.example.com",
        "https://user:pw@app.example.com",
        "https://a.test; script-src *",
        "ftp://files.example.com",
        "https://app.example.com:99999",
        "https://",
    ],
)
def test_what_is_not_an_origin_is_refused(raw):
    with pytest.raises(ValueError):
        parse_origin(raw)
    assert allowed_frame_origins([raw]) == []


def test_origin_lines_name_every_bad_line():
    with pytest.raises(environments.SettingsError) as caught:
        environments.parse_origin_lines("https://ok.test\n\njavascript:alert(1)\nhttps://x.test/path")
    assert "line 3" in str(caught.value) and "line 4" in str(caught.value)
    assert environments.parse_origin_lines("https://a.test\nHTTPS://A.test/\n") == ["https://a.test"]


# --- The page ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("persona", "status"), [("owner", 200), ("editor", 403), ("viewer", 403), ("outsider", 404)])
def test_only_owners_open_and_save_settings(client, request, environment, persona, status):
    client.force_login(request.getfixturevalue(persona))

    assert client.get(_url()).status_code == status
    response = client.post(_url(), _form(name="Renamed"))

    assert response.status_code == (302 if status == 200 else status)
    environment.refresh_from_db()
    assert (environment.name == "Renamed") is (status == 200)


def test_the_page_shows_the_current_settings(client, owner, environment):
    environment.allowed_origins = ["https://app.acme.test"]
    environment.sync_interval = timedelta(hours=1)
    environment.save()
    config = factories.ScopeConfigFactory(environment=environment, name="Core", spec=EVERYTHING, is_default=True)
    client.force_login(owner)

    body = client.get(_url()).content.decode()

    assert 'value="60"' in body
    assert "https://app.acme.test</textarea>" in body
    assert f'<option value="{config.pk}" selected>Core</option>' in body
    assert 'aria-current="page">Settings</a>' in body


def test_saving_redirects_and_records_what_changed(client, owner, environment):
    config = factories.ScopeConfigFactory(environment=environment, name="Core", spec=EVERYTHING)
    client.force_login(owner)

    response = client.post(
        _url(),
        _form(
            name="Acme live",
            sync_interval="60",
            allowed_origins="https://app.acme.test\nhttp://localhost:3000/\n",
            default_HRIS=config.pk,
        ),
    )

    assert response.status_code == 302 and response["Location"] == _url()
    environment.refresh_from_db()
    assert environment.name == "Acme live"
    assert environment.sync_interval == timedelta(hours=1)
    assert environment.allowed_origins == ["https://app.acme.test", "http://localhost:3000"]
    assert ScopeConfig.objects.get(pk=config.pk).is_default
    event = AuditEvent.objects.get(action="environment.settings_changed")
    assert event.actor_user == owner
    assert event.details["changes"]["sync_interval"] == {"from": 180, "to": 60}
    assert event.details["changes"]["default_scope_config.HRIS"] == {"from": None, "to": config.pk}
    assert _messages(response) == ["Settings saved."]
    # A refresh of the page after the redirect changes nothing more.
    assert client.get(_url()).status_code == 200
    assert AuditEvent.objects.filter(action="environment.settings_changed").count() == 1


def test_the_htmx_branch_redirects_with_hx_redirect(client, owner, environment):
    client.force_login(owner)

    response = client.post(_url(), _form(name="Acme via htmx"), HTTP_HX_REQUEST="true")

    assert response.status_code == 200 and response["HX-Redirect"] == _url()
    environment.refresh_from_db()
    assert environment.name == "Acme via htmx"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sync_interval", "0", "greater than or equal to 15"),
        ("sync_interval", "5", "greater than or equal to 15"),
        ("sync_interval", "1441", "less than or equal to 1440"),
        ("sync_interval", "soon", "Enter a whole number"),
        ("allowed_origins", "javascript:alert(1)", "an origin starts with https://"),
        ("allowed_origins", "https://app.acme.test/embed", "an origin has no path"),
        ("name", "", "This field is required"),
    ],
)
def test_bad_input_rerenders_with_a_message_and_changes_nothing(client, owner, environment, field, value, message):
    client.force_login(owner)

    response = client.post(_url(), _form(**{field: value, "name": "Changed" if field != "name" else value}))

    assert response.status_code == 400
    body = response.content.decode()
    assert message in body
    assert 'role="alert"' in body
    environment.refresh_from_db()
    assert environment.name == "Acme production" and environment.sync_interval == timedelta(hours=3)
    assert environment.allowed_origins == []
    assert not AuditEvent.objects.filter(action="environment.settings_changed").exists()


def test_a_scope_config_that_reads_nothing_or_is_anothers_cannot_be_the_default(client, owner, environment):
    empty = factories.ScopeConfigFactory(environment=environment, name="Reads nothing", spec=NOTHING)
    theirs = factories.ScopeConfigFactory(environment=factories.EnvironmentFactory(), name="Theirs", spec=EVERYTHING)
    client.force_login(owner)

    page = client.get(_url()).content.decode()
    assert "Reads nothing" not in page and "Theirs" not in page
    for pk in (empty.pk, theirs.pk):
        response = client.post(_url(), _form(default_HRIS=pk))
        assert response.status_code == 400
        assert "Select a valid choice" in response.content.decode()
    assert not ScopeConfig.objects.filter(is_default=True).exists()


def test_changing_the_default_moves_it_and_none_clears_it(client, owner, environment):
    old = factories.ScopeConfigFactory(environment=environment, name="Old", spec=EVERYTHING, is_default=True)
    new = factories.ScopeConfigFactory(environment=environment, name="New", spec=EVERYTHING)
    client.force_login(owner)

    client.post(_url(), _form(default_HRIS=new.pk))
    assert list(ScopeConfig.objects.filter(is_default=True).values_list("pk", flat=True)) == [new.pk]

    client.post(_url(), _form(default_HRIS=""))
    assert not ScopeConfig.objects.filter(is_default=True).exists()
    assert ScopeConfig.objects.filter(pk__in=[old.pk, new.pk]).count() == 2


def test_a_shorter_interval_brings_far_away_syncs_forward(client, owner, environment):
    far = factories.IntegrationFactory(environment=environment, next_sync_at=timezone.now() + timedelta(hours=20))
    near = factories.IntegrationFactory(environment=environment, next_sync_at=timezone.now() + timedelta(minutes=10))
    near_at = near.next_sync_at
    client.force_login(owner)

    client.post(_url(), _form(sync_interval="30"))

    assert Integration.objects.get(pk=far.pk).next_sync_at <= timezone.now() + timedelta(minutes=30)
    assert Integration.objects.get(pk=near.pk).next_sync_at == near_at


def test_an_origin_saved_here_lets_an_embedded_page_be_framed(client, owner, environment):
    from connect_flow.links import create_connect_link
    from connect_flow.models import LinkType

    client.force_login(owner)
    client.post(_url(), _form(allowed_origins="https://app.acme.test"))
    environment.refresh_from_db()
    created = create_connect_link(
        environment,
        end_user_email="hr@umbrella.test",
        end_user_organization_name="Umbrella",
        end_user_origin_id="",
        category="HRIS",
        tool="sandbox",
        scope_config=None,
        link_type=LinkType.EMBEDDED,
        language="en",
        user=owner,
    )

    page = client.get(created.url.replace("http://testserver", ""))

    assert "frame-ancestors https://app.acme.test" in page["Content-Security-Policy"]


# --- New environments (staff) --------------------------------------------------------------------


def test_staff_create_an_environment_and_become_its_owner(client, db):
    staff = factories.UserFactory(email="staff@relink.test", is_staff=True)
    client.force_login(staff)

    assert client.get(reverse("dashboard:environment_new")).status_code == 200
    response = client.post(reverse("dashboard:environment_new"), {"name": "Acme sandbox", "slug": ""})

    environment = Environment.objects.get(name="Acme sandbox")
    assert environment.slug == "acme-sandbox"
    assert response.status_code == 302 and response["Location"] == _url("acme-sandbox")
    assert Membership.objects.get(environment=environment, user=staff).role == Role.OWNER
    # A default scope config, so a first connection syncs something.
    assert ScopeConfig.objects.filter(environment=environment, is_default=True).exists()
    assert client.get(_url("acme-sandbox")).status_code == 200
    assert AuditEvent.objects.filter(environment=environment, action="environment.created").exists()


def test_a_taken_url_name_gets_a_suffix(client, environment):
    staff = factories.UserFactory(is_staff=True)
    client.force_login(staff)

    client.post(reverse("dashboard:environment_new"), {"name": "Acme", "slug": "acme"})

    assert Environment.objects.filter(slug="acme-2", name="Acme").exists()


def test_non_staff_cannot_create_environments(client, owner):
    client.force_login(owner)

    assert client.get(reverse("dashboard:environment_new")).status_code == 403
    assert client.post(reverse("dashboard:environment_new"), {"name": "Mine"}).status_code == 403
    assert not Environment.objects.filter(name="Mine").exists()


def test_a_bad_name_rerenders_with_a_message(client, db):
    client.force_login(factories.UserFactory(is_staff=True))

    response = client.post(reverse("dashboard:environment_new"), {"name": "!!!", "slug": ""})

    assert response.status_code == 400
    assert "must contain letters or digits" in response.content.decode()
    assert not Environment.objects.exists()


def test_an_environment_created_in_admin_is_its_creators(client, superuser):
    client.force_login(superuser)

    response = client.post(
        reverse("admin:integrations_environment_add"),
        {
            "name": "Admin made",
            "slug": "admin-made",
            "sync_interval": "03:00:00",
            "allowed_origins": "https://app.example.com",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    environment = Environment.objects.get(slug="admin-made")
    assert Membership.objects.get(environment=environment, user=superuser).role == Role.OWNER
    assert client.get(_url("admin-made")).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("sync_interval", "00:00:10", "between 15 minutes and 24 hours"), ("allowed_origins", "javascript:alert(1)", "")],
)
def test_admin_applies_the_same_bounds(client, superuser, field, value, message):
    client.force_login(superuser)
    data = {
        "name": "Admin made",
        "slug": "admin-made",
        "sync_interval": "03:00:00",
        "allowed_origins": "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }

    response = client.post(reverse("admin:integrations_environment_add"), data | {field: value})

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert message in response.content.decode()
    assert not Environment.objects.filter(slug="admin-made").exists()


# --- Policy: failing authentication, reconnect requests, silent failures ---------------------------


def test_the_policy_is_saved_and_audited(client, owner, environment):
    client.force_login(owner)

    response = client.post(
        _url(),
        _form(
            auth_failure_window="48",
            transient_errors_count="on",
            notify_customers="on",
            notify_sender_name="Acme HR Sync",
            notify_reply_to="support@acme.test",
            notify_language="de",
            notify_first_after="12",
            notify_reminder_days="7, 1,1, 3",
            volume_drop_percent="30",
            volume_drop_min_records="100",
        ),
    )

    assert response.status_code == 302
    environment.refresh_from_db()
    assert environment.auth_failure_window == timedelta(hours=48)
    assert environment.transient_errors_count is True
    assert environment.notify_customers is True
    assert (environment.notify_sender_name, environment.notify_reply_to) == ("Acme HR Sync", "support@acme.test")
    assert environment.notify_language == "de"
    assert environment.notify_first_after == timedelta(hours=12)
    assert environment.notify_reminder_days == [1, 3, 7]
    assert (environment.volume_drop_percent, environment.volume_drop_min_records) == (30, 100)
    changes = AuditEvent.objects.get(action="environment.settings_changed").details["changes"]
    assert changes["auth_failure_window"] == {"from": 72, "to": 48}
    assert changes["notify_customers"] == {"from": False, "to": True}
    page = client.get(_url()).content.decode()
    assert 'value="48"' in page and 'value="1, 3, 7"' in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth_failure_window": "12"}, "greater than or equal to 24"),
        ({"auth_failure_window": "400"}, "less than or equal to 336"),
        ({"notify_first_after": "72"}, "before syncs pause"),
        ({"notify_first_after": "0"}, "greater than or equal to 1"),
        ({"notify_reminder_days": "1, soon"}, "whole numbers from 1 to 90"),
        ({"notify_reminder_days": "0"}, "whole numbers from 1 to 90"),
        ({"notify_reply_to": "not-an-address"}, "Enter a valid email address"),
        ({"volume_drop_percent": "5"}, "greater than or equal to 10"),
        ({"notify_language": "xx"}, "Select a valid choice"),
    ],
)
def test_a_policy_out_of_bounds_changes_nothing(client, owner, environment, overrides, message):
    client.force_login(owner)

    response = client.post(_url(), _form(name="Changed", **overrides))

    assert response.status_code == 400
    assert message in response.content.decode()
    environment.refresh_from_db()
    assert environment.name == "Acme production"
    assert environment.auth_failure_window == timedelta(hours=72)
