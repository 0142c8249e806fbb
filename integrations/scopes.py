"""Scope configs parsed through one typed structure.

Stored JSON (ScopeConfig.spec):
    {"hris_employees": {"availability": "ENABLED", "fields": {"salary": "OPTIONAL"}}}
A model or field missing from the spec is DISABLED.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, Q

from . import audit
from .models import Availability, Integration, ScopeConfig
from .providers import Category, providers_of_category
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

    @property
    def reads_a_model(self) -> bool:
        """At least one model is ENABLED or OPTIONAL: a spec without one makes a sync read nothing."""
        return any(m.is_read for m in self.models.values())

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


EMPTY_SCOPE_CONFIG = "Enable at least one model: a scope config that reads nothing syncs nothing."


class ScopeConfigEmpty(ValueError):
    """The spec enables (ENABLED or OPTIONAL) no model: an integration using it would sync nothing."""

    def __init__(self, message: str = EMPTY_SCOPE_CONFIG) -> None:
        super().__init__(message)


def reads_a_model(config: ScopeConfig) -> bool:
    """The config enables at least one model; one whose stored spec cannot be parsed enables none.

    Only such configs may be saved, and only they are offered (dashboard) or accepted (API,
    `connect_flow.links`) as the target of a link: configs saved before the rule may still enable
    nothing.
    """
    try:
        return ScopeSpec.parse(config.spec).reads_a_model
    except ValueError:
        return False


# --- Which scope config an integration reads with ---------------------------------------------


def default_scope_configs(environment_id: int) -> dict[str, ScopeConfig]:
    """The environment's default scope config per category (`is_default`), in one query."""
    return {c.category: c for c in ScopeConfig.objects.filter(environment_id=environment_id, is_default=True)}


def effective_scope_config(
    integration: Integration, defaults: Mapping[str, ScopeConfig] | None = None
) -> ScopeConfig | None:
    """The scope config a sync of `integration` reads with: its own, else its environment's default
    for its category, else None (it syncs nothing).

    The default is looked up when needed, never copied onto the integration: an integration
    connected without a scope config (create-link without `scope_config_id`) follows whatever the
    default is at each sync, so changing the default changes what its next sync reads. Pass
    `defaults` (`default_scope_configs`) to resolve many integrations of one environment without
    a query each.
    """
    if integration.scope_config_id:
        return integration.scope_config
    if defaults is None:
        defaults = default_scope_configs(integration.environment_id)
    return defaults.get(integration.category)


def effective_scope_config_ids(integrations: Iterable[Integration]) -> dict[str, str | None]:
    """{integration id: id of its effective scope config or None} for many integrations of any
    environments, in one query for the defaults (the scheduler's batches)."""
    rows = list(integrations)
    orphans = {(i.environment_id, i.category) for i in rows if not i.scope_config_id}
    defaults: dict[tuple[int, str], str] = {}
    if orphans:
        found = ScopeConfig.objects.filter(is_default=True, environment_id__in={env for env, _ in orphans}).values_list(
            "environment_id", "category", "pk"
        )
        defaults = {(env, category): pk for env, category, pk in found}
    return {i.pk: i.scope_config_id or defaults.get((i.environment_id, i.category)) for i in rows}


