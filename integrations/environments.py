"""Environments: creating one, and the settings its owners change.

Every writer of an environment's settings comes here (the dashboard's settings page, the
`create_environment` command, Django admin), so the bounds and the audit trail are the same
whichever way a change arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from . import audit, scopes
from .lib.origins import parse_origin
from .models import Environment, Integration, Membership, Role, ScopeConfig, User

# The sync interval's bounds: more often than every 15 minutes hammers the customers' HR systems
# (and their rate limits) for little gain; less often than daily leaves data a day stale.
SYNC_INTERVAL_MIN = timedelta(minutes=15)
SYNC_INTERVAL_MAX = timedelta(hours=24)
MAX_ORIGINS = 20
# The auth-failure window (integrations.health): how long credentials may be rejected before
# syncs pause. Under a day pauses on one bad night; over two weeks leaves stale data too long.
AUTH_WINDOW_MIN = timedelta(hours=24)
AUTH_WINDOW_MAX = timedelta(days=14)
MAX_REMINDERS = 10
REMINDER_DAY_MAX = 90


class SettingsError(ValueError):
    """A setting outside its bounds; the message says which and why, for the operator."""


def check_sync_interval(interval: timedelta) -> timedelta:
    if not SYNC_INTERVAL_MIN <= interval <= SYNC_INTERVAL_MAX:
        raise SettingsError("Choose a sync interval between 15 minutes and 24 hours.")
    return interval


def check_auth_failure_window(window: timedelta) -> timedelta:
    if not AUTH_WINDOW_MIN <= window <= AUTH_WINDOW_MAX:
        raise SettingsError("Choose an authentication-failure window between 24 hours and 14 days.")
    return window


def parse_reminder_days(text: str) -> list[int]:
    """Reminder days typed as "1, 3, 7, 14": whole days after syncs paused, sorted, unique."""
    days: set[int] = set()
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= REMINDER_DAY_MAX:
            raise SettingsError(f"Reminder days are whole numbers from 1 to {REMINDER_DAY_MAX}, e.g. 1, 3, 7, 14.")
        days.add(int(part))
    if len(days) > MAX_REMINDERS:
        raise SettingsError(f"At most {MAX_REMINDERS} reminders.")
    return sorted(days)


def parse_origin_lines(text: str) -> list[str]:
    """Origins typed one per line (blank lines ignored), normalized and without duplicates.
    SettingsError names every line that is not an origin."""
    origins: list[str] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            origin = parse_origin(line)
        except ValueError as exc:
            problems.append(f"line {number} ({line.strip()[:60]!r}): {exc}")
            continue
        if origin not in origins:
            origins.append(origin)
    if problems:
        raise SettingsError("Not an origin — " + "; ".join(problems) + ".")
    if len(origins) > MAX_ORIGINS:
        raise SettingsError(f"At most {MAX_ORIGINS} origins; remove some.")
    return origins


def unique_slug(name: str, slug: str = "") -> str:
    """`slug` (or one made from `name`), with -2, -3… appended while another environment has it."""
    base = slugify(slug or name)[:45].strip("-")
    if not base:
        raise SettingsError("The name must contain letters or digits.")
    candidate, n = base, 1
    while Environment.objects.filter(slug=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def create_environment(name: str, actor: audit.Actor, *, slug: str = "", owner: User | None = None) -> Environment:
    """A new environment named `name` (slug from `slug` or the name, made unique), with `owner`
    as its owner and a default scope config per category that has tools (so a first connection
    syncs something), audited as `environment.created`."""
    name = name.strip()
    if not name:
        raise SettingsError("Give the environment a name.")
    for _ in range(5):  # another request may take the slug between the check and the insert
        try:
            with transaction.atomic():
                environment = Environment.objects.create(name=name, slug=unique_slug(name, slug))
                if owner is not None:
                    Membership.objects.create(environment=environment, user=owner, role=Role.OWNER)
                scopes.create_starter_defaults(environment.pk, actor)
                audit.record(environment.pk, "environment.created", actor, name=name, slug=environment.slug)
                return environment
        except IntegrityError:
            continue
    raise SettingsError("Could not find a free URL name for this environment; choose another.")


# The policy fields an owner sets besides name, interval, origins and defaults, as stored on the row.
POLICY_FIELDS = (
    "auth_failure_window",
    "transient_errors_count",
    "notify_customers",
    "notify_sender_name",
    "notify_reply_to",
    "notify_language",
    "notify_first_after",
    "notify_reminder_days",
    "volume_drop_percent",
    "volume_drop_min_records",
)


@dataclass(frozen=True)
class EnvironmentSettings:
    name: str
    sync_interval: timedelta
    allowed_origins: list[str]
    # category → the default scope config (None: the category has no default)
    defaults: Mapping[str, ScopeConfig | None]
    # POLICY_FIELDS → value; a field left out keeps its current value
    policy: Mapping[str, Any] = field(default_factory=dict)


def current_settings(environment: Environment) -> EnvironmentSettings:
    return EnvironmentSettings(
        name=environment.name,
        sync_interval=environment.sync_interval,
        allowed_origins=list(environment.allowed_origins or []),
        defaults=scopes.default_scope_configs(environment.pk),
        policy={name: getattr(environment, name) for name in POLICY_FIELDS},
    )


def check_policy(policy: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """`policy` merged over `current`, checked: SettingsError names what is out of bounds."""
    merged = {**current, **policy}
    unknown = set(policy) - set(POLICY_FIELDS)
    if unknown:
        raise SettingsError(f"Unknown settings: {', '.join(sorted(unknown))}.")
    window = check_auth_failure_window(merged["auth_failure_window"])
    first = merged["notify_first_after"]
    if not timedelta(hours=1) <= first < window:
        raise SettingsError(
            f"Send the first email between 1 hour and the failure window ({hours(window)} hours) after "
            "authentication starts failing, so the customer hears of it before syncs pause."
        )
    if not 10 <= merged["volume_drop_percent"] <= 95:
        raise SettingsError("Choose a volume drop between 10 and 95 percent.")
    if not 1 <= merged["volume_drop_min_records"] <= 1_000_000:
        raise SettingsError("The minimum number of records for a volume drop is between 1 and 1,000,000.")
    merged["notify_reminder_days"] = parse_reminder_days(",".join(str(d) for d in merged["notify_reminder_days"]))
    return merged


def hours(interval: timedelta) -> int:
    """A duration in whole hours (how the settings page and the audit trail show windows)."""
    return int(interval.total_seconds() // 3600)


def update_settings(environment: Environment, new: EnvironmentSettings, actor: audit.Actor) -> list[str]:
    """Apply `new` to `environment`; returns the names of the settings that changed (audited as one
    `environment.settings_changed` event, before and after). SettingsError if a value is out of
    bounds or a default scope config is not the environment's, of its category, or reads nothing.

    Steps, in one transaction with the environment's row locked (two owners saving at once apply
    one after the other):
    1. name, sync interval and allowed origins on the row;
    2. a shorter interval pulls forward next syncs that are further away than the new interval,
       so the change takes effect within one interval instead of after the old one;
    3. default scope configs: the old default of a changed category is unset before the new one
       is set (at most one default per category is a database constraint).
    """
    name = new.name.strip()
    if not name:
        raise SettingsError("Give the environment a name.")
    check_sync_interval(new.sync_interval)
    origins = parse_origin_lines("\n".join(new.allowed_origins))
    policy = check_policy(new.policy, current_settings(environment).policy)
    for category, config in new.defaults.items():
        if config is None:
            continue
        if config.environment_id != environment.pk or config.category != category:
            raise SettingsError(f"{config.name} cannot be the default for {category}.")
        if not scopes.reads_a_model(config):
            raise SettingsError(f"{config.name} enables no model: {scopes.EMPTY_SCOPE_CONFIG}")

    with transaction.atomic():
        locked = Environment.objects.select_for_update().get(pk=environment.pk)
        before = current_settings(locked)
        changes: dict[str, tuple[object, object]] = {}
        if before.name != name:
            changes["name"] = (before.name, name)
        if before.sync_interval != new.sync_interval:
            changes["sync_interval"] = (_minutes(before.sync_interval), _minutes(new.sync_interval))
        if before.allowed_origins != origins:
            changes["allowed_origins"] = (before.allowed_origins, origins)
        for key, value in policy.items():
            if before.policy[key] != value:
                changes[key] = (_plain(before.policy[key]), _plain(value))
            setattr(locked, key, value)
        locked.name, locked.sync_interval, locked.allowed_origins = name, new.sync_interval, origins
        locked.save(update_fields=["name", "sync_interval", "allowed_origins", *POLICY_FIELDS])
        if new.sync_interval < before.sync_interval:
            latest = timezone.now() + new.sync_interval
            Integration.objects.filter(environment=locked, next_sync_at__gt=latest).update(next_sync_at=latest)
        for category, config in new.defaults.items():
            old = before.defaults.get(category)
            if (old.pk if old else None) == (config.pk if config else None):
                continue
            ScopeConfig.objects.filter(environment=locked, category=category, is_default=True).update(is_default=False)
            if config is not None:
                ScopeConfig.objects.filter(pk=config.pk).update(is_default=True)
            changes[f"default_scope_config.{category}"] = (old.pk if old else None, config.pk if config else None)
        if changes:
            audit.record(
                locked.pk,
                "environment.settings_changed",
                actor,
                changes={key: {"from": old, "to": value} for key, (old, value) in changes.items()},
            )
    environment.refresh_from_db()
    return list(changes)


def _minutes(interval: timedelta) -> int:
    return int(interval.total_seconds() // 60)


def _plain(value: Any) -> Any:
    """A setting's value for the audit trail's JSON: durations in hours."""
    return hours(value) if isinstance(value, timedelta) else value
