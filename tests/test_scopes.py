"""Scope configs in the domain: comparing them (the relink preview and the hosted page) and saving them."""

from __future__ import annotations

import pytest

from integrations import audit
from integrations.models import AuditEvent, ScopeConfig
from integrations.providers import get_provider
from integrations.scopes import Permission, ScopeConfigNameTaken, ScopeSpec, permissions_needed, save_scope_config

BASIC = {"hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED"}}}
WITH_SALARY = {"hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED", "salary": "ENABLED"}}}


def test_a_reconnect_marks_only_the_permissions_the_current_config_did_not_need():
    sandbox = get_provider("sandbox")
    needed = permissions_needed(ScopeSpec.parse(WITH_SALARY), sandbox, before=ScopeSpec.parse(BASIC))
    assert needed == [Permission("compensation:read", True), Permission("employees:read", False)]


def test_a_first_connection_marks_nothing_new():
    sandbox = get_provider("sandbox")
    needed = permissions_needed(ScopeSpec.parse(WITH_SALARY), sandbox)
    assert needed and not [p for p in needed if p.new]


def test_moving_from_no_scope_config_marks_everything_new():
    sandbox = get_provider("sandbox")
    needed = permissions_needed(ScopeSpec.parse(BASIC), sandbox, before=ScopeSpec.parse(None))
    assert needed == [Permission("employees:read", True)]


@pytest.mark.django_db
def test_scope_config_writes_are_audited_and_names_stay_unique(environment, owner):
    actor = audit.Actor(user=owner)
    spec = {"hris_employees": {"availability": "ENABLED", "fields": {}}}
    created = save_scope_config(environment.pk, actor, name="Core", spec=spec, category="HRIS")
    save_scope_config(environment.pk, actor, name="Core v2", spec=spec, instance=created)
    actions = list(
        AuditEvent.objects.filter(environment=environment).order_by("pk").values_list("action", "actor_user", "details")
    )
    assert [(a, u, d["name"]) for a, u, d in actions] == [
        ("scope_config.created", owner.pk, "Core"),
        ("scope_config.updated", owner.pk, "Core v2"),
    ]
    with pytest.raises(ScopeConfigNameTaken):
        save_scope_config(environment.pk, actor, name="core V2", spec=spec, category="HRIS")
    with pytest.raises(ValueError):
        save_scope_config(environment.pk, actor, name="Bad", spec={"hris_employees": {"availability": "X"}})
    assert ScopeConfig.objects.filter(environment=environment).count() == 1
