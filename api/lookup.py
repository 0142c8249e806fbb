"""The API's one query per request: the bearer key, its environment and the integration it names.

Every authenticated /v1 request needs the key (with its environment) and most need one
integration of that environment. Both come from one SELECT — the key joined to its environment,
the integration and its scope config LEFT JOINed — so a read makes one database round trip before
its request log, where the ORM made two queries plus Django's connection health check
(`CONN_HEALTH_CHECKS`): this query is that check too (`_fetch`).

Written in SQL because the ORM's compilation of the same statement cost more than the query
itself (~0.4 ms per query, about a fifth of a request); the columns and the instances still come
from the models (`Model.from_db` with each field's database converters), so a new field needs no
change here. tests/test_api_round_trips.py compares what it loads with what the ORM loads.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import InterfaceError, OperationalError, connection, models

from config.text import has_unusable
from integrations.lib.tokens import hash_secret
from integrations.models import ApiKey, Environment, Integration, ScopeConfig

MAX_INTEGRATION_ID = 80  # ids are <tool>:<24 chars>; a longer one names nothing


class _Columns:
    """One model's columns in the SELECT, and how to rebuild an instance from them."""

    def __init__(self, model: type[models.Model], alias: str, leave_out: tuple[str, ...] = ()):
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if f.name not in leave_out]
        self.attnames = [f.attname for f in self.fields]
        self.sql = ", ".join(f"{alias}.{connection.ops.quote_name(str(f.column))}" for f in self.fields)
        self.converters = []
        for position, field in enumerate(self.fields):
            column = field.get_col(alias)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                self.converters.append((position, column, found))

    def load(self, row: tuple[Any, ...], start: int) -> models.Model | None:
        """The instance in `row[start:]`, None where a LEFT JOIN found nothing (its primary key is NULL)."""
        values = list(row[start : start + len(self.fields)])
        if values[0] is None:
            return None
        for position, column, converters in self.converters:
            for converter in converters:
                values[position] = converter(values[position], column, connection)
        # Fields left out are deferred, as with QuerySet.defer().
        return self.model.from_db(connection.alias, self.attnames, values)


@cache
def _statement() -> tuple[str, list[_Columns]]:
    qn = connection.ops.quote_name
    key = _Columns(ApiKey, "k")
    environment = _Columns(Environment, "e")
    # The credentials are never needed by an API read; a write that needs them loads them.
    integration = _Columns(Integration, "i", leave_out=("credentials_encrypted",))
    scope_config = _Columns(ScopeConfig, "s")
    parts = [key, environment, integration, scope_config]
    sql = (
        f"SELECT {', '.join(p.sql for p in parts)}"
        f" FROM {qn(ApiKey._meta.db_table)} k"
        f" JOIN {qn(Environment._meta.db_table)} e ON e.id = k.environment_id"
        f" LEFT JOIN {qn(Integration._meta.db_table)} i ON i.environment_id = k.environment_id AND i.id = %s"
        f" LEFT JOIN {qn(ScopeConfig._meta.db_table)} s ON s.id = i.scope_config_id"
        " WHERE k.key_hash = %s AND k.revoked_at IS NULL"
    )
    return sql, parts


def usable_integration_id(integration_id: str) -> bool:
    """Whether an id can name an integration at all; any other id is simply not found."""
    return 0 < len(integration_id) <= MAX_INTEGRATION_ID and not has_unusable(integration_id)


def key_and_integration(raw_key: str, integration_id: str = "") -> tuple[ApiKey | None, Integration | None]:
    """The active key `raw_key` with its environment, and the integration of that environment
    whose id is `integration_id` (None if it has none such, or no id was given), with its scope
    config; its credentials are deferred. (None, None) for an unknown or revoked key."""
    sql, (keys, environments, integrations, scope_configs) = _statement()
    wanted = integration_id if usable_integration_id(integration_id) else None
    row = _fetch(sql, [wanted, hash_secret(raw_key)])
    if row is None:
        return None, None
    start = 0
    loaded = []
    for part in (keys, environments, integrations, scope_configs):
        loaded.append(part.load(row, start))
        start += len(part.fields)
    key, environment, integration, scope_config = loaded
    assert isinstance(key, ApiKey) and isinstance(environment, Environment)
    ApiKey._meta.get_field("environment").set_cached_value(key, environment)
    if not isinstance(integration, Integration):
        return key, None
    Integration._meta.get_field("environment").set_cached_value(integration, environment)
    Integration._meta.get_field("scope_config").set_cached_value(integration, scope_config)
    return key, integration


def _fetch(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """One row of `sql`. As the request's first query on a persistent connection, it is also the
    connection's health check: instead of Django's `SELECT 1` before it, a query that fails on a
    broken connection closes it and runs once more on a new one (a read, safe to repeat)."""
    # Django's health-check state (CONN_HEALTH_CHECKS), which its type stubs do not declare.
    checks = (
        connection.connection is not None
        and connection.health_check_enabled  # type: ignore[attr-defined]
        and not connection.health_check_done  # type: ignore[attr-defined]
        and not connection.in_atomic_block
    )
    if checks:
        connection.health_check_done = True  # type: ignore[attr-defined]  # this query is the check
        try:
            return _fetch_once(sql, params)
        except (OperationalError, InterfaceError):
            connection.close()
    return _fetch_once(sql, params)


def _fetch_once(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
