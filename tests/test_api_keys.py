"""/v1 API keys: `create_api_key` shows the raw key once; only its SHA-256 is stored."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from integrations.lib.tokens import hash_secret
from integrations.models import API_KEY_PREFIX, ApiKey


def _create(environment: str = "acme", name: str = "CI") -> str:
    out = StringIO()
    call_command("create_api_key", environment=environment, name=name, stdout=out)
    return out.getvalue().strip().splitlines()[-1].strip()


def _rows(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        return cursor.fetchall()


def test_create_api_key_prints_the_key_on_its_last_line(environment):
    raw = _create()

    assert raw.startswith(API_KEY_PREFIX)
    assert len(raw) > len(API_KEY_PREFIX) + 30
    key = ApiKey.objects.get()
    assert key.name == "CI"
    assert key.environment == environment


def test_only_the_sha256_of_the_key_is_stored(environment):
    raw = _create()

    rows = _rows(ApiKey._meta.db_table)
    assert len(rows) == 1
    assert hash_secret(raw) in repr(rows[0])  # we are looking at the right row
    assert raw not in repr(rows[0])
    assert ApiKey.objects.get().key_hash == hash_secret(raw)


def test_the_raw_key_is_stored_in_no_table_at_all(environment):
    raw = _create()

    for table in connection.introspection.table_names():
        for row in _rows(table):
            assert raw not in repr(row), f"the raw API key is stored in {table}"


def test_the_stored_prefix_is_a_prefix_of_the_raw_key(environment):
    raw = _create()

    key = ApiKey.objects.get()
    assert key.prefix.startswith(API_KEY_PREFIX)
    assert len(key.prefix) > len(API_KEY_PREFIX)
    assert raw.startswith(key.prefix)
    assert len(key.prefix) < len(raw) // 2  # recognisable, not a usable part of the secret


def test_find_returns_the_key_for_its_raw_value(environment):
    raw = _create()

    found = ApiKey.objects.find(raw)

    assert found is not None
    assert found.name == "CI"
    assert found.environment == environment


def test_find_rejects_an_unknown_or_altered_key(environment):
    raw = _create()

    assert ApiKey.objects.find(raw + "x") is None
    assert ApiKey.objects.find(raw[:-1]) is None
    assert ApiKey.objects.find(ApiKey.objects.get().key_hash) is None  # the hash is not a key
    assert ApiKey.objects.find("") is None


def test_find_rejects_a_revoked_key(environment):
    raw = _create()
    ApiKey.objects.update(revoked_at=timezone.now())

    assert ApiKey.objects.find(raw) is None


def test_each_call_creates_a_new_distinct_key(environment):
    first, second = _create(name="one"), _create(name="two")

    assert first != second
    assert ApiKey.objects.find(first).name == "one"
    assert ApiKey.objects.find(second).name == "two"


def test_create_api_key_refuses_an_unknown_environment(environment):
    with pytest.raises(CommandError, match="no-such-env"):
        _create(environment="no-such-env")
    assert not ApiKey.objects.exists()
