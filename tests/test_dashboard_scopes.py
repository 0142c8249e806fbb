"""Scope configs in the dashboard: list with usage counts, create and edit with the models × fields picker."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.scopes import category_models
from integrations.models import ScopeConfig
from integrations.scopes import ScopeSpec

from . import factories

pytestmark = pytest.mark.django_db


def _list_url(env="acme") -> str:
    return reverse("dashboard:scope_configs", kwargs={"env": env})


def _new_url(env="acme") -> str:
    return reverse("dashboard:scope_config_new", kwargs={"env": env})


def _edit_url(config, env="acme") -> str:
    return reverse("dashboard:scope_config", kwargs={"env": env, "scope_config_id": config.pk})


def _picker_post(name: str, category: str = "HRIS", **overrides: str) -> dict:
    """Every field of the category DISABLED and every model but the first (a scope config must
    read something), then `overrides` (input name -> value)."""
    data = {"name": name, "category": category}
    for i, (model, _label, fields) in enumerate(category_models(category)):
        data[f"model__{model}"] = "ENABLED" if i == 0 else "DISABLED"
        for f in fields:
            data[f"field__{model}__{f}"] = "DISABLED"
    data.update(overrides)
    return data


def test_the_picker_offers_the_union_of_the_categorys_tools():
    models = {name: fields for name, _label, fields in category_models("HRIS")}
    assert set(models) == {"hris_employees", "hris_absences"}
    assert {"first_name", "salary"} <= set(models["hris_employees"])
    assert category_models("NOPE") == []


# --- The list -------------------------------------------------------------------------------


def _usage(body: str) -> dict[str, int]:
    return {
        name: int(count)
        for name, count in re.findall(
            r'<a href="[^"]+">([^<]+)</a></td>\s*<td>\w+</td>\s*<td class="usage-count">(\d+)</td>', body
        )
    }


def test_the_list_shows_how_many_integrations_use_each(client, viewer, environment, other_environment):
    busy = factories.ScopeConfigFactory(environment=environment, name="Busy")
    factories.ScopeConfigFactory(environment=environment, name="Idle")
    for _ in range(3):
        factories.IntegrationFactory(environment=environment, scope_config=busy)
    factories.ScopeConfigFactory(environment=other_environment, name="Foreign")
    client.force_login(viewer)

    response = client.get(_list_url())

    assert response.status_code == 200
    body = response.content.decode()
    assert _usage(body) == {"Busy": 3, "Idle": 0}
    assert "Foreign" not in body
    assert _new_url() not in body  # a viewer gets no "New" link


@pytest.mark.parametrize("persona", ["owner", "editor"])
def test_editors_get_the_new_link(client, request, persona, environment):
    client.force_login(request.getfixturevalue(persona))
    assert _new_url() in client.get(_list_url()).content.decode()


def test_the_list_runs_a_constant_number_of_queries(client, viewer, environment):
    client.force_login(viewer)

    def make(n: int) -> None:
        for _ in range(n):
            config = factories.ScopeConfigFactory(environment=environment)
            factories.IntegrationFactory(environment=environment, scope_config=config)
            factories.IntegrationFactory(environment=environment, scope_config=config)

    make(3)
    with CaptureQueriesContext(connection) as with_3:
        assert len(_usage(client.get(_list_url()).content.decode())) == 3
    make(12)
    with CaptureQueriesContext(connection) as with_15:
        assert len(_usage(client.get(_list_url()).content.decode())) == 15

    assert len(with_15) == len(with_3), [q["sql"] for q in with_15.captured_queries]


# --- Create -----------------------------------------------------------------------------------


def test_creating_stores_the_spec_in_the_shape_scopespec_reads(client, editor, environment):
    client.force_login(editor)
    data = _picker_post(
        "Payroll",
        model__hris_employees="ENABLED",
        field__hris_employees__first_name="ENABLED",
        field__hris_employees__salary="OPTIONAL",
        model__hris_absences="OPTIONAL",
        field__hris_absences__start_date="ENABLED",
    )

    response = client.post(_new_url(), data)

    config = ScopeConfig.objects.get(environment=environment, name="Payroll")
    assert response.status_code == 302
    assert response["Location"] == _edit_url(config)
    assert config.category == "HRIS"
    assert config.spec["hris_employees"] == {
        "availability": "ENABLED",
        "fields": {
            "first_name": "ENABLED",
            "last_name": "DISABLED",
            "email": "DISABLED",
            "department": "DISABLED",
            "salary": "OPTIONAL",
        },
    }
    assert config.spec["hris_absences"]["availability"] == "OPTIONAL"
    spec = ScopeSpec.parse(config.spec)
    assert spec.models["hris_employees"].availability == "ENABLED"
    assert spec.models["hris_employees"].fields["salary"] == "OPTIONAL"
    assert spec.models["hris_absences"].fields["start_date"] == "ENABLED"
    # What a sync would read from a real tool follows from it.
    from integrations.providers import get_provider

    plan = dict(spec.fetch_plan(get_provider("sandbox")))
    assert plan["hris_employees"] == ["first_name", "salary"]

    followed = client.get(response["Location"])
    assert "Scope config Payroll created." in followed.content.decode()


def test_the_edit_page_round_trips_the_stored_spec(client, editor, environment):
    config = factories.ScopeConfigFactory(environment=environment, name="Basic")
    client.force_login(editor)

    body = client.get(_edit_url(config)).content.decode()

    assert re.search(r'name="model__hris_employees" value="ENABLED" checked', body)
    assert re.search(r'name="field__hris_employees__salary" value="OPTIONAL"[^>]*checked', body)
    assert re.search(r'name="field__hris_employees__department" value="DISABLED"[^>]*checked', body)
    assert re.search(r'name="model__hris_absences" value="DISABLED" checked', body)


def test_saving_an_unchanged_form_keeps_the_meaning_of_the_spec(client, editor, environment):
    config = factories.ScopeConfigFactory(environment=environment, name="Basic")
    before = ScopeSpec.parse(config.spec)
    client.force_login(editor)
    body = client.get(_edit_url(config)).content.decode()
    data = {"name": "Basic"}
    for name, value in re.findall(r'name="((?:model|field)__[\w_]+)" value="(\w+)"[^>]*checked', body):
        data[name] = value

    assert client.post(_edit_url(config), data).status_code == 302

    config.refresh_from_db()
    after = ScopeSpec.parse(config.spec)
    for name, model in after.models.items():
        old = before.models.get(name)
        assert model.availability == (old.availability if old else "DISABLED")
        for f, value in model.fields.items():
            assert value == (old.fields.get(f, "DISABLED") if old else "DISABLED")


def test_a_duplicate_name_rerenders_with_an_error_and_keeps_the_input(client, editor, environment):
    factories.ScopeConfigFactory(environment=environment, name="Payroll")
    client.force_login(editor)
    data = _picker_post("payroll", field__hris_employees__salary="OPTIONAL", model__hris_employees="ENABLED")

    response = client.post(_new_url(), data)

    assert response.status_code == 200
    body = response.content.decode()
    assert "already has this name" in body
    assert 'value="payroll"' in body
    assert re.search(r'name="field__hris_employees__salary" value="OPTIONAL"[^>]*checked', body)
    assert re.search(r'name="model__hris_employees" value="ENABLED" checked', body)
    assert ScopeConfig.objects.filter(environment=environment).count() == 1


def test_the_same_name_in_another_environment_is_fine(client, editor, environment, other_environment):
    factories.ScopeConfigFactory(environment=other_environment, name="Payroll")
    client.force_login(editor)

    assert client.post(_new_url(), _picker_post("Payroll")).status_code == 302
    assert ScopeConfig.objects.filter(environment=environment, name="Payroll").exists()


def test_a_name_is_required(client, editor, environment):
    client.force_login(editor)

    response = client.post(_new_url(), _picker_post("  "))

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not ScopeConfig.objects.filter(environment=environment).exists()


def test_an_invalid_availability_is_refused(client, editor, environment):
    client.force_login(editor)

    response = client.post(_new_url(), _picker_post("X", model__hris_employees="ALWAYS"))

    assert response.status_code == 200
    assert "choose Enabled, Optional or Disabled" in response.content.decode()
    assert not ScopeConfig.objects.filter(environment=environment).exists()


def test_renaming_onto_itself_is_not_a_duplicate(client, editor, environment):
    config = factories.ScopeConfigFactory(environment=environment, name="Basic")
    client.force_login(editor)

    assert client.post(_edit_url(config), _picker_post("Basic")).status_code == 302


def test_editing_keeps_models_no_tool_offers(client, editor, environment):
    config = factories.ScopeConfigFactory(
        environment=environment, name="Basic", spec={"hris_legacy": {"availability": "ENABLED", "fields": {}}}
    )
    client.force_login(editor)

    client.post(_edit_url(config), _picker_post("Basic", model__hris_employees="ENABLED"))

    config.refresh_from_db()
    assert config.spec["hris_legacy"] == {"availability": "ENABLED", "fields": {}}
    assert config.spec["hris_employees"]["availability"] == "ENABLED"


def test_the_edit_page_lists_the_integrations_it_affects(client, editor, environment):
    config = factories.ScopeConfigFactory(environment=environment, name="Basic")
    used = factories.IntegrationFactory(
        environment=environment, scope_config=config, end_user_organization_name="Initrode"
    )
    factories.IntegrationFactory(environment=environment, end_user_organization_name="Umbrella")
    client.force_login(editor)

    body = client.get(_edit_url(config)).content.decode()

    assert "Initrode" in body
    assert reverse("dashboard:integration", kwargs={"env": "acme", "integration_id": used.pk}) in body
    assert "Umbrella" not in body
    assert "1 integration reads with this scope config" in body


def test_the_category_choice_renders_its_models(client, editor, environment):
    client.force_login(editor)

    hris = client.get(_new_url() + "?category=HRIS").content.decode()
    ats = client.get(_new_url() + "?category=ATS").content.decode()

    assert "model__hris_employees" in hris
    assert "model__hris_employees" not in ats
    assert 'hx-select="#picker"' in hris


# --- Roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "status"),
    [("owner", 302), ("editor", 302), ("viewer", 403), ("outsider", 404), (None, 302)],
)
def test_who_may_create(client, request, environment, persona, status):
    if persona:
        client.force_login(request.getfixturevalue(persona))

    response = client.post(_new_url(), _picker_post("New one"))

    assert response.status_code == status
    created = ScopeConfig.objects.filter(environment=environment, name="New one").exists()
    assert created == (persona in ("owner", "editor"))
    if persona is None:
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("persona", "status"),
    [("owner", 302), ("editor", 302), ("viewer", 403), ("outsider", 404), (None, 302)],
)
def test_who_may_edit(client, request, environment, persona, status):
    config = factories.ScopeConfigFactory(environment=environment, name="Basic")
    if persona:
        client.force_login(request.getfixturevalue(persona))

    response = client.post(_edit_url(config), _picker_post("Renamed"))

    assert response.status_code == status
    config.refresh_from_db()
    assert (config.name == "Renamed") == (persona in ("owner", "editor"))


@pytest.mark.parametrize(("persona", "status"), [("viewer", 403), ("outsider", 404)])
def test_the_new_page_needs_the_editor_role(client, request, environment, persona, status):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(_new_url()).status_code == status


def test_a_viewer_sees_the_config_read_only(client, viewer, environment):
    config = factories.ScopeConfigFactory(environment=environment, name="Basic")
    client.force_login(viewer)

    response = client.get(_edit_url(config))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Read only" in body
    assert re.search(r'name="model__hris_employees" value="ENABLED" checked disabled', body)
    assert '<button type="submit" class="primary">' not in body


def test_another_environments_config_is_a_404(client, owner, other_environment):
    foreign = factories.ScopeConfigFactory(environment=other_environment, name="Foreign")
    client.force_login(owner)

    assert client.get(_edit_url(foreign)).status_code == 404
    assert client.post(_edit_url(foreign), _picker_post("Mine now")).status_code == 404
    foreign.refresh_from_db()
    assert foreign.name == "Foreign"
