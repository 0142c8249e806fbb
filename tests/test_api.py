"""The /v1 JSON API: authentication, the error envelope, tenancy, request logs, rate limit, endpoints."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from connect_flow import links
from connect_flow.models import ConnectionLink, LinkKind, LinkStatus
from integrations.models import (
    ApiKey,
    AuditEvent,
    Integration,
    IntegrationState,
    RequestLog,
    Sync,
    WebhookDelivery,
)

from . import factories

ENVELOPE_KEYS = {"code", "title", "message", "log_url"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # rate-limit counters must not leak between tests
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _no_celery(monkeypatch):
    monkeypatch.setattr("integrations.syncs._enqueue", lambda sync_ids, **kwargs: None)


@pytest.fixture
def key(environment):
    api_key, raw = ApiKey.create(environment, "Backend")
    api_key.raw = raw
    return api_key


@pytest.fixture
def other_key(other_environment):
    api_key, raw = ApiKey.create(other_environment, "Globex backend")
    api_key.raw = raw
    return api_key


@pytest.fixture
def scope_config(environment):
    return factories.ScopeConfigFactory(environment=environment, name="Employees + salary")


@pytest.fixture
def integration(environment, scope_config):
    return factories.IntegrationFactory(
        environment=environment,
        scope_config=scope_config,
        end_user_organization_name="Acme Customer GmbH",
        end_user_email="hr@customer.test",
        end_user_origin_id="cust-1",
    )


def call(client, method: str, path: str, key=None, body=None, raw_body: str | None = None, **headers):
    if key is not None:
        headers["Authorization"] = f"Bearer {key.raw if hasattr(key, 'raw') else key}"
    data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else "")
    return getattr(client, method.lower())(path, data=data, content_type="application/json", headers=headers)


def assert_error(response, status: int, code: str | None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "error"}
    assert body["status"] == "error"
    assert set(body["error"]) == ENVELOPE_KEYS
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.content.decode()
    return body["error"]


# --- Authentication --------------------------------------------------------------------------


def test_check_api_key_names_the_keys_environment(client, key, environment):
    response = call(client, "GET", "/v1/check-api-key", key)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["data"]["environment_id"] == str(environment.pk)
    assert isinstance(body["data"]["customer_id"], str) and body["data"]["customer_id"]
    assert response["Cache-Control"] == "no-store"


def test_last_used_at_is_written_at_most_once_a_minute(client, key, django_assert_max_num_queries):
    call(client, "GET", "/v1/check-api-key", key)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None

    call(client, "GET", "/v1/check-api-key", key)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first

    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    call(client, "GET", "/v1/check-api-key", key)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer rlk_not-a-real-key", "rlk_without_scheme"],
)
def test_missing_or_unknown_keys_are_401(client, key, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.get("/v1/check-api-key", headers=headers)

    error = assert_error(response, 401, "PLATFORM.AUTHENTICATION_INVALID")
    assert error["log_url"] is None  # no environment to show the log in
    assert response["Cache-Control"] == "no-store"


def test_a_revoked_key_is_401(client, key):
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())

    assert_error(call(client, "GET", "/v1/check-api-key", key), 401, "PLATFORM.AUTHENTICATION_INVALID")


def test_the_bearer_scheme_is_case_insensitive(client, key):
    response = client.get("/v1/check-api-key", headers={"Authorization": f"bearer {key.raw}"})

    assert response.status_code == 200


# --- The envelope for every error ------------------------------------------------------------


def test_unknown_paths_answer_in_the_envelope(client, key):
    for path in ["/v1/nope", "/v1/integrations", "/v1/check-api-key/", "/v1/integrations/a/b/c"]:
        error = assert_error(call(client, "GET", path, key), 404, "PLATFORM.INPUT_INVALID")
        assert error["log_url"].startswith("http")


def test_unknown_paths_without_a_key_are_401(client):
    assert_error(client.get("/v1/nope"), 401, "PLATFORM.AUTHENTICATION_INVALID")


def test_a_wrong_method_is_405_in_the_envelope(client, key, integration):
    response = call(client, "POST", "/v1/check-api-key", key)
    assert_error(response, 405, "PLATFORM.INPUT_INVALID")
    assert response["Allow"] == "GET"

    response = call(client, "PATCH", f"/v1/integrations/{integration.pk}", key, body={})
    assert_error(response, 405, "PLATFORM.INPUT_INVALID")
    assert set(response["Allow"].split(", ")) == {"GET", "DELETE"}


def test_malformed_json_is_400(client, key, integration):
    response = call(client, "PUT", f"/v1/integrations/{integration.pk}/enabled", key, raw_body='{"value": tru')

    error = assert_error(response, 400, "PLATFORM.INPUT_INVALID")
    assert "JSON" in error["message"]


def test_a_body_that_is_not_an_object_is_400(client, key, integration):
    response = call(client, "PUT", f"/v1/integrations/{integration.pk}/enabled", key, raw_body="[true]")

    assert_error(response, 400, "PLATFORM.INPUT_INVALID")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/integrations/{id}/enabled", {"value": "yes"}, "value"),
        ("/v1/integrations/{id}/enabled", {}, "value"),
        ("/v1/integrations/{id}/relink", {"language": 7}, "language"),
        ("/v1/integrations/{id}/relink", {"language": "nl"}, "language"),
        ("/v1/integrations/{id}/relink", {"link_type": "FOREVER"}, "link_type"),
        ("/v1/integrations/{id}/relink", {"scope_config_id": ["x"]}, "scope_config_id"),
        ("/v1/connect/create-link", {"end_user_organization_name": "X"}, "end_user_email"),
        (
            "/v1/connect/create-link",
            {"end_user_email": "not-an-email", "end_user_organization_name": "X"},
            "end_user_email",
        ),
        (
            "/v1/connect/create-link",
            {"end_user_email": "a@b.test", "end_user_organization_name": ""},
            "end_user_organization_name",
        ),
        (
            "/v1/connect/create-link",
            {"end_user_email": "a@b.test", "end_user_organization_name": 3},
            "end_user_organization_name",
        ),
        (
            "/v1/connect/create-link",
            {"end_user_email": "a@b.test", "end_user_organization_name": "X", "enable_filtering": "no"},
            "enable_filtering",
        ),
        (
            "/v1/connect/create-link",
            {"end_user_email": "a@b.test", "end_user_organization_name": "X", "integration_category": "CRM"},
            "integration_category",
        ),
        (
            "/v1/connect/create-link",
            {"end_user_email": "a@b.test", "end_user_organization_name": "X", "integration_category": "LMS"},
            "integration_category",
        ),
        (
            "/v1/connect/create-link",
            {"end_user_email": "a@b.test", "end_user_organization_name": "X", "integration_tool": "workday"},
            "integration_tool",
        ),
    ],
)
def test_wrong_input_is_400_naming_the_field(client, key, integration, path, body, field):
    method = "PUT" if path.endswith("enabled") else "POST"

    response = call(client, method, path.format(id=integration.pk), key, body=body)

    error = assert_error(response, 400, "PLATFORM.INPUT_INVALID")
    assert field in error["message"]
    assert error["log_url"]


def test_an_unexpected_error_is_500_without_a_stack_trace(client, key, integration, monkeypatch, caplog):
    def boom(_integration):
        raise RuntimeError("database exploded: secret internals")

    monkeypatch.setattr("api.shapes.integration_details", boom)

    with caplog.at_level(logging.ERROR, logger="api"):
        response = call(client, "GET", f"/v1/integrations/{integration.pk}", key)

    error = assert_error(response, 500, "PLATFORM.UNKNOWN_ERROR")
    assert "secret internals" not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()
    assert any("secret internals" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    entry = RequestLog.objects.get(status_code=500)
    assert entry.error_code == "PLATFORM.UNKNOWN_ERROR"
    assert error["log_url"].endswith(f"/logs/{entry.pk}/")


def test_nul_characters_and_odd_json_are_client_errors(client, key, integration):
    """PostgreSQL rejects NUL in text: the API must answer 4xx and still log the request.

    NUL in the URL path is refused before the API runs (config.middleware, in the envelope, no
    request log); NUL in the JSON body is the API's 400, logged with the NUL replaced."""
    assert_error(call(client, "GET", "/v1/integrations/sandbox%00x", key), 400, "PLATFORM.INPUT_INVALID")
    assert_error(call(client, "GET", "/v1/connect/integration-by-token/a%00b", key), 400, "PLATFORM.INPUT_INVALID")
    response = call(
        client,
        "POST",
        "/v1/connect/create-link",
        key,
        body={"end_user_email": "a@b.test", "end_user_organization_name": "Nul\u0000Corp"},
    )
    assert "end_user_organization_name" in assert_error(response, 400, "PLATFORM.INPUT_INVALID")["message"]
    response = call(client, "POST", f"/v1/integrations/{integration.pk}/relink", key, raw_body='{"language": NaN}')
    assert "JSON" in assert_error(response, 400, "PLATFORM.INPUT_INVALID")["message"]
    response = call(
        client,
        "POST",
        f"/v1/integrations/{integration.pk}/relink",
        key,
        raw_body='{"x\\u0000": "\\u0000", "language": "xx"}',
    )
    assert "NUL" in assert_error(response, 400, "PLATFORM.INPUT_INVALID")["message"]  # before the language
    response = call(client, "POST", f"/v1/integrations/{integration.pk}/relink", key, raw_body="[" * 100_000)
    assert_error(response, 400, "PLATFORM.INPUT_INVALID")
    assert RequestLog.objects.count() == 4  # the two NUL paths were refused before the API ran
    assert RequestLog.objects.filter(request_body__has_key="x\ufffd").count() == 1


