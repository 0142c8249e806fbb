"""Scope config rules that need the links: what uses a scope config, and deleting one.

`integrations.scopes` knows the integrations that use a scope config; this module adds the links
that would still move an integration onto it, so the dashboard asks one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from integrations import audit
from integrations.models import Integration, ScopeConfig
from integrations.scopes import ScopeConfigInUse, followers_of_default, integrations_using
from integrations.scopes import delete_scope_config as delete_unused_scope_config

from .models import ConnectionLink


def pending_links_to(config: ScopeConfig) -> int:
    """How many links targeting `config` can still be completed (not completed, revoked or expired;
    opened or not)."""
    return ConnectionLink.objects.usable().filter(scope_config=config).count()


@dataclass(frozen=True)
class ScopeConfigUsage:
    integrations: list[Integration]  # have it as their own scope config
    pending_links: int  # would move an integration onto it when completed
    default_followers: int  # read with it only because it is their category's default

    @property
    def in_use(self) -> bool:
        return bool(self.integrations or self.pending_links)


def usage(config: ScopeConfig) -> ScopeConfigUsage:
    return ScopeConfigUsage(integrations_using(config), pending_links_to(config), followers_of_default(config))


def delete_scope_config(config: ScopeConfig, actor: audit.Actor) -> None:
    """Delete `config`, audited, unless it is in use: raises ScopeConfigInUse while an integration
    has it as its own scope config or a pending link targets it. Integrations that only follow it as
    their category's default do not block it: after the deletion they sync nothing until another
    default is set."""
    with transaction.atomic():
        pending = pending_links_to(config)
        if pending:
            raise ScopeConfigInUse(integrations_using(config), pending)
        delete_unused_scope_config(config, actor)
