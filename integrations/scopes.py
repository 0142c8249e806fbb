"""Scope configs parsed through one typed structure.

Stored JSON (ScopeConfig.spec):
    {"hris_employees": {"availability": "ENABLED", "fields": {"salary": "OPTIONAL"}}}
A model or field missing from the spec is DISABLED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from . import audit
from .models import Availability, ScopeConfig
from .providers.base import Provider

ENABLED, OPTIONAL, DISABLED = Availability.ENABLED, Availability.OPTIONAL, Availability.DISABLED
_AVAILABILITIES = set(Availability.values)


@dataclass(frozen=True)
class ModelScope:
    name: str
    availability: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def is_read(self) -> bool:
        return self.availability != DISABLED


def _reads(availability: str, opted_out: bool) -> bool:
    return availability == ENABLED or (availability == OPTIONAL and not opted_out)


@dataclass(frozen=True)
class FieldCoverage:
    name: str
    availability: str
    opted_out: bool  # OPTIONAL and the customer declined it

    @property
    def read(self) -> bool:
        return _reads(self.availability, self.opted_out)


@dataclass(frozen=True)
class ModelCoverage:
    """One of the tool's models under a scope config and the customer's opt-outs."""

    name: str
    label: str
    availability: str
    opted_out: bool
    fields: list[FieldCoverage]

    @property
    def read(self) -> bool:
        return _reads(self.availability, self.opted_out)


@dataclass(frozen=True)
class ScopeSpec:
    models: dict[str, ModelScope]

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> ScopeSpec:
        models: dict[str, ModelScope] = {}
        for name, value in (raw or {}).items():
            value = value or {}
            availability = value.get("availability", DISABLED)
            if availability not in _AVAILABILITIES:
                raise ValueError(f"{name}: availability must be one of {sorted(_AVAILABILITIES)}")
            fields = {}
            for field_name, field_availability in (value.get("fields") or {}).items():
                if field_availability not in _AVAILABILITIES:
                    raise ValueError(f"{name}.{field_name}: availability must be one of {sorted(_AVAILABILITIES)}")
                fields[field_name] = field_availability
            models[name] = ModelScope(name, availability, fields)
        return cls(models)

    def coverage(self, provider: Provider, opted_out: list[str] | tuple[str, ...] = ()) -> list[ModelCoverage]:
        """Every model and field the tool offers, in the tool's order, with its availability,
        whether the customer opted out ("hris_employees" or "hris_employees.salary" in
        `opted_out`, OPTIONAL ones only) and so whether a sync reads it."""
        opted = set(opted_out)
        models = []
        for data_model in provider.models:
            scope = self.models.get(data_model.name) or ModelScope(data_model.name, DISABLED)
            fields = []
            for f in data_model.fields:
                availability = scope.fields.get(f, DISABLED)
                fields.append(
                    FieldCoverage(f, availability, availability == OPTIONAL and f"{data_model.name}.{f}" in opted)
                )
            models.append(
                ModelCoverage(
                    data_model.name,
                    data_model.label,
                    scope.availability,
                    scope.availability == OPTIONAL and data_model.name in opted,
                    fields,
                )
            )
        return models

    def fetch_plan(
        self, provider: Provider, opted_out: list[str] | tuple[str, ...] = ()
    ) -> list[tuple[str, list[str]]]:
        """The models a sync reads for this tool, each with its fields.

        ENABLED models and fields always; OPTIONAL ones unless the customer opted out.
        """
        return [(m.name, [f.name for f in m.fields if f.read]) for m in self.coverage(provider, opted_out) if m.read]

    def required_permissions(self, provider: Provider) -> set[str]:
        """Permissions the credentials must grant for everything this scope may read."""
        needed: set[str] = set()
        for data_model in provider.models:
            scope = self.models.get(data_model.name)
            if scope is None or not scope.is_read:
                continue
            needed.add(data_model.permission)
            for f, permission in data_model.fields.items():
                if scope.fields.get(f, DISABLED) != DISABLED:
                    needed.add(permission)
        return needed


# --- Comparing two scope configs ----------------------------------------------------------------
# Used by the dashboard's relink preview and by the hosted page's permission list alike.


@dataclass(frozen=True)
class Permission:
    name: str
    new: bool  # not needed by the current scope config


@dataclass(frozen=True)
class AvailabilityChange:
    path: str  # "hris_employees" or "hris_employees.salary"
    before: str  # ENABLED, OPTIONAL or DISABLED
    after: str
    offered: bool  # the integration's tool reads this model or field


@dataclass(frozen=True)
class ScopeDiff:
    current: ScopeConfig | None
    target: ScopeConfig
    required: list[Permission]  # everything the target needs for the tool, new ones marked
    removed: list[str]  # needed now, no longer needed with the target
    changes: list[AvailabilityChange]

    @property
    def added(self) -> list[str]:
        return [p.name for p in self.required if p.new]

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.changes)


def scope_diff(current: ScopeConfig | None, target: ScopeConfig, provider: Provider) -> ScopeDiff:
    """What moving an integration of `provider` from `current` to `target` changes."""
    before = ScopeSpec.parse(current.spec if current else None)
    after = ScopeSpec.parse(target.spec)
    had = before.required_permissions(provider)
    needs = after.required_permissions(provider)
    offered = _tool_paths(provider)
    changes = []
    for path in dict.fromkeys([*offered, *_spec_paths(before), *_spec_paths(after)]):
        old, new = _availability(before, path), _availability(after, path)
        if old != new:
            changes.append(AvailabilityChange(path, old, new, path in offered))
    return ScopeDiff(
        current=current,
        target=target,
        required=permissions_needed(after, provider, before=before),
        removed=sorted(had - needs),
        changes=changes,
    )


def _tool_paths(provider: Provider) -> list[str]:
    """The tool's models and fields, in the tool's own order (each model before its fields)."""
    return [path for m in provider.models for path in (m.name, *(f"{m.name}.{f}" for f in m.fields))]


def _spec_paths(spec: ScopeSpec) -> list[str]:
    return [path for m in spec.models.values() for path in (m.name, *(f"{m.name}.{f}" for f in m.fields))]


def _availability(spec: ScopeSpec, path: str) -> str:
    model, _, field_name = path.partition(".")
    scope = spec.models.get(model)
    if scope is None:
        return DISABLED
    return scope.fields.get(field_name, DISABLED) if field_name else scope.availability


def permissions_needed(after: ScopeSpec, provider: Provider, *, before: ScopeSpec | None = None) -> list[Permission]:
    """What `after` needs from `provider`'s credentials, by name; with `before` (a reconnect), each
    marked `new` if `before` did not need it."""
    needs = after.required_permissions(provider)
    had = needs if before is None else before.required_permissions(provider)
    return [Permission(name, name not in had) for name in sorted(needs)]


def find_scope_config(environment_id: int, scope_config_id: str) -> ScopeConfig | None:
    """The environment's scope config with exactly this id, else None: another environment's id
    reads as unknown, so callers cannot tell it exists."""
    if not scope_config_id or len(scope_config_id) > 24:
        return None
    return ScopeConfig.objects.filter(environment_id=environment_id, pk=scope_config_id).first()


class ScopeConfigNameTaken(ValueError):
    """Another scope config of the environment already has this name (names are unique, case-insensitively)."""


def save_scope_config(
    environment_id: int,
    actor: audit.Actor,
    *,
    name: str,
    spec: dict[str, Any],
    category: str = "",
    instance: ScopeConfig | None = None,
) -> ScopeConfig:
    """Create a scope config (`category` required) or rename/re-scope `instance`, audited.

    The spec is parsed first (a bad availability raises ValueError, nothing written); the category
    of an existing config never changes, since integrations of that category use it.
    """
    ScopeSpec.parse(spec)
    others = ScopeConfig.objects.filter(environment_id=environment_id, name__iexact=name)
    if instance is not None:
        others = others.exclude(pk=instance.pk)
    if others.exists():
        raise ScopeConfigNameTaken(name)
    try:
        with transaction.atomic():
            if instance is None:
                instance = ScopeConfig.objects.create(
                    environment_id=environment_id, name=name, category=category, spec=spec
                )
                action = "scope_config.created"
            else:
                instance.name, instance.spec = name, spec
                instance.save(update_fields=["name", "spec", "updated_at"])
                action = "scope_config.updated"
            audit.record(environment_id, action, actor, scope_config_id=instance.pk, name=name)
    except IntegrityError:  # a concurrent save took the name
        raise ScopeConfigNameTaken(name) from None
    return instance