def test_the_api_is_exempt_from_csrf(key, integration):
    client = Client(enforce_csrf_checks=True)

    response = call(client, "PUT", f"/v1/integrations/{integration.pk}/enabled", key, body={"value": False})

    assert response.status_code == 200


# --- Tenancy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("GET", "/v1/integrations/{id}", None, {}),
        ("DELETE", "/v1/integrations/{id}", None, {}),
        ("PUT", "/v1/integrations/{id}/enabled", {"value": False}, {}),
        ("POST", "/v1/integrations/{id}/relink", {}, {}),
        ("POST", "/v1/force-sync", {}, {"X-Integration-Id": "{id}"}),
    ],
)
def test_another_environments_integration_is_not_found(client, other_key, integration, method, path, body, headers):
    headers = {k: v.format(id=integration.pk) for k, v in headers.items()}

    response = call(client, method, path.format(id=integration.pk), other_key, body=body, **headers)

    error = assert_error(response, 404, "PLATFORM.INTEGRATION_NOT_FOUND")
    assert "Acme Customer" not in response.content.decode()
    assert "/env/globex/logs/" in error["log_url"]
    integration.refresh_from_db()
    assert integration.enabled and integration.state == IntegrationState.ACTIVE
    assert not Sync.objects.filter(integration=integration).exists()
    assert not ConnectionLink.objects.filter(integration=integration).exists()
    # Unknown and foreign ids look the same.
    unknown = call(
        client,
        method,
        path.format(id="sandbox:doesnotexist"),
        other_key,
        body=body,
        **{k: "sandbox:doesnotexist" for k in headers},
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["title"] == response.json()["error"]["title"]


def test_another_environments_scope_config_cannot_be_used(client, other_key, other_environment, scope_config):
    theirs = factories.IntegrationFactory(environment=other_environment)

    relink = call(
        client, "POST", f"/v1/integrations/{theirs.pk}/relink", other_key, body={"scope_config_id": scope_config.pk}
    )
    create = call(
        client,
        "POST",
        "/v1/connect/create-link",
        other_key,
        body={
            "end_user_email": "hr@globex-customer.test",
            "end_user_organization_name": "Globex customer",
            "scope_config_id": scope_config.pk,
        },
    )

    for response in (relink, create):
        error = assert_error(response, 400, "PLATFORM.INPUT_INVALID")
        assert "scope_config_id" in error["message"]
        assert scope_config.name not in response.content.decode()
    assert not ConnectionLink.objects.exists()


def test_integration_by_token_is_scoped_to_the_environment(client, key, other_key, environment):
    token = _connected_integration_token(environment)

    assert_error(
        call(client, "GET", f"/v1/connect/integration-by-token/{token}", other_key),
        404,
        "PLATFORM.INTEGRATION_NOT_FOUND",
    )
    # Another environment's attempt did not spend it.
    assert call(client, "GET", f"/v1/connect/integration-by-token/{token}", key).status_code == 200


def test_an_activation_token_works_once_then_answers_not_found(client, key, environment):
    token = _connected_integration_token(environment)
    assert call(client, "GET", f"/v1/connect/integration-by-token/{token}", key).status_code == 200
    error = assert_error(
        call(client, "GET", f"/v1/connect/integration-by-token/{token}", key), 404, "PLATFORM.INTEGRATION_NOT_FOUND"
    )
    assert "already exchanged or has expired" in error["message"]


# --- Request logs ------------------------------------------------------------------------------


def _row_text(entry: RequestLog) -> str:
    return repr(RequestLog.objects.filter(pk=entry.pk).values().get())


def test_every_request_is_logged(client, key, environment, integration):
    call(client, "GET", "/v1/check-api-key", key)
    call(client, "GET", f"/v1/integrations/{integration.pk}", key)
    call(client, "GET", "/v1/nope", key)
    client.get("/v1/check-api-key")  # no key at all

    entries = list(RequestLog.objects.order_by("created_at"))
    assert [(e.method, e.path, e.status_code) for e in entries] == [
        ("GET", "/v1/check-api-key", 200),
        ("GET", f"/v1/integrations/{integration.pk}", 200),
        ("GET", "/v1/nope", 404),
        ("GET", "/v1/check-api-key", 401),
    ]
    assert [e.environment_id for e in entries] == [environment.pk] * 3 + [None]
    assert [e.api_key_id for e in entries] == [key.pk] * 3 + [None]
    assert entries[1].integration_id == integration.pk
    assert entries[1].response_body["data"]["id"] == integration.pk
    assert entries[3].error_code == "PLATFORM.AUTHENTICATION_INVALID"
    assert all(e.source == RequestLog.Source.API and e.duration_ms >= 0 for e in entries)


def test_secrets_are_redacted_from_the_request_log(client, key, scope_config):
    response = call(
        client,
        "POST",
        "/v1/connect/create-link",
        key,
        body={
            "end_user_email": "hr@customer.test",
            "end_user_organization_name": "Customer Ltd",
            "scope_config_id": scope_config.pk,
            "client_secret": "cs-very-secret-1",
            "nested": {"password": "pw-very-secret-2", "refresh_token": "rt-very-secret-3", "note": key.raw},
            "api_key": "ak-very-secret-4",
        },
    )

    assert response.status_code == 200
    link = response.json()["data"]["link"]
    token = link.rstrip("/").rsplit("/", 1)[-1]
    entry = RequestLog.objects.get()
    text = _row_text(entry)
    for secret in [
        key.raw,
        "cs-very-secret-1",
        "pw-very-secret-2",
        "rt-very-secret-3",
        "ak-very-secret-4",
        link,
        token,
    ]:
        assert secret not in text
    assert entry.request_body["end_user_organization_name"] == "Customer Ltd"  # the rest is kept
    assert entry.request_body["nested"]["note"] == "[REDACTED]"
    assert entry.response_body == {"status": "success", "data": {"link": "[REDACTED]"}}


def test_the_raw_key_is_redacted_even_when_it_is_rejected(client, key):
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())

    call(client, "POST", "/v1/connect/create-link", key, body={"copy_of_key": key.raw})

    assert key.raw not in _row_text(RequestLog.objects.get())


