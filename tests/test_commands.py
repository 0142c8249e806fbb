"""Management commands an operator runs on a fresh deployment."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from integrations.models import Environment, Membership, Role

from . import factories


def _run(*args: str) -> list[str]:
    out = StringIO()
    call_command("create_environment", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.mark.django_db
def test_create_environment_makes_the_user_its_owner_and_prints_the_slug():
    user = factories.UserFactory(email="ops@acme.test")

    lines = _run("--name", "Acme production", "--owner", "OPS@acme.test")

    assert lines[-1] == "acme-production"
    env = Environment.objects.get(slug="acme-production")
    assert env.name == "Acme production"
    assert Membership.objects.get(environment=env, user=user).role == Role.OWNER


@pytest.mark.django_db
def test_a_new_environment_gets_a_default_scope_config_that_reads_everything():
    from integrations.scopes import ScopeSpec, effective_scope_config

    _run("--name", "Acme", "--slug", "acme")
    env = Environment.objects.get(slug="acme")
    default = env.scope_configs.get(is_default=True)
    assert (default.name, default.category) == ("All HRIS data", "HRIS")
    spec = ScopeSpec.parse(default.spec)
    assert spec.models["hris_employees"].is_read and spec.models["hris_employees"].fields["first_name"] == "ENABLED"
    integration = factories.IntegrationFactory(environment=env, scope_config=None)
    assert effective_scope_config(integration) == default  # a first connection syncs something
    _run("--name", "Acme", "--slug", "acme")  # found again: no second default
    assert env.scope_configs.count() == 1


@pytest.mark.django_db
def test_create_environment_is_idempotent():
    _run("--name", "Acme", "--slug", "acme")
    assert _run("--name", "Other name", "--slug", "acme")[-1] == "acme"
    assert list(Environment.objects.values_list("slug", "name")) == [("acme", "Acme")]


@pytest.mark.django_db
def test_create_environment_refuses_an_unknown_owner():
    with pytest.raises(CommandError, match="No user"):
        _run("--name", "Acme", "--owner", "nobody@acme.test")
    assert not Environment.objects.exists()
