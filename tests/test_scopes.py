"""Comparing scope configs: the one function the relink preview and the hosted page both use."""

from __future__ import annotations

from integrations.providers import get_provider
from integrations.scopes import Permission, ScopeSpec, permissions_needed

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