def test_the_activation_token_is_not_logged(client, key, environment):
    token = _connected_integration_token(environment)

    call(client, "GET", f"/v1/connect/integration-by-token/{token}", key)
    client.get(f"/v1/connect/integration-by-token/{token}")  # no key: 401, logged too
    call(client, "POST", f"/v1/connect/integration-by-token/{token}", key)  # 405

    entries = list(RequestLog.objects.order_by("created_at"))
    assert [e.status_code for e in entries] == [200, 401, 405]
    for entry in entries:
        assert token not in _row_text(entry)
        assert entry.path == "/v1/connect/integration-by-token/[REDACTED]"
    assert entries[0].integration_id


def test_log_url_opens_the_log_page_for_a_member_and_404s_for_an_outsider(client, key, viewer, outsider):
    response = call(client, "POST", "/v1/connect/create-link", key, body={"end_user_organization_name": "X"})
    log_url = assert_error(response, 400, "PLATFORM.INPUT_INVALID")["log_url"]
    path = urlsplit(log_url).path
    assert log_url.startswith("http")

    client.force_login(viewer)
    page = client.get(path)
    assert page.status_code == 200
    body = page.content.decode()
    assert "/v1/connect/create-link" in body
    assert "PLATFORM.INPUT_INVALID" in body
    assert "end_user_email" in body
    listing = client.get("/env/acme/logs/")
    assert listing.status_code == 200
    assert path in listing.content.decode()

    client.force_login(outsider)
    assert client.get(path).status_code == 404
    assert client.get(path.replace("/env/acme/", "/env/globex/")).status_code == 404
    assert client.get("/env/acme/logs/").status_code == 404


