"""Scope configs that mean something: at least one model enabled, the category's default for an
integration without one ("syncs nothing" in red when there is neither), delete and duplicate."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connect_flow import links
from connect_flow.models import ConnectionLink, LinkKind
from connect_flow.scope_configs import delete_scope_config, pending_links_to, usage
from dashboard.scopes import category_models
from integrations import audit, syncs
from integrations.models import ApiKey, AuditEvent, Integration, ScopeConfig, Sync, SyncedRecord
from integrations.scopes import (
    EMPTY_SCOPE_CONFIG,
    ScopeConfigEmpty,
    ScopeConfigInUse,
    copy_name,
    default_scope_configs,
    duplicate_scope_config,
    effective_scope_config,
    reads_a_model,
    reads_nothing_filter,
    save_scope_config,
)
from sandbox.models import SandboxCompany

from . import factories

HTMX = {"HX-Request": "true"}
EMPLOYEES = {"hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED"}}}
ABSENCES = {"hris_absences": {"availability": "OPTIONAL", "fields": {"start_date": "ENABLED"}}}
NOTHING = {
    "hris_employees": {"availability": "DISABLED", "fields": {"first_name": "ENABLED"}},
    "hris_absences": {"availability": "DISABLED", "fields": {}},
}
SYNCS_NOTHING = "Syncs nothing — no scope config and no default for HRIS"


def _config(environment, name="Core", spec=None, **kwargs) -> ScopeConfig:
    return factories.ScopeConfigFactory(environment=environment, name=name, spec=spec or EMPLOYEES, **kwargs)


def _url(name: str, config=None, env: str = "acme") -> str:
    kwargs = {"env": env} if config is None else {"env": env, "scope_config_id": config.pk}
    return reverse(f"dashboard:{name}", kwargs=kwargs)


def _page(name: str, integration) -> str:
    return reverse(f"dashboard:{name}", kwargs={"env": integration.environment.slug, "integration_id": integration.pk})


# --- At least one model enabled: the domain ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("spec", [{}, NOTHING], ids=["empty", "all-disabled"])
def test_saving_a_scope_config_that_enables_no_model_is_refused(environment, owner, spec):
    actor = audit.Actor(user=owner)

    with pytest.raises(ScopeConfigEmpty, match="Enable at least one model"):
        save_scope_config(environment.pk, actor, name="Nothing", spec=spec, category="HRIS")
    created = save_scope_config(
        environment.pk, actor, name="Absences", spec=ABSENCES, category="HRIS"
    )  # OPTIONAL counts
    with pytest.raises(ScopeConfigEmpty):
        save_scope_config(environment.pk, actor, name="Absences", spec=spec, instance=created)

    created.refresh_from_db()
    assert created.spec == ABSENCES
    assert list(ScopeConfig.objects.filter(environment=environment).values_list("name", flat=True)) == ["Absences"]
    assert AuditEvent.objects.filter(action="scope_config.updated").count() == 0
    assert str(ScopeConfigEmpty()) == EMPTY_SCOPE_CONFIG


@pytest.mark.django_db
def test_reads_a_model(environment):
    assert reads_a_model(_config(environment, "A", EMPLOYEES))
    assert reads_a_model(_config(environment, "B", ABSENCES))
    assert not reads_a_model(_config(environment, "C", NOTHING))
    assert not reads_a_model(ScopeConfig(spec={"hris_employees": {"availability": "NOPE"}}))  # unreadable


# --- ... in the dashboard form, the admin, and as a link's target --------------------------------


def _picker_post(name: str, **overrides: str) -> dict:
    data = {"name": name, "category": "HRIS"}
    for model, _label, fields in category_models("HRIS"):
        data[f"model__{model}"] = "DISABLED"
        for f in fields:
            data[f"field__{model}__{f}"] = "DISABLED"
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_the_form_refuses_a_config_that_enables_no_model_and_keeps_what_was_posted(client, editor, environment):
    client.force_login(editor)

    response = client.post(
        _url("scope_config_new"), _picker_post("Nothing yet", field__hris_employees__salary="ENABLED")
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert EMPTY_SCOPE_CONFIG in body
    assert 'value="Nothing yet"' in body
    assert 'name="field__hris_employees__salary" value="ENABLED" aria-label="salary: enabled" checked' in body
    assert not ScopeConfig.objects.exists()


@pytest.mark.django_db
def test_editing_a_config_down_to_no_model_is_refused(client, editor, environment):
    config = _config(environment)
    client.force_login(editor)

    response = client.post(_url("scope_config", config), _picker_post("Renamed"))

    assert response.status_code == 200 and EMPTY_SCOPE_CONFIG in response.content.decode()
    config.refresh_from_db()
    assert (config.name, config.spec) == ("Core", EMPLOYEES)


@pytest.mark.django_db
def test_the_admin_refuses_a_config_that_enables_no_model(admin_client, environment):
    url = reverse("admin:integrations_scopeconfig_add")
    post = {"environment": environment.pk, "name": "Nothing", "category": "HRIS", "created_at_0": "2026-01-01"}
    post["created_at_1"] = "10:00:00"

    refused = admin_client.post(url, {**post, "spec": json.dumps(NOTHING)})
    unreadable = admin_client.post(url, {**post, "spec": json.dumps({"hris_employees": {"availability": "NOPE"}})})
    accepted = admin_client.post(url, {**post, "name": "Employees", "spec": json.dumps(EMPLOYEES)})

    assert refused.status_code == 200 and EMPTY_SCOPE_CONFIG in refused.content.decode()
    assert unreadable.status_code == 200 and "This spec cannot be read" in unreadable.content.decode()
    assert accepted.status_code == 302
    assert list(ScopeConfig.objects.values_list("name", flat=True)) == ["Employees"]


@pytest.mark.django_db
def test_a_config_that_enables_no_model_is_not_offered_as_relink_target(client, editor, environment):
    core = _config(environment)
    empty = _config(environment, "Legacy empty", NOTHING)  # saved before the rule
    integration = factories.IntegrationFactory(environment=environment, scope_config=core)
    client.force_login(editor)

    body = client.get(_page("relink", integration), headers=HTMX).content.decode()
    refused = client.post(
        _page("relink_create", integration),
        {"scope_config": empty.pk, "link_type": "EMBEDDED", "language": "en"},
        headers=HTMX,
    ).content.decode()

    assert f'value="{core.pk}"' in body and empty.pk not in body
    assert "No link created:" in refused and "enables no model" in refused
    assert not ConnectionLink.objects.exists()


def _api(client, key: str, path: str, body: dict):
    return client.post(
        path, json.dumps(body), content_type="application/json", headers={"Authorization": f"Bearer {key}"}
    )


@pytest.mark.django_db
def test_the_api_refuses_a_config_that_enables_no_model_as_target(client, environment, monkeypatch):
    monkeypatch.setattr("integrations.syncs._enqueue", lambda sync_ids, **kwargs: None)
    _key, raw = ApiKey.create(environment, "Backend")
    empty = _config(environment, "Legacy empty", NOTHING)
    integration = factories.IntegrationFactory(environment=environment)

    create = _api(
        client,
        raw,
        "/v1/connect/create-link",
        {"end_user_email": "hr@c.test", "end_user_organization_name": "C", "scope_config_id": empty.pk},
    )
    relink = _api(client, raw, f"/v1/integrations/{integration.pk}/relink", {"scope_config_id": empty.pk})

    for response in (create, relink):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "PLATFORM.INPUT_INVALID"
        assert "enables no model" in error["message"]
    assert not ConnectionLink.objects.exists()


# --- The effective scope config -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_effective_scope_config_is_its_own_else_the_default_else_none(environment, django_assert_num_queries):
    own = _config(environment, "Own")
    default = _config(environment, "Default", is_default=True)
    _config(environment, "ATS default", category="ATS", is_default=True)
    with_own = factories.IntegrationFactory(environment=environment, scope_config=own)
    follower = factories.IntegrationFactory(environment=environment, scope_config=None)
    ats = factories.IntegrationFactory(environment=environment, scope_config=None, category="ATS", tool="sandbox")

    assert effective_scope_config(with_own) == own
    assert effective_scope_config(follower) == default
    defaults = default_scope_configs(environment.pk)
    with django_assert_num_queries(0):
        assert effective_scope_config(follower, defaults) == default
        assert effective_scope_config(ats, defaults).name == "ATS default"

    ScopeConfig.objects.filter(pk=default.pk).update(is_default=False)
    assert effective_scope_config(Integration.objects.get(pk=follower.pk)) is None
    assert effective_scope_config(Integration.objects.get(pk=with_own.pk)) == own


@pytest.mark.django_db
def test_reads_nothing_filter(environment):
    empty = _config(environment, "Empty", NOTHING)
    ok = _config(environment, "Ok")
    orphan = factories.IntegrationFactory(environment=environment, scope_config=None)
    on_empty = factories.IntegrationFactory(environment=environment, scope_config=empty)
    factories.IntegrationFactory(environment=environment, scope_config=ok)

    def nothing() -> set[str]:
        return set(Integration.objects.filter(reads_nothing_filter(environment.pk)).values_list("pk", flat=True))

    assert nothing() == {orphan.pk, on_empty.pk}
    ScopeConfig.objects.filter(pk=ok.pk).update(is_default=True)
    assert nothing() == {on_empty.pk}
    ScopeConfig.objects.filter(pk=ok.pk).update(is_default=False)
    ScopeConfig.objects.filter(pk=empty.pk).update(is_default=True)  # a default that reads nothing
    assert nothing() == {orphan.pk, on_empty.pk}


@pytest.mark.django_db
def test_a_connect_link_without_scope_config_follows_the_default_at_sync_time(environment, monkeypatch):
    monkeypatch.setattr("integrations.syncs._enqueue", lambda sync_ids, **kwargs: None)
    default = _config(environment, "Default", is_default=True)
    created = links.create_connect_link(environment, end_user_email="hr@c.test", end_user_organization_name="C")
    assert links.target_scope(created.link) == default  # the hosted page asks for its permissions

    integration = links.complete(
        created.link.pk, credentials={"api_key": "k"}, opted_out_fields=[], tool="sandbox"
    ).integration

    assert integration.scope_config_id is None  # not copied
    assert Sync.objects.get(integration=integration).scope_config == default
    newer = _config(environment, "Newer")
    ScopeConfig.objects.filter(pk=default.pk).update(is_default=False)
    ScopeConfig.objects.filter(pk=newer.pk).update(is_default=True)
    assert effective_scope_config(Integration.objects.get(pk=integration.pk)) == newer


# --- A real sync, against the sandbox --------------------------------------------------------------


@pytest.fixture
def sandbox(live_server, settings, monkeypatch):
    monkeypatch.setattr(syncs, "_enqueue", lambda sync_ids, **kwargs: None)
    settings.BASE_URL = live_server.url
    company = SandboxCompany.objects.create(name="Initech")
    factories.SandboxEmployeeFactory.create_batch(3, company=company)
    return company


def _sync(company, **kwargs) -> tuple[Integration, Sync]:
    _, raw = company.create_key()
    integration = factories.IntegrationFactory(credentials={"api_key": raw}, next_sync_at=timezone.now(), **kwargs)
    sync, _ = syncs.queue_sync(integration.pk)
    return integration, syncs.run_sync(sync.pk)


@pytest.mark.django_db(transaction=True)
def test_a_sync_reads_with_its_own_scope_config_else_the_default_else_nothing(sandbox):
    environment = factories.EnvironmentFactory()
    absences_only = _config(environment, "Absences only", {"hris_absences": {"availability": "ENABLED"}})
    default = _config(environment, "Employees default", EMPLOYEES, is_default=True)

    own, own_sync = _sync(sandbox, environment=environment, scope_config=absences_only)
    follower, follower_sync = _sync(sandbox, environment=environment, scope_config=None)

    assert own_sync.scope_config == absences_only and list(own_sync.records_per_model) == ["hris_absences"]
    assert follower_sync.status == "SUCCEEDED" and follower_sync.scope_config == default
    assert follower_sync.records_per_model == {"hris_employees": 3}
    assert SyncedRecord.objects.filter(integration=follower, model="hris_employees").count() == 3

    ScopeConfig.objects.filter(pk=default.pk).update(is_default=False)
    orphan, orphan_sync = _sync(sandbox, environment=environment, scope_config=None)

    assert orphan_sync.status == "CANCELLED"
    assert orphan_sync.warnings == ["No scope config: nothing to sync"]
    assert orphan_sync.error_message == "No scope config: nothing to sync"
    assert orphan_sync.scope_config is None and orphan_sync.records_per_model == {}
    assert orphan.auth_checks.get().outcome == "OK"  # its health is still checked
    assert not SyncedRecord.objects.filter(integration=orphan).exists()


@pytest.mark.django_db
def test_the_tick_queues_followers_with_the_default(environment):
    default = _config(environment, "Default", is_default=True)
    own = _config(environment, "Own")
    past = timezone.now() - timedelta(minutes=1)
    follower = factories.IntegrationFactory(environment=environment, scope_config=None, next_sync_at=past)
    with_own = factories.IntegrationFactory(environment=environment, scope_config=own, next_sync_at=past)
    ats = factories.IntegrationFactory(environment=environment, scope_config=None, category="ATS", next_sync_at=past)

    assert syncs.tick(enqueue=lambda ids: None) == 3

    queued = dict(Sync.objects.values_list("integration_id", "scope_config_id"))
    assert queued == {follower.pk: default.pk, with_own.pk: own.pk, ats.pk: None}


# --- "Syncs nothing" in red on the dashboard -------------------------------------------------------


@pytest.mark.django_db
def test_the_status_card_says_syncs_nothing_in_red_instead_of_healthy(client, viewer, environment):
    integration = factories.IntegrationFactory(
        environment=environment, scope_config=None, last_auth_check_at=timezone.now(), last_auth_outcome="OK"
    )
    client.force_login(viewer)

    body = client.get(_page("integration", integration)).content.decode()

    assert 'class="card health health-error"' in body
    assert SYNCS_NOTHING in body and "Healthy" not in body
    assert f'href="{_url("scope_configs")}"' in body

    _config(environment, "Default", is_default=True)
    body = client.get(_page("integration", integration)).content.decode()
    assert "Syncs nothing" not in body and "Healthy" in body


@pytest.mark.django_db
def test_an_own_scope_config_that_enables_no_model_also_syncs_nothing(client, viewer, environment):
    empty = _config(environment, "Legacy empty", NOTHING)
    integration = factories.IntegrationFactory(environment=environment, scope_config=empty)
    client.force_login(viewer)

    body = client.get(_page("integration", integration)).content.decode()

    assert "Syncs nothing — scope config Legacy empty enables no model" in body


@pytest.mark.django_db
def test_the_list_marks_the_rows_that_sync_nothing(client, viewer, environment):
    orphan = factories.IntegrationFactory(environment=environment, scope_config=None, end_user_organization_name="Orph")
    factories.IntegrationFactory(environment=environment, end_user_organization_name="Fine")
    client.force_login(viewer)

    body = client.get(reverse("dashboard:integrations", kwargs={"env": "acme"})).content.decode()

    rows = {row.split("</a>")[0].rsplit(">", 1)[-1]: row for row in body.split("<tr>")[2:]}
    assert f'<span class="badge syncs-nothing" title="{SYNCS_NOTHING}">Syncs nothing' in rows["Orph"]
    assert "syncs-nothing" not in rows["Fine"]
    assert orphan.pk in rows["Orph"]


@pytest.mark.django_db
def test_the_list_runs_a_constant_number_of_queries_with_rows_that_sync_nothing(client, viewer, environment):
    client.force_login(viewer)
    url = reverse("dashboard:integrations", kwargs={"env": "acme"})
    factories.IntegrationFactory(environment=environment, scope_config=None)

    client.get(url)  # warm: the session and the cached row count
    with CaptureQueriesContext(connection) as one:
        assert client.get(url).content.decode().count('class="badge syncs-nothing"') == 1
    for i in range(19):
        factories.IntegrationFactory(
            environment=environment, scope_config=None if i % 2 else _config(environment, f"C{i}")
        )
    client.get(url)
    with CaptureQueriesContext(connection) as twenty:
        assert client.get(url).content.decode().count('class="badge syncs-nothing"') == 10

    assert len(twenty) == len(one), [q["sql"] for q in twenty.captured_queries]


@pytest.mark.django_db
def test_the_overview_counts_the_integrations_that_sync_nothing(client, viewer, environment):
    orphans = [factories.IntegrationFactory(environment=environment, scope_config=None) for _ in range(2)]
    factories.IntegrationFactory(environment=environment, scope_config=None, enabled=False, state="INACTIVE")
    factories.IntegrationFactory(environment=environment)
    client.force_login(viewer)

    body = client.get(reverse("dashboard:overview", kwargs={"env": "acme"})).content.decode()

    section = body.split('id="syncs-nothing"')[1].split("</section>")[0]
    assert "Syncs nothing: 2 integrations" in section
    assert f'href="{_url("scope_configs")}"' in section
    for integration in orphans:
        assert _page("integration", integration) in section

    _config(environment, "Default", is_default=True)
    assert (
        'id="syncs-nothing"' not in client.get(reverse("dashboard:overview", kwargs={"env": "acme"})).content.decode()
    )


# --- Delete -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_is_refused_while_an_integration_or_a_pending_link_uses_it(environment, editor):
    config = _config(environment)
    other = _config(environment, "Other")
    user = factories.IntegrationFactory(environment=environment, scope_config=config)
    actor = audit.Actor(user=editor)

    with pytest.raises(ScopeConfigInUse) as refused:
        delete_scope_config(config, actor)
    assert refused.value.integrations == [user] and refused.value.pending_links == 0

    Integration.objects.filter(pk=user.pk).update(scope_config=other)
    link = factories.ConnectionLinkFactory(integration=user, scope_config=config)
    with pytest.raises(ScopeConfigInUse) as refused:
        delete_scope_config(config, actor)
    assert (refused.value.integrations, refused.value.pending_links) == ([], 1)

    # Completed, revoked and expired links no longer count.
    now = timezone.now()
    factories.ConnectionLinkFactory(integration=user, scope_config=config, completed_at=now)
    factories.ConnectionLinkFactory(integration=user, scope_config=config, revoked_at=now)
    factories.ConnectionLinkFactory(integration=user, scope_config=config, expires_at=now - timedelta(seconds=1))
    assert pending_links_to(config) == 1
    ConnectionLink.objects.filter(pk=link.pk).update(revoked_at=now)

    delete_scope_config(config, actor)

    assert not ScopeConfig.objects.filter(pk=config.pk).exists()
    event = AuditEvent.objects.get(action="scope_config.deleted")
    assert (event.actor_user, event.details["scope_config_id"], event.details["name"]) == (editor, config.pk, "Core")


@pytest.mark.django_db
def test_deleting_the_default_leaves_its_followers_syncing_nothing(environment, editor):
    default = _config(environment, "Default", is_default=True)
    follower = factories.IntegrationFactory(environment=environment, scope_config=None)
    assert usage(default).default_followers == 1 and not usage(default).in_use

    delete_scope_config(default, audit.Actor(user=editor))

    assert default_scope_configs(environment.pk) == {}
    assert effective_scope_config(Integration.objects.get(pk=follower.pk)) is None
    assert AuditEvent.objects.get(action="scope_config.deleted").details["was_default"] is True


@pytest.mark.django_db
def test_the_delete_page_lists_what_uses_it_and_offers_no_button(client, editor, environment):
    config = _config(environment)
    user = factories.IntegrationFactory(
        environment=environment, scope_config=config, end_user_organization_name="Umbrella"
    )
    factories.ConnectionLinkFactory(
        integration=factories.IntegrationFactory(environment=environment), scope_config=config
    )
    client.force_login(editor)

    body = client.get(_url("scope_config_delete", config)).content.decode()

    assert "Core cannot be deleted" in body
    assert f'<a href="{_page("integration", user)}">Umbrella</a>' in body
    assert "1 pending link targets it" in body
    assert "Delete scope config</button>" not in body
    page = client.get(_url("scope_config", config)).content.decode()
    assert f'href="{_url("scope_config_delete", config)}"' in page and "hx-post" not in page.split("Delete…")[0][-400:]


@pytest.mark.django_db
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_posting_delete_while_in_use_changes_nothing_and_redirects_to_the_reasons(client, editor, environment, htmx):
    config = _config(environment)
    factories.IntegrationFactory(environment=environment, scope_config=config)
    client.force_login(editor)

    response = client.post(_url("scope_config_delete", config), headers=HTMX if htmx else {})

    target = _url("scope_config_delete", config)
    assert (response.headers["HX-Redirect"] if htmx else response.url) == target
    assert ScopeConfig.objects.filter(pk=config.pk).exists()
    assert not AuditEvent.objects.filter(action="scope_config.deleted").exists()
    assert "is in use and was not deleted" in client.get(target).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_deleting_an_unused_config_redirects_to_the_list_with_a_message(client, editor, environment, htmx):
    config = _config(environment, "Unused")
    client.force_login(editor)
    page = client.get(_url("scope_config", config)).content.decode()
    assert f'hx-post="{_url("scope_config_delete", config)}" hx-confirm="Delete scope config Unused?"' in page
    assert "Delete scope config</button>" in client.get(_url("scope_config_delete", config)).content.decode()

    response = client.post(_url("scope_config_delete", config), headers=HTMX if htmx else {})

    assert response.status_code == 200 if htmx else 302
    assert (response.headers["HX-Redirect"] if htmx else response.url) == _url("scope_configs")
    assert not ScopeConfig.objects.filter(pk=config.pk).exists()
    assert "Scope config Unused deleted." in client.get(_url("scope_configs")).content.decode()
    # A refresh of the POST deletes nothing twice: the config is gone.
    assert client.post(_url("scope_config_delete", config)).status_code == 404
    assert AuditEvent.objects.filter(action="scope_config.deleted").count() == 1


@pytest.mark.django_db
def test_the_confirmation_says_the_category_loses_its_default(client, editor, environment):
    default = _config(environment, "Default", is_default=True)
    factories.IntegrationFactory(environment=environment, scope_config=None)
    client.force_login(editor)

    body = client.get(_url("scope_config_delete", default)).content.decode()

    assert "after deleting it, HRIS has no default" in body and "the 1 integration without" in body
    response = client.post(_url("scope_config_delete", default), follow=True)
    assert "HRIS has no default scope config now." in response.content.decode()


# --- Duplicate --------------------------------------------------------------------------------


def test_copy_names():
    assert copy_name("Core", []) == "Core (copy)"
    assert copy_name("Core", ["core (COPY)"]) == "Core (copy 2)"
    assert copy_name("Core", ["Core (copy)", "Core (copy 2)"]) == "Core (copy 3)"
    assert len(copy_name("x" * 100, [])) == 100


@pytest.mark.django_db
def test_duplicating_copies_category_and_spec_never_the_default(environment, editor):
    source = _config(environment, "Recruiting", category="ATS", spec=EMPLOYEES, is_default=True)

    first = duplicate_scope_config(source, audit.Actor(user=editor))
    second = duplicate_scope_config(source, audit.Actor(user=editor))

    assert (first.name, second.name) == ("Recruiting (copy)", "Recruiting (copy 2)")
    assert (first.category, first.spec, first.is_default) == ("ATS", EMPLOYEES, False)
    events = AuditEvent.objects.filter(action="scope_config.duplicated").order_by("pk")
    assert [(e.details["name"], e.details["source_id"]) for e in events] == [
        ("Recruiting (copy)", source.pk),
        ("Recruiting (copy 2)", source.pk),
    ]
    with pytest.raises(ScopeConfigEmpty):
        duplicate_scope_config(_config(environment, "Legacy empty", NOTHING), audit.Actor(user=editor))


@pytest.mark.django_db
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_duplicate_redirects_to_the_new_configs_edit_page(client, editor, environment, htmx):
    source = _config(environment)
    client.force_login(editor)
    assert (
        f'action="{_url("scope_config_duplicate", source)}"'
        in client.get(_url("scope_config", source)).content.decode()
    )

    response = client.post(_url("scope_config_duplicate", source), headers=HTMX if htmx else {})

    copy = ScopeConfig.objects.get(name="Core (copy)")
    assert (response.headers["HX-Redirect"] if htmx else response.url) == _url("scope_config", copy)
    assert "Scope config Core duplicated as Core (copy)." in client.get(_url("scope_config", copy)).content.decode()
    assert client.get(_url("scope_config_duplicate", source)).status_code == 405  # GET creates nothing
    assert ScopeConfig.objects.count() == 2


# --- Who may delete and duplicate --------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("persona", "allowed"), [("viewer", 403), ("outsider", 404), ("editor", None), ("owner", None)]
)
@pytest.mark.parametrize("action", ["delete-get", "delete-post", "duplicate"])
def test_role_matrix_for_delete_and_duplicate(client, request, environment, persona, allowed, action):
    config = _config(environment)
    client.force_login(request.getfixturevalue(persona))

    if action == "delete-get":
        response = client.get(_url("scope_config_delete", config))
    elif action == "delete-post":
        response = client.post(_url("scope_config_delete", config))
    else:
        response = client.post(_url("scope_config_duplicate", config))

    if allowed:
        assert response.status_code == allowed
        assert ScopeConfig.objects.filter(environment=environment).count() == 1
    else:
        assert response.status_code == (200 if action == "delete-get" else 302)
        expected = {"delete-get": 1, "delete-post": 0, "duplicate": 2}[action]
        assert ScopeConfig.objects.filter(environment=environment).count() == expected


@pytest.mark.django_db
def test_viewers_see_neither_delete_nor_duplicate(client, viewer, environment):
    config = _config(environment)
    client.force_login(viewer)

    body = client.get(_url("scope_config", config)).content.decode()

    assert _url("scope_config_delete", config) not in body and _url("scope_config_duplicate", config) not in body


@pytest.mark.django_db
def test_a_reconnect_link_of_a_follower_asks_for_the_defaults_permissions(environment):
    default = _config(environment, "Default", is_default=True)
    follower = factories.IntegrationFactory(environment=environment, scope_config=None)
    link = factories.ConnectionLinkFactory(integration=follower, kind=LinkKind.RECONNECT)

    assert links.target_scope(link) == default