def reads_nothing_filter(environment_id: int) -> Q:
    """A filter for the environment's integrations that sync nothing: with no scope config of their
    own and no default for their category, or whose effective scope config enables no model.

    One query (the environment's scope configs, which are few); the filter itself is indexed
    columns only, so a list or a count stays one query whatever the number of integrations.
    """
    configs = list(
        ScopeConfig.objects.filter(environment_id=environment_id).only("pk", "category", "spec", "is_default")
    )
    empty = [c.pk for c in configs if not reads_a_model(c)]
    defaults = {c.category: c for c in configs if c.is_default}
    orphaned = [
        category.value
        for category in Category
        if category.value not in defaults or defaults[category.value].pk in empty
    ]
    return Q(scope_config_id__in=empty) | Q(scope_config__isnull=True, category__in=orphaned)


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

    The spec is parsed first (a bad availability raises ValueError, nothing written), then must
    enable at least one model (else ScopeConfigEmpty, nothing written); the category of an existing
    config never changes, since integrations of that category use it.
    """
    if not ScopeSpec.parse(spec).reads_a_model:
        raise ScopeConfigEmpty()
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


def everything_spec(category: str) -> dict[str, Any]:
    """A spec reading every model and field the tools of `category` offer."""
    spec: dict[str, Any] = {}
    for provider in providers_of_category(category):
        for data_model in provider.models:
            entry = spec.setdefault(data_model.name, {"availability": ENABLED, "fields": {}})
            entry["fields"].update({f: ENABLED for f in data_model.fields})
    return spec


def create_starter_defaults(environment_id: int, actor: audit.Actor) -> list[ScopeConfig]:
    """A new environment's default per category that has tools: "All HRIS data", reading
    everything, so a first connection syncs something before anyone writes a scope config.
    Operators narrow it, or pick another default, later."""
    made = []
    for category in Category:
        spec = everything_spec(category.value)
        if not spec or ScopeConfig.objects.filter(environment_id=environment_id, category=category.value).exists():
            continue
        config = save_scope_config(
            environment_id, actor, name=f"All {category.value} data", spec=spec, category=category.value
        )
        ScopeConfig.objects.filter(pk=config.pk).update(is_default=True)
        made.append(config)
    return made


# --- Duplicating and deleting ------------------------------------------------------------------

COPY_ATTEMPTS = 5  # a concurrent duplicate took the name: try the next one


def copy_name(name: str, taken: Iterable[str]) -> str:
    """ "<name> (copy)", else "(copy 2)", "(copy 3)"… — the first not in `taken` (case-insensitively),
    the original shortened if needed to stay within the 100 characters a name may have."""
    names = {t.lower() for t in taken}
    n = 1
    while True:
        suffix = " (copy)" if n == 1 else f" (copy {n})"
        candidate = name[: 100 - len(suffix)] + suffix
        if candidate.lower() not in names:
            return candidate
        n += 1


def duplicate_scope_config(source: ScopeConfig, actor: audit.Actor) -> ScopeConfig:
    """A new scope config named after `source` (`copy_name`) with its category and spec, never the
    default, audited as `scope_config.duplicated`. A source that enables no model (saved before the
    rule) raises ScopeConfigEmpty: its copy would sync nothing too."""
    if not reads_a_model(source):
        raise ScopeConfigEmpty()
    for _ in range(COPY_ATTEMPTS):
        taken = ScopeConfig.objects.filter(
            environment_id=source.environment_id, name__istartswith=source.name[:80]
        ).values_list("name", flat=True)
        name = copy_name(source.name, taken)
        try:
            with transaction.atomic():
                copy = ScopeConfig.objects.create(
                    environment_id=source.environment_id,
                    name=name,
                    category=source.category,
                    spec=source.spec,
                    is_default=False,
                )
                audit.record(
                    source.environment_id,
                    "scope_config.duplicated",
                    actor,
                    scope_config_id=copy.pk,
                    name=name,
                    source_id=source.pk,
                )
        except IntegrityError:  # a concurrent duplicate took the name
            continue
        return copy
    raise ScopeConfigNameTaken(name)


class ScopeConfigInUse(Exception):
    """The scope config is still referenced: `integrations` have it as their own scope config,
    `pending_links` links that can still be completed would move an integration onto it."""

    def __init__(self, integrations: list[Integration], pending_links: int = 0) -> None:
        super().__init__(f"used by {len(integrations)} integrations and {pending_links} pending links")
        self.integrations = integrations
        self.pending_links = pending_links


def integrations_using(config: ScopeConfig) -> list[Integration]:
    """The integrations that have `config` as their own scope config, by organization name (not
    those that only follow it as their category's default)."""
    return list(
        Integration.objects.filter(scope_config=config)
        .defer("credentials_encrypted")
        .order_by("end_user_organization_name", "id")
    )


def followers_of_default(config: ScopeConfig) -> int:
    """How many integrations read with `config` only because it is their category's default
    (0 when it is not the default): deleting it leaves them syncing nothing."""
    if not config.is_default:
        return 0
    return Integration.objects.filter(
        environment_id=config.environment_id, category=config.category, scope_config__isnull=True
    ).count()


def delete_scope_config(config: ScopeConfig, actor: audit.Actor) -> None:
    """Delete `config` if no integration has it as its own scope config (else ScopeConfigInUse),
    audited as `scope_config.deleted`.

    A default config may be deleted: its category then has no default, and integrations without a
    scope config of their own sync nothing until another default is set. Links that target it are
    not checked here (this app knows no links): callers go through
    `connect_flow.scope_configs.delete_scope_config`, which refuses while a pending link targets it.
    Syncs keep their rows (their scope config becomes empty).
    """
    with transaction.atomic():
        locked = ScopeConfig.objects.select_for_update().filter(pk=config.pk).first()
        if locked is None:  # deleted concurrently: nothing left to do
            return
        users = integrations_using(locked)
        if users:
            raise ScopeConfigInUse(users)
        try:
            with transaction.atomic():
                locked.delete()
        except ProtectedError:  # an integration was moved onto it meanwhile
            raise ScopeConfigInUse(integrations_using(locked)) from None
        audit.record(
            locked.environment_id,
            "scope_config.deleted",
            actor,
            scope_config_id=config.pk,
            name=locked.name,
            category=locked.category,
            was_default=locked.is_default,
        )