def test_the_logs_list_shows_only_the_environments_requests(client, key, other_key, viewer):
    call(client, "GET", "/v1/check-api-key", key)
    call(client, "GET", "/v1/tools/hris", other_key)
    client.force_login(viewer)

    body = client.get("/env/acme/logs/").content.decode()

    assert "/v1/check-api-key" in body
    assert "/v1/tools/hris" not in body


# --- Rate limit ------------------------------------------------------------------------------


def test_the_rate_limit_is_per_key_and_answers_429_with_retry_after(client, key, other_key, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 2

    assert call(client, "GET", "/v1/check-api-key", key).status_code == 200
    assert call(client, "GET", "/v1/check-api-key", key).status_code == 200
    response = call(client, "GET", "/v1/check-api-key", key)

    error = assert_error(response, 429, "PLATFORM.RATE_LIMIT_EXCEEDED")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert error["log_url"]
    assert RequestLog.objects.filter(status_code=429, api_key=key).count() == 1
    assert call(client, "GET", "/v1/check-api-key", other_key).status_code == 200


def test_the_rate_limit_window_resets(client, key, settings, monkeypatch):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    now = [999_980.0]  # 20 s into a one-minute window (999_960 is a multiple of 60)
    monkeypatch.setattr("api.ratelimit._now", lambda: now[0])

    assert call(client, "GET", "/v1/check-api-key", key).status_code == 200
    limited = call(client, "GET", "/v1/check-api-key", key)
    assert limited.status_code == 429
    assert limited["Retry-After"] == "40"

    now[0] += 40
    assert call(client, "GET", "/v1/check-api-key", key).status_code == 200


def test_requests_without_a_valid_key_are_limited_per_client_address(client, key, settings):
    assert settings.API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE == 60  # the default
    settings.API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE = 2

    assert_error(call(client, "GET", "/v1/check-api-key"), 401, "PLATFORM.AUTHENTICATION_INVALID")  # no key
    assert_error(call(client, "GET", "/v1/check-api-key", "rlk_guessed"), 401, "PLATFORM.AUTHENTICATION_INVALID")
    response = call(client, "GET", "/v1/integrations/x", "rlk_guessed_again")

    error = assert_error(response, 429, "PLATFORM.RATE_LIMIT_EXCEEDED")
    assert "without a valid API key" in error["message"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert error["log_url"] is None  # no environment to show it in
    assert (
        RequestLog.objects.filter(status_code=429, api_key=None, error_code="PLATFORM.RATE_LIMIT_EXCEEDED").count() == 1
    )
    # Per address: another client is not limited; a valid key from this address still works.
    assert client.get("/v1/check-api-key", REMOTE_ADDR="192.0.2.7").status_code == 401
    assert call(client, "GET", "/v1/check-api-key", key).status_code == 200


def test_unauthenticated_endpoints_count_against_the_address_too(client, settings):
    settings.API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE = 1

    assert client.get("/v1/openapi.json").status_code == 200
    assert_error(client.get("/v1/openapi.json"), 429, "PLATFORM.RATE_LIMIT_EXCEEDED")
    assert client.get("/v1/openapi.json", REMOTE_ADDR="192.0.2.8").status_code == 200


def test_behind_a_trusted_proxy_each_client_address_has_its_own_limit(client, settings):
    """The address is read as login throttling reads it (TRUSTED_PROXY_COUNT → X-Forwarded-For)."""
    settings.API_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE = 1
    settings.AXES_IPWARE_PROXY_COUNT = 0  # what TRUSTED_PROXY_COUNT=1 sets: one proxy, at REMOTE_ADDR
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    assert client.get("/v1/openapi.json", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code == 200
    assert client.get("/v1/openapi.json", HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy).status_code == 200
    assert client.get("/v1/openapi.json", HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code == 429


# --- Integrations ----------------------------------------------------------------------------


def test_get_integration_has_the_full_shape(client, key, integration, scope_config):
    Integration.objects.filter(pk=integration.pk).update(opted_out_fields=["hris_employees.salary"])

    response = call(client, "GET", f"/v1/integrations/{integration.pk}", key)

    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {
        "id",
        "tool",
        "category",
        "status",
        "setup_status",
        "end_user",
        "scope_config",
        "data_expired_at",
        "created_at",
        "beta",
        "read_models",
        "write_actions",
    }
    assert data["id"] == integration.pk
    assert data["tool"]["id"] == "sandbox" and data["tool"]["label"] == "Sandbox HR"
    assert data["tool"]["internal_label"] is None
    assert data["tool"]["logo_url"].startswith("http") and data["tool"]["logo_url"].endswith(".svg")
    assert data["category"] == "HRIS"
    assert data["status"] == "ACTIVE"
    assert data["setup_status"] == "COMPLETED"
    assert data["end_user"] == {
        "organization_name": "Acme Customer GmbH",
        "creator_email": "hr@customer.test",
        "origin_id": "cust-1",
    }
    assert data["scope_config"] == {"id": scope_config.pk, "name": "Employees + salary"}
    assert data["data_expired_at"] is None
    assert data["created_at"].endswith("Z")
    assert data["beta"] is False
    assert data["write_actions"] == []
    models = {m["id"]: m for m in data["read_models"]}
    employees = models["hris_employees"]
    assert employees["is_available"] is True
    assert employees["coverage_status"] == "SUPPORTED"
    assert employees["scope_config_setting"] == "ENABLED"
    fields = {f["id"]: f for f in employees["fields"]}
    assert fields["first_name"]["is_available"] is True
    assert fields["salary"] == {
        "id": "salary",
        "is_available": False,
        "coverage_status": "SUPPORTED",
        "scope_config_setting": "OPTIONAL",
        "opted_out_by_customer": True,
    }
    assert fields["department"]["scope_config_setting"] == "DISABLED"
    assert models["hris_absences"]["is_available"] is False
    assert models["hris_absences"]["scope_config_setting"] == "DISABLED"


def test_the_tool_logo_is_served(client, key, integration):
    data = call(client, "GET", f"/v1/integrations/{integration.pk}", key).json()["data"]

    logo = client.get(urlsplit(data["tool"]["logo_url"]).path)

    assert logo.status_code == 200
    assert b"<svg" in b"".join(logo.streaming_content)


def test_an_integration_of_a_tool_no_longer_shipped_is_still_described(client, key, integration):
    Integration.objects.filter(pk=integration.pk).update(tool="retiredhr")

    data = call(client, "GET", f"/v1/integrations/{integration.pk}", key).json()["data"]

    assert data["tool"]["id"] == data["tool"]["label"] == "retiredhr"
    assert data["tool"]["logo_url"].endswith("/static/api/tools/_generic.svg")
    employees = next(m for m in data["read_models"] if m["id"] == "hris_employees")
    assert employees["coverage_status"] == "UNSUPPORTED" and employees["is_available"] is False
    assert employees["scope_config_setting"] == "ENABLED"


def test_delete_removes_the_integration_and_tells_the_webhooks(client, key, environment, integration):
    endpoint = factories.WebhookEndpointFactory(environment=environment)

    response = call(client, "DELETE", f"/v1/integrations/{integration.pk}", key)

    assert response.status_code == 200
    assert response.json() == {"status": "success", "data": {}}
    assert not Integration.objects.filter(pk=integration.pk).exists()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.event_type == "integration-deleted"
    assert delivery.payload["data"]["id"] == integration.pk
    assert delivery.payload["data"]["end_user"]["organization_name"] == "Acme Customer GmbH"
    audit = AuditEvent.objects.get(action="integration.deleted")
    assert audit.integration_id == integration.pk and audit.actor_api_key_id == key.pk
    assert_error(
        call(client, "DELETE", f"/v1/integrations/{integration.pk}", key), 404, "PLATFORM.INTEGRATION_NOT_FOUND"
    )


def test_set_enabled_goes_through_the_health_rules(client, key, integration):
    response = call(client, "PUT", f"/v1/integrations/{integration.pk}/enabled", key, body={"value": False})

    assert response.status_code == 200
    assert response.json() == {"status": "success", "data": {}}
    integration.refresh_from_db()
    assert integration.state == IntegrationState.INACTIVE and not integration.enabled
    assert AuditEvent.objects.filter(action="integration.disabled", actor_api_key=key).exists()

    call(client, "PUT", f"/v1/integrations/{integration.pk}/enabled", key, body={"value": True})
    integration.refresh_from_db()
    assert integration.state == IntegrationState.ACTIVE


def _token_of(link_url: str) -> str:
    return urlsplit(link_url).path.rstrip("/").rsplit("/", 1)[-1]


def test_relink_creates_a_working_link_and_the_link_types_expire_differently(client, key, environment, integration):
    new_scope = factories.ScopeConfigFactory(environment=environment, name="Absences too")

    embedded = call(
        client,
        "POST",
        f"/v1/integrations/{integration.pk}/relink",
        key,
        body={"scope_config_id": new_scope.pk, "language": "de"},
    )
    magic = call(
        client,
        "POST",
        f"/v1/integrations/{integration.pk}/relink",
        key,
        body={"link_type": "MAGIC_LINK", "scope_config_id": None, "language": None},
    )

    assert embedded.status_code == magic.status_code == 200
    embedded_link = links.find_link(_token_of(embedded.json()["data"]["link"]))
    magic_link = links.find_link(_token_of(magic.json()["data"]["link"]))
    assert embedded_link.kind == magic_link.kind == LinkKind.RECONNECT
    assert embedded_link.integration_id == magic_link.integration_id == integration.pk
    assert embedded_link.link_type == "EMBEDDED" and magic_link.link_type == "MAGIC_LINK"
    assert embedded_link.scope_config_id == new_scope.pk and magic_link.scope_config_id is None
    assert embedded_link.language == "de" and magic_link.language == "en"
    assert embedded_link.created_by_api_key_id == key.pk
    now = timezone.now()
    assert timedelta(minutes=59) < embedded_link.expires_at - now <= timedelta(hours=1)
    assert timedelta(days=364) < magic_link.expires_at - now <= timedelta(days=365)
    assert embedded_link.status == LinkStatus.PENDING

    # The link works: completing it reconnects the integration onto the new scope config.
    links.complete(embedded_link.pk, credentials={"api_key": "new"}, opted_out_fields=[])
    integration.refresh_from_db()
    assert integration.scope_config_id == new_scope.pk
    assert integration.data_expired_at is not None


def test_relink_rejects_a_scope_config_of_another_category(client, key, environment, integration):
    ats = factories.ScopeConfigFactory(environment=environment, name="ATS scope", category="ATS", spec={})

    response = call(client, "POST", f"/v1/integrations/{integration.pk}/relink", key, body={"scope_config_id": ats.pk})

    assert_error(response, 400, "PLATFORM.INPUT_INVALID")


@pytest.mark.parametrize("body", [{"language": "xx"}, {"link_type": "SMOKE_SIGNAL"}, {"scope_config_id": "nope"}])
def test_a_refused_relink_is_logged_with_its_integration(client, key, integration, body):
    response = call(client, "POST", f"/v1/integrations/{integration.pk}/relink", key, body=body)
    assert_error(response, 400, "PLATFORM.INPUT_INVALID")
    assert RequestLog.objects.get(path__endswith="/relink").integration_id == integration.pk


# --- Force sync ------------------------------------------------------------------------------


def test_force_sync_queues_once_and_reports_the_queued_sync(client, key, integration):
    first = call(client, "POST", "/v1/force-sync", key, body={"type": "FULL"}, **{"X-Integration-Id": integration.pk})
    second = call(client, "POST", "/v1/force-sync", key, body={}, **{"X-Integration-Id": integration.pk})

    assert first.status_code == second.status_code == 200
    one, two = first.json()["data"], second.json()["data"]
    assert one["already_queued"] is False and two["already_queued"] is True
    assert one["sync_id"] == two["sync_id"] == Sync.objects.get(integration=integration).pk
    assert one["type"] == two["type"] == "FULL"
    assert RequestLog.objects.filter(integration_id=integration.pk).count() == 2
    forced = AuditEvent.objects.get(integration_id=integration.pk, action="sync.forced")  # the second queued nothing
    assert forced.actor_api_key_id == key.pk and forced.details == {"sync_id": one["sync_id"], "type": "FULL"}


def test_force_sync_without_the_header_is_400(client, key):
    error = assert_error(call(client, "POST", "/v1/force-sync", key, body={}), 400, "PLATFORM.INPUT_INVALID")

    assert "X-Integration-Id" in error["message"]


@pytest.mark.parametrize(
    ("fields", "word"),
    [
        ({"invalid_since": timezone.now(), "state": "INVALID"}, "INVALID"),
        ({"enabled": False, "state": "INACTIVE"}, "INACTIVE"),
    ],
)
def test_force_sync_explains_why_a_broken_or_disabled_integration_cannot_sync(client, key, integration, fields, word):
    Integration.objects.filter(pk=integration.pk).update(**fields)

    response = call(client, "POST", "/v1/force-sync", key, body={}, **{"X-Integration-Id": integration.pk})

    error = assert_error(response, 400, "PLATFORM.INPUT_INVALID")
    assert word in error["message"]
    assert not Sync.objects.exists()


# --- Tools -----------------------------------------------------------------------------------


def test_tools_lists_the_registrys_tools_of_a_category(client, key):
    hris = call(client, "GET", "/v1/tools/hris", key)
    ats = call(client, "GET", "/v1/tools/ats", key)
    lms = call(client, "GET", "/v1/tools/lms", key)

    assert hris.status_code == ats.status_code == lms.status_code == 200
    tools = {t["id"]: t for t in hris.json()["data"]["tools"]}
    assert {"sandbox", "personio", "bamboohr", "hibob"} <= set(tools)
    sandbox = tools["sandbox"]
    assert set(sandbox) == {
        "id",
        "label",
        "internal_label",
        "assets",
        "paid_api_details_markdown",
        "fast_track_details_markdown",
        "partner_only_details_markdown",
        "connection_guide_url",
        "coverage",
    }
    assert set(sandbox["assets"]) == {"logo_url", "icon_url", "icon_black_url"}
    read_models = {m["id"]: m for m in sandbox["coverage"]["read_models"]}
    assert {"id": "salary", "coverage_status": "SUPPORTED"} in read_models["hris_employees"]["fields"]
    assert sandbox["coverage"]["write_actions"] == [] and sandbox["coverage"]["features"] == []
    assert ats.json()["data"]["tools"] == [] and lms.json()["data"]["tools"] == []


def test_an_unknown_tool_category_is_400(client, key):
    error = assert_error(call(client, "GET", "/v1/tools/crm", key), 400, "PLATFORM.INPUT_INVALID")

    assert "category" in error["message"]


# --- Connect ---------------------------------------------------------------------------------


def test_create_link_creates_a_connect_link_and_ignores_unknown_fields(client, key, environment, scope_config):
    response = call(
        client,
        "POST",
        "/v1/connect/create-link",
        key,
        body={
            "end_user_email": "hr@customer.test",
            "end_user_organization_name": "Customer Ltd",
            "end_user_origin_id": "cust-42",
            "integration_category": "HRIS",
            "integration_tool": "sandbox",
            "language": "fr",
            "scope_config_id": scope_config.pk,
            "link_type": "MAGIC_LINK",
            "enable_filtering": False,
            "enable_static_ips": True,
            "remote_environment": None,
            "some_future_field": {"x": 1},
        },
    )

    assert response.status_code == 200
    link = links.find_link(_token_of(response.json()["data"]["link"]))
    assert link.kind == LinkKind.CONNECT and link.environment == environment
    assert (link.end_user_email, link.end_user_organization_name, link.end_user_origin_id) == (
        "hr@customer.test",
        "Customer Ltd",
        "cust-42",
    )
    assert (link.tool, link.category, link.language, link.link_type) == ("sandbox", "HRIS", "fr", "MAGIC_LINK")
    assert link.scope_config == scope_config
    assert link.created_by_api_key_id == key.pk


def test_create_link_defaults(client, key):
    response = call(
        client,
        "POST",
        "/v1/connect/create-link",
        key,
        body={
            "end_user_email": "hr@customer.test",
            "end_user_organization_name": "Customer Ltd",
            "end_user_origin_id": None,
            "integration_tool": None,
        },
    )

    link = links.find_link(_token_of(response.json()["data"]["link"]))
    assert (link.category, link.tool, link.language, link.link_type, link.end_user_origin_id) == (
        "HRIS",
        "",
        "en",
        "EMBEDDED",
        "",
    )


def _connected_integration_token(environment) -> str:
    created = links.create_connect_link(
        environment,
        end_user_email="hr@new-customer.test",
        end_user_organization_name="New Customer",
        end_user_origin_id="new-1",
    )
    return links.complete(
        created.link.pk, credentials={"api_key": "sbx"}, opted_out_fields=[], tool="sandbox"
    ).activation_token


def test_integration_by_token_returns_the_new_integration(client, key, environment):
    token = _connected_integration_token(environment)

    response = call(client, "GET", f"/v1/connect/integration-by-token/{token}", key)

    assert response.status_code == 200
    data = response.json()["data"]
    integration = Integration.objects.get(end_user_origin_id="new-1")
    assert data == {
        "tool": "sandbox",
        "id": integration.pk,
        "end_user_origin_id": "new-1",
        "end_user_organization_name": "New Customer",
        "end_user_email": "hr@new-customer.test",
        "setup_status": "COMPLETED",
    }


def test_an_unknown_token_is_404(client, key):
    assert_error(
        call(client, "GET", "/v1/connect/integration-by-token/nope", key), 404, "PLATFORM.INTEGRATION_NOT_FOUND"
    )


# --- The OpenAPI document ----------------------------------------------------------------------


def test_the_openapi_document_is_served_without_a_key(client, settings):
    settings.BASE_URL = "https://relink.example.com"

    response = client.get("/v1/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["servers"] == [{"url": "https://relink.example.com/v1", "description": "This Relink installation"}]
    assert set(document["paths"]) == {
        "/check-api-key",
        "/force-sync",
        "/integrations/{integration_id}",
        "/integrations/{integration_id}/enabled",
        "/integrations/{integration_id}/relink",
        "/tools/{category}",
        "/connect/create-link",
        "/connect/integration-by-token/{token}",
        "/hris/employees",
        "/hris/absences",
        "/passthrough/{tool}/{api}",
    }
    assert set(document["webhooks"]) == {
        "data-changed",
        "connection-flow-failed",
        "integration-created",
        "integration-deleted",
        "integration-state-changed",
        "sync-finished",
        "integration-auth-failing",
    }
    assert response["Cache-Control"] == "no-store"


def test_create_link_refuses_a_category_without_tools(client, key):
    """ATS has no tool on this deployment: a link would open a page that offers none."""
    response = call(
        client,
        "POST",
        "/v1/connect/create-link",
        key,
        {"end_user_email": "hr@acme.test", "end_user_organization_name": "Acme", "integration_category": "ATS"},
    )

    error = assert_error(response, 400, "PLATFORM.INPUT_INVALID")
    assert "no ATS tool is available" in error["message"]
