"""The /v1 API's cost per request, counted: database round trips (every message libpq sends that
waits for an answer — queries, BEGIN/COMMIT, savepoints, Django's `SELECT 1` health check) and
Redis round trips, so a regression fails here rather than in a benchmark (api/framework.py;
docs/PERFORMANCE.md, "API").

The tests run outside a test transaction (`transaction=True`), as a request does in production,
and start each request as a server does (`close_if_unusable_or_obsolete`: the connection is to be
checked before its next use), which Django's test client skips.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from psycopg import pq
from redis.connection import AbstractConnection

from api import lookup
from integrations import requestlogs
from integrations.models import ApiKey, Integration, RequestLog

from . import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def key(environment):
    api_key, raw = ApiKey.create(environment, "Backend")
    api_key.raw = raw
    return api_key


@pytest.fixture
def integration(environment):
    return factories.IntegrationFactory(environment=environment)


class Trips:
    def __init__(self) -> None:
        self.database: list[str] = []  # what each database round trip sent, shortened
        self.redis: list[bytes] = []  # each Redis round trip's command name


@contextmanager
def round_trips() -> Iterator[Trips]:
    """Count the round trips of the block: libpq's trace of the Django connection (a simple
    `Query`, or the `Sync` closing an extended-protocol exchange), and each command buffer
    redis-py sends (one per command, one per pipeline)."""
    trips = Trips()
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    real_send = AbstractConnection.send_packed_command

    def counting_send(self, command, check_health=True):
        first = command if isinstance(command, bytes) else b"".join(command[:1])
        trips.redis.append(first.split(b"\r\n")[2] if first.startswith(b"*") else first[:20])
        return real_send(self, command, check_health)

    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        AbstractConnection.send_packed_command = counting_send  # type: ignore[method-assign]
        try:
            yield trips
        finally:
            AbstractConnection.send_packed_command = real_send  # type: ignore[method-assign]
            pgconn.untrace()
            trace.seek(0)
            for line in trace.read().decode(errors="replace").splitlines():
                parts = line.split("\t")
                if len(parts) >= 4 and parts[0] == "F" and parts[2] in ("Query", "Sync"):
                    sent = parts[3].strip().strip('"') if parts[2] == "Query" else "(extended)"
                    trips.database.append(sent[:40])


def _request(client, method, path, key, body=None, **headers):
    connection.close_if_unusable_or_obsolete()  # a request's start in production
    return getattr(client, method.lower())(
        path,
        data=json.dumps(body) if body is not None else "",
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def _warm(client, key):
    """One request first: it writes the key's last_used_at (then not again for a minute) and
    lets Redis learn the rate limit's script."""
    assert _request(client, "GET", "/v1/check-api-key", key.raw).status_code == 200


def test_a_read_is_three_round_trips(client, key, integration):
    _warm(client, key)
    with round_trips() as trips:
        response = _request(client, "GET", f"/v1/integrations/{integration.pk}", key.raw)

    assert response.status_code == 200
    assert response.json()["data"]["id"] == integration.pk
    # The key, its environment and the integration in one SELECT (which also serves as the
    # connection's health check: no SELECT 1), then the request log's INSERT, in autocommit.
    assert len(trips.database) == 2, trips.database
    assert trips.database[0].startswith("SELECT") and trips.database[1].startswith("INSERT")
    assert trips.redis == [b"EVALSHA"]  # the rate limit: count and expiry in one script
    assert RequestLog.objects.filter(path=f"/v1/integrations/{integration.pk}", status_code=200).count() == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "database", "redis"),
    [
        ("GET", "/v1/check-api-key", None, 2, 1),
        ("GET", "/v1/integrations/sandbox:unknown", None, 2, 1),  # a 404 costs what a read costs
        ("GET", "/v1/tools/hris", None, 2, 1),
        # The link and its audit event in one transaction: BEGIN, 2 INSERTs, COMMIT.
        ("POST", "/v1/integrations/{id}/relink", {"link_type": "MAGIC_LINK"}, 2 + 4, 1),
    ],
)
def test_round_trips_per_endpoint(client, key, integration, method, path, body, database, redis):
    _warm(client, key)
    with round_trips() as trips:
        response = _request(client, method, path.format(id=integration.pk), key.raw, body)

    assert response.status_code in (200, 404), response.content
    assert len(trips.database) == database, trips.database
    assert len(trips.redis) == redis, trips.redis


def test_a_rejected_key_costs_one_lookup_one_count_and_its_log(client, key):
    _warm(client, key)
    with round_trips() as trips:
        response = _request(client, "GET", "/v1/check-api-key", "rlk_" + "x" * 40)

    assert response.status_code == 401
    assert len(trips.database) == 2, trips.database  # the lookup, the log
    assert trips.redis == [b"EVALSHA"]  # the client address's count


def test_last_used_at_costs_one_update_at_most_once_a_minute(client, key, integration):
    with round_trips() as trips:
        _request(client, "GET", f"/v1/integrations/{integration.pk}", key.raw)
    assert [sent.split()[0] for sent in trips.database] == ["SELECT", "UPDATE", "INSERT"]


def test_the_rate_limit_counter_always_has_an_expiry(client, key):
    _request(client, "GET", "/v1/check-api-key", key.raw)

    (name,) = cache._cache.get_client().keys(f"*api-rate:{key.key_hash[:32]}:*")
    assert 60 <= cache._cache.get_client().ttl(name) <= 120
    assert cache._cache.get_client().get(name) == b"1"


def test_a_broken_persistent_connection_is_replaced_by_the_requests_first_query(client, key, integration):
    """What Django's health check (CONN_HEALTH_CHECKS) did with a SELECT 1 before the first query,
    the API's first query does itself: on a dead connection it fails, and runs again on a new one."""
    _warm(client, key)
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid

    def terminate() -> None:
        from django.db import connection as own  # this thread's connection

        with own.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        own.close()

    killer = threading.Thread(target=terminate)
    killer.start()
    killer.join()

    response = _request(client, "GET", f"/v1/integrations/{integration.pk}", key.raw)

    assert response.status_code == 200
    assert connection.connection.info.backend_pid != pid
    assert RequestLog.objects.filter(path=f"/v1/integrations/{integration.pk}").count() == 1


def test_the_lookup_loads_what_the_orm_loads(key, integration):
    found_key, found = lookup.key_and_integration(key.raw, integration.pk)

    expected = Integration.objects.select_related("environment", "scope_config").get(pk=integration.pk)
    assert found is not None and found_key is not None
    for field in Integration._meta.concrete_fields:
        if field.name != "credentials_encrypted":  # deferred: loaded if something reads it
            assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    assert found.get_deferred_fields() == {"credentials_encrypted"}
    assert found.credentials_encrypted == expected.credentials_encrypted
    for model, loaded, orm in [
        (ApiKey, found_key, ApiKey.objects.get(pk=key.pk)),
        (type(expected.environment), found.environment, expected.environment),
        (type(expected.scope_config), found.scope_config, expected.scope_config),
    ]:
        for field in model._meta.concrete_fields:
            assert getattr(loaded, field.attname) == getattr(orm, field.attname), (model, field.name)
    assert found_key.environment is found.environment


def test_the_lookup_finds_no_other_environments_integration_and_no_revoked_key(key, other_environment):
    foreign = factories.IntegrationFactory(environment=other_environment)

    found_key, found = lookup.key_and_integration(key.raw, foreign.pk)
    assert found_key == key and found is None

    ApiKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    assert lookup.key_and_integration(key.raw, foreign.pk) == (None, None)


def test_the_request_log_is_one_insert_in_autocommit_and_falls_back_the_same(environment):
    with CaptureQueriesContext(connection) as queries:
        row = requestlogs.write("API", method="GET", path="/v1/x", status_code=200, duration_ms=1)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]  # no savepoint
    assert row is not None and RequestLog.objects.filter(pk=row.pk).exists()

    # A body the database cannot take: the row is written again with a placeholder.
    with CaptureQueriesContext(connection) as queries:
        row = requestlogs.write(
            "API", method="POST", path="/v1/y", status_code=200, duration_ms=1, request_body={"x": object()}
        )
    assert len(queries) == 2 and not any("SAVEPOINT" in (q["sql"] or "") for q in queries.captured_queries)
    assert row is not None and RequestLog.objects.get(pk=row.pk).request_body == requestlogs.NOT_STORED


@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
def test_without_redis_the_rate_limit_counts_in_the_cache(client, key, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1

    assert _request(client, "GET", "/v1/check-api-key", key.raw).status_code == 200
    limited = _request(client, "GET", "/v1/check-api-key", key.raw)
    assert limited.status_code == 429 and 1 <= int(limited["Retry-After"]) <= 60


DEAD_REDIS = {
    "default": {
        "BACKEND": "config.cache.FailSoftRedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",  # the discard port: nothing listens, connect is refused
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}


@override_settings(CACHES=DEAD_REDIS)
def test_with_redis_down_the_request_is_served_uncounted(client, key, monkeypatch):
    warned = []
    monkeypatch.setattr("api.ratelimit.warn_unavailable", lambda operation, exc: warned.append(operation))

    response = _request(client, "GET", "/v1/check-api-key", key.raw)

    assert response.status_code == 200
    assert warned == ["rate limit, request allowed"]
