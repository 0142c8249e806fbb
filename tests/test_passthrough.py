"""`POST /v1/passthrough/{tool}/{api}` against local fake tools (tests/fake_hr.py) and the sandbox
served by the live server: the exact request forwarded, the answer as the reference shapes it
(every answer, success or error, validated against the reference's own schemas with jsonschema-rs),
the path containment rule, the errors, credentials kept out of answers and request logs, OAuth
refreshes stored once under concurrency, and the official `kombo` SDK."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jsonschema_rs
import pytest
from kombo import Kombo

from integrations import passthrough
from integrations.models import ApiKey, Integration, IntegrationState, RequestLog
from integrations.providers.sandbox_oauth import SandboxOAuthProvider, client_secret
from sandbox.models import SandboxOAuthClient, SandboxOAuthGrant

from . import factories
from .fake_hr import FakeHRServer, closed_port_url, fake_hr_fixture, load_fixture  # noqa: F401
from .reference_schemas import schema
from .test_providers_real import TOOLS, basic

VALIDATORS = {
    name: jsonschema_rs.validator_for(schema(name), validate_formats=True)
    for name in ("PostPassthroughToolApiRequestBody", "PostPassthroughToolApiPositiveResponse", "ErrorResponseGeneral")
}
PERSONIO_TOKEN = load_fixture("personio", "auth")["data"]["token"]
ROTATED_TOKEN = "papi-rotated-token-0123456789abcdef"
EMPLOYEES = load_fixture("personio", "employees")


def validate(schema: str, payload: Any) -> None:
    errors = [str(e) for e in VALIDATORS[schema].iter_errors(payload)]
    assert errors == [], f"{schema}: {errors}\n{json.dumps(payload, indent=1)[:3000]}"


def check_answer(status: int, payload: dict) -> dict:
    """Every answer matches the reference: the success shape on 200, else the general error shape."""
    validate("PostPassthroughToolApiPositiveResponse" if status == 200 else "ErrorResponseGeneral", payload)
    return payload


@pytest.fixture
def key(environment) -> str:
    return ApiKey.create(environment, "Passthrough")[1]


def post(client, key: str, integration_id: str | None, tool: str, api: str, body: Any, *, valid: bool = True):
    """POST through Django's test client; the answer checked against the reference's schemas (and,
    `valid`, the request body too)."""
    if valid:
        validate("PostPassthroughToolApiRequestBody", body)
    headers = {"Authorization": f"Bearer {key}"}
    if integration_id is not None:
        headers["X-Integration-Id"] = integration_id
    response = client.post(
        f"/v1/passthrough/{tool}/{api}",
        data=json.dumps(body) if not isinstance(body, str) else body,
        content_type="application/json",
        headers=headers,
    )
    check_answer(response.status_code, response.json())
    return response


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content.decode()[:2000]
    error = response.json()["error"]
    assert error["code"] == code
    assert error["log_url"]
    return error


# --- Tools on fake servers ----------------------------------------------------------------------

# tool -> (api, the fake server's base path, a path to call on it, the Authorization header expected)
CASES = {
    "personio": ("personnel", "/v1", "/v1/company/employees", f"Bearer {PERSONIO_TOKEN}"),
    "bamboohr": ("v1", "/api/gateway.php", "/api/gateway.php/acme/v1/employees/directory", None),
    "hibob": ("v1", "/v1", "/v1/people", None),
}


def expected_auth(tool: str) -> str:
    if tool == "bamboohr":
        return basic(TOOLS["bamboohr"].credentials["api_key"], "x")
    if tool == "hibob":
        credentials = TOOLS["hibob"].credentials
        return basic(credentials["service_user_id"], credentials["service_user_token"])
    return f"Bearer {PERSONIO_TOKEN}"


def serve(tool: str, fake: FakeHRServer, settings) -> None:
    setattr(settings, TOOLS[tool].setting, fake.url + CASES[tool][1])
    if tool == "personio":
        fake.route("POST", "/v1/auth", json=load_fixture("personio", "auth"))


@pytest.fixture(params=sorted(CASES))
def tool(request) -> str:
    return request.param


@pytest.fixture
def integration_of(environment):
    def make(tool: str, **kwargs) -> Integration:
        return factories.IntegrationFactory(
            environment=environment, tool=tool, credentials=dict(TOOLS[tool].credentials), **kwargs
        )

    return make


def forwarded(fake: FakeHRServer, path: str):
    sent = fake.requests_to(path)
    assert len(sent) == 1, [r.path for r in fake.requests]
    return sent[0]


def test_each_tool_forwards_the_exact_request_with_relinks_authentication(
    client, key, fake_hr, settings, tool, integration_of
):
    serve(tool, fake_hr, settings)
    api, _, path, _ = CASES[tool]
    fake_hr.route("GET", path, json={"data": [{"id": 1}]}, headers={"X-Request-Id": "req-7"})
    integration = integration_of(tool)
    body = {
        "method": "GET",
        "path": path.removeprefix(CASES[tool][1]).removeprefix("/acme/v1" if tool == "bamboohr" else "")
        + "?limit=5&email=a@b.test",
        "params": {"offset": "10"},
        "headers": {"Authorization": "Bearer caller-token", "Cookie": "session=abc", "X-Custom": "yes"},
    }

    response = post(client, key, integration.pk, tool, api, body)

    assert response.status_code == 200
    payload = response.json()
    assert payload["status"] == "success"
    assert payload["data"]["status"] == 200
    assert payload["data"]["data"] == {"data": [{"id": 1}]}
    assert payload["data"]["url"] == f"{fake_hr.url}{path}?limit=5&email=a@b.test&offset=10"
    assert payload["data"]["headers"]["x-request-id"] == "req-7"
    assert payload["data"]["headers"]["content-type"] == "application/json"
    sent = forwarded(fake_hr, path)
    assert sent.method == "GET"
    assert sent.headers["authorization"] == expected_auth(tool)  # the caller's is dropped
    assert "cookie" not in sent.headers
    assert sent.headers["x-custom"] == "yes"
    assert sent.query == {"limit": ["5"], "email": ["a@b.test"], "offset": ["10"]}
    assert sent.body == b""
    [warning] = payload["warnings"]
    assert "Authorization" in warning["message"] and "Cookie" in warning["message"]


def test_personio_gets_its_token_as_a_sync_does_and_its_rotated_token_is_never_returned(
    client, key, fake_hr, settings, integration_of
):
    serve("personio", fake_hr, settings)
    fake_hr.route(
        "GET",
        "/v1/company/employees",
        json=EMPLOYEES,
        headers={"Authorization": f"Bearer {ROTATED_TOKEN}", "Set-Cookie": "personio_session=s3cr3t-session-value"},
    )
    integration = integration_of("personio")

    response = post(
        client, key, integration.pk, "personio", "personnel", {"method": "GET", "path": "/company/employees"}
    )

    payload = response.json()
    assert payload["data"]["data"] == EMPLOYEES
    assert "authorization" not in payload["data"]["headers"] and "set-cookie" not in payload["data"]["headers"]
    text = response.content.decode()
    assert ROTATED_TOKEN not in text and PERSONIO_TOKEN not in text and "s3cr3t-session-value" not in text
    [auth] = fake_hr.requests_to("/v1/auth")
    assert auth.json() == TOOLS["personio"].credentials
    assert payload["warnings"] == []


def test_a_json_body_is_sent_as_json_and_a_string_raw(client, key, fake_hr, settings, integration_of):
    serve("bamboohr", fake_hr, settings)
    fake_hr.route("POST", "/api/gateway.php/acme/v1/reports/custom", json={"employees": []})
    fake_hr.route("PUT", "/api/gateway.php/acme/v1/employees/1", status=204)
    integration = integration_of("bamboohr")

    post(
        client,
        key,
        integration.pk,
        "bamboohr",
        "v1",
        {"method": "POST", "path": "reports/custom", "params": {"format": "JSON"}, "data": {"fields": ["firstName"]}},
    )
    answer = post(
        client,
        key,
        integration.pk,
        "bamboohr",
        "v1",
        {
            "method": "PUT",
            "path": "/employees/1",
            "data": "<employee><field id='firstName'>Ann</field></employee>",
            "headers": {"Content-Type": "application/xml"},
        },
    ).json()

    report = forwarded(fake_hr, "/api/gateway.php/acme/v1/reports/custom")
    assert report.json() == {"fields": ["firstName"]}
    assert report.headers["content-type"] == "application/json"
    assert report.query == {"format": ["JSON"]}
    update = forwarded(fake_hr, "/api/gateway.php/acme/v1/employees/1")
    assert update.body == b"<employee><field id='firstName'>Ann</field></employee>"
    assert update.headers["content-type"] == "application/xml"
    assert update.headers["authorization"] == expected_auth("bamboohr")
    assert answer["data"]["status"] == 204 and answer["data"]["data"] == ""


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 503])
def test_an_upstream_error_status_is_passed_through_in_a_success_envelope(
    client, key, fake_hr, settings, integration_of, status
):
    serve("hibob", fake_hr, settings)
    fake_hr.route("GET", "/v1/people/123", status=status, json={"key": "ERR", "error": "nope"})
    integration = integration_of("hibob")

    response = post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/people/123"})

    assert response.status_code == 200
    assert response.json()["data"]["status"] == status
    assert response.json()["data"]["data"] == {"key": "ERR", "error": "nope"}


def test_an_upstream_answer_can_be_returned_as_base64(client, key, fake_hr, settings, integration_of):
    serve("hibob", fake_hr, settings)
    fake_hr.route("GET", "/v1/docs/1", json={"pdf": "%PDF-1.7"})
    integration = integration_of("hibob")

    answer = post(
        client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/docs/1", "response_as_base64": True}
    ).json()

    assert base64.b64decode(answer["data"]["data"]) == json.dumps({"pdf": "%PDF-1.7"}).encode()


# --- Path containment ---------------------------------------------------------------------------

BAD_PATHS = [
    "http://evil.test/x",
    "https://127.0.0.1:1/x",
    "HTTP://evil.test",
    "//evil.test/x",
    "javascript:alert(1)",
    "../x",
    "/..",
    "/company/../../x",
    "/company/..",
    "/%2e%2e/x",
    "/%2E%2E/x",
    "/%2E./x",
    "/.%2e/x",
    "/%252e%252e/x",
    "/a%2f..%2fx",
    "/a%2F..%2F..%2Fx",
    "/..;/x",
    "/./x",
    "\\\\evil.test\\x",
    "/a\\..\\x",
    "/a%5c..%5cx",
    "/user@evil.test",
    "@evil.test/x",
    "/a\nHost: evil.test",
    "/a\r\nb",
    "/a\tb",
    "/a\x00b",
    "/a%00b",
    "/a%0d%0aX-Injected: 1",
    "/company/employees#frag",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_path_that_could_leave_the_base_url_is_refused_and_nothing_is_sent(
    client, key, fake_hr, settings, integration_of, path
):
    serve("personio", fake_hr, settings)  # Personio: even its /auth call would show here
    integration = integration_of("personio")

    response = post(
        client, key, integration.pk, "personio", "personnel", {"method": "GET", "path": path}, valid="\x00" not in path
    )

    if "\x00" in path:  # refused by the framework for every endpoint: PostgreSQL cannot store it
        error_of(response, 400, "PLATFORM.INPUT_INVALID")
    else:
        assert error_of(response, 400, "PLATFORM.INPUT_INVALID")["message"].startswith("path: ")
    assert fake_hr.requests == []


@pytest.mark.parametrize(
    ("path", "sent_path"),
    [
        ("company/employees", "/v1/company/employees"),
        ("/company/employees/", "/v1/company/employees/"),
        ("/company/a..b", "/v1/company/a..b"),
        ("/company/%C3%A9", "/v1/company/%C3%A9"),
        ("/company/.well-known", "/v1/company/.well-known"),
        ("", "/v1/"),
    ],
)
def test_paths_that_stay_under_the_base_are_forwarded(client, key, fake_hr, settings, integration_of, path, sent_path):
    serve("personio", fake_hr, settings)
    integration = integration_of("personio")

    answer = post(client, key, integration.pk, "personio", "personnel", {"method": "GET", "path": path}).json()

    assert answer["data"]["status"] == 404  # the fake's answer to an unrouted path
    assert answer["data"]["url"].startswith(settings.PERSONIO_BASE_URL + "/")
    assert [r.path for r in fake_hr.requests] == ["/v1/auth", sent_path]


def test_the_final_url_is_checked_under_the_base_url():
    with pytest.raises(passthrough.Refused):
        passthrough.build_url("http://127.0.0.1:9/v1", "a/../../x", "", {})
    assert (
        passthrough.build_url("http://127.0.0.1:9/v1/", "a", "b=1", {"c": "2 3"}) == "http://127.0.0.1:9/v1/a?b=1&c=2+3"
    )


# --- Refusals -----------------------------------------------------------------------------------


def test_another_environments_integration_or_an_unknown_one_is_not_found(
    client, key, fake_hr, settings, other_environment
):
    serve("hibob", fake_hr, settings)
    theirs = factories.IntegrationFactory(
        environment=other_environment, tool="hibob", credentials=dict(TOOLS["hibob"].credentials)
    )
    body = {"method": "GET", "path": "/people"}

    error_of(post(client, key, theirs.pk, "hibob", "v1", body), 404, "PLATFORM.INTEGRATION_NOT_FOUND")
    error_of(post(client, key, "hibob:nope", "hibob", "v1", body), 404, "PLATFORM.INTEGRATION_NOT_FOUND")
    assert fake_hr.requests == []


def test_a_missing_integration_header_is_refused(client, key):
    error = error_of(
        post(client, key, None, "hibob", "v1", {"method": "GET", "path": "/"}), 400, "PLATFORM.INPUT_INVALID"
    )
    assert "X-Integration-Id" in error["message"]


def test_another_tools_api_or_an_unknown_api_is_refused_naming_the_integrations_apis(client, key, environment):
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox", credentials={"api_key": "k"})
    body = {"method": "GET", "path": "/employees"}

    wrong_tool = error_of(
        post(client, key, integration.pk, "personio", "personnel", body), 400, "PLATFORM.INPUT_INVALID"
    )
    unknown_api = error_of(post(client, key, integration.pk, "sandbox", "v2", body), 400, "PLATFORM.INPUT_INVALID")

    assert "personio/personnel" in wrong_tool["message"] and "sandbox/v1" in wrong_tool["message"]
    assert "sandbox/v2" in unknown_api["message"] and "sandbox/v1" in unknown_api["message"]


def test_a_disabled_integration_is_refused_and_nothing_is_sent(client, key, fake_hr, settings, integration_of):
    serve("hibob", fake_hr, settings)
    integration = integration_of("hibob", enabled=False, state=IntegrationState.INACTIVE)

    error = error_of(
        post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/people"}),
        400,
        "PLATFORM.INPUT_INVALID",
    )

    assert "disabled" in error["message"]
    assert fake_hr.requests == []


def test_an_invalid_integration_is_forwarded_with_a_warning(client, key, fake_hr, settings, integration_of):
    serve("hibob", fake_hr, settings)
    fake_hr.route("GET", "/v1/people", json={"employees": []})
    integration = integration_of("hibob", state=IntegrationState.INVALID)

    answer = post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/people"}).json()

    assert answer["data"]["status"] == 200
    assert "INVALID" in answer["warnings"][0]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"path": "/people"}, "method"),
        ({"method": "get", "path": "/people"}, "method"),
        ({"method": "TRACE", "path": "/people"}, "method"),
        ({"method": "GET"}, "path"),
        ({"method": "GET", "path": 7}, "path"),
        ({"method": "GET", "path": "/people", "headers": {"X-A": 1}}, "headers.X-A"),
        ({"method": "GET", "path": "/people", "headers": ["X-A"]}, "headers"),
        ({"method": "GET", "path": "/people", "headers": {"X-A": "a\r\nb"}}, "headers"),
        ({"method": "GET", "path": "/people", "headers": {"Bad Name": "a"}}, "headers"),
        ({"method": "GET", "path": "/people", "params": {"a": ["b"]}}, "params.a"),
        ({"method": "GET", "path": "/people", "response_as_base64": "yes"}, "response_as_base64"),
        (
            {"method": "POST", "path": "/docs", "multipart_form_data": [{"name": "file", "value": "x"}]},
            "multipart_form_data",
        ),
    ],
)
def test_an_invalid_request_body_is_refused_and_nothing_is_sent(
    client, key, fake_hr, settings, integration_of, body, field
):
    serve("hibob", fake_hr, settings)
    integration = integration_of("hibob")

    error = error_of(post(client, key, integration.pk, "hibob", "v1", body, valid=False), 400, "PLATFORM.INPUT_INVALID")

    assert error["message"].startswith(f"{field}")
    if field == "multipart_form_data":
        assert "not supported by Relink" in error["message"]
    assert fake_hr.requests == []


def test_a_body_that_is_no_json_object_is_refused(client, key, integration_of):
    integration = integration_of("hibob")
    error_of(post(client, key, integration.pk, "hibob", "v1", "[1]", valid=False), 400, "PLATFORM.INPUT_INVALID")
    error_of(post(client, key, integration.pk, "hibob", "v1", "{nope", valid=False), 400, "PLATFORM.INPUT_INVALID")


# --- Failures -----------------------------------------------------------------------------------


def test_a_tool_that_does_not_answer_in_time_is_a_timeout(client, key, fake_hr, settings, integration_of):
    serve("hibob", fake_hr, settings)
    settings.PROVIDER_HTTP_TIMEOUT = 0.2
    fake_hr.route("GET", "/v1/people", json={"employees": []}, delay=1.0)
    integration = integration_of("hibob")

    started = time.monotonic()
    response = post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/people"})

    assert "did not answer" in error_of(response, 504, "PLATFORM.TASK_TIMED_OUT")["message"]
    assert time.monotonic() - started < 1.0


def test_an_unreachable_tool_is_an_upstream_error(client, key, settings, integration_of):
    settings.HIBOB_BASE_URL = closed_port_url() + "/v1"
    integration = integration_of("hibob")

    response = post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/people"})

    assert "could not be reached" in error_of(response, 502, "PLATFORM.UNKNOWN_ERROR")["message"]


def test_personio_refusing_the_credentials_is_an_upstream_error_and_nothing_is_forwarded(
    client, key, fake_hr, settings, integration_of
):
    serve("personio", fake_hr, settings)
    fake_hr.route("POST", "/v1/auth", status=401, json={"success": False, "error": {"code": 0, "message": "bad"}})
    integration = integration_of("personio")

    response = post(
        client, key, integration.pk, "personio", "personnel", {"method": "GET", "path": "/company/employees"}
    )

    assert "refused" in error_of(response, 502, "PLATFORM.UNKNOWN_ERROR")["message"]
    assert [r.path for r in fake_hr.requests] == ["/v1/auth"]


def test_an_answer_above_the_size_cap_is_refused(client, key, fake_hr, settings, integration_of, monkeypatch):
    serve("hibob", fake_hr, settings)
    monkeypatch.setattr(passthrough, "MAX_RESPONSE_BYTES", 1000)
    fake_hr.route("GET", "/v1/people", json={"employees": ["x" * 2000]})
    fake_hr.route("GET", "/v1/small", json={"employees": ["x" * 100]})
    integration = integration_of("hibob")

    response = post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/people"})

    assert "larger than 1000 bytes" in error_of(response, 502, "PLATFORM.UNKNOWN_ERROR")["message"]
    assert post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/small"}).status_code == 200


def test_the_rate_limit_applies(client, key, fake_hr, settings, integration_of):
    serve("hibob", fake_hr, settings)
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    fake_hr.route("GET", "/v1/people", json={"employees": []})
    integration = integration_of("hibob")
    body = {"method": "GET", "path": "/people"}

    assert post(client, key, integration.pk, "hibob", "v1", body).status_code == 200
    error_of(post(client, key, integration.pk, "hibob", "v1", body), 429, "PLATFORM.RATE_LIMIT_EXCEEDED")
    assert len(fake_hr.requests_to("/v1/people")) == 1


# --- Other answers: text, repeated headers ------------------------------------------------------


class RawServer:
    """Answers every request with fixed bytes and headers (a tool answering CSV, several cookies)."""

    def __init__(self, body: bytes, headers: list[tuple[str, str]]):
        raw = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                for name, value in raw.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw.body)))
                self.end_headers()
                self.wfile.write(raw.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.body, self.headers = body, headers
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_text_answer_is_returned_as_text_with_its_repeated_headers(client, key, settings, integration_of):
    headers = [
        ("Content-Type", "text/csv; charset=utf-8"),
        ("Link", "<https://x.test/?page=2>; rel=next"),
        ("Link", "<https://x.test/?page=9>; rel=last"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    with RawServer("id,name\n1,Zoë\n".encode(), headers) as raw:
        settings.HIBOB_BASE_URL = raw.url + "/v1"
        integration = integration_of("hibob")
        answer = post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/export"}).json()

    assert answer["data"]["data"] == "id,name\n1,Zoë\n"
    assert answer["data"]["headers"]["link"] == [
        "<https://x.test/?page=2>; rel=next",
        "<https://x.test/?page=9>; rel=last",
    ]
    assert answer["data"]["headers"]["content-type"] == "text/csv; charset=utf-8"
    assert "set-cookie" not in answer["data"]["headers"]


def test_a_json_content_type_with_a_body_that_is_not_json_is_returned_as_text(client, key, settings, integration_of):
    with RawServer(b"{not json", [("Content-Type", "application/json")]) as raw:
        settings.HIBOB_BASE_URL = raw.url + "/v1"
        integration = integration_of("hibob")
        answer = post(client, key, integration.pk, "hibob", "v1", {"method": "GET", "path": "/x"}).json()

    assert answer["data"]["data"] == "{not json"


# --- Credentials never shown --------------------------------------------------------------------


def secrets_of(tool: str) -> list[str]:
    credentials = TOOLS[tool].credentials
    values = [credentials[name] for name in TOOLS[tool].secret_fields]
    auth = expected_auth(tool)
    values += [auth, auth.split(" ", 1)[1]]
    if tool == "personio":
        values += [PERSONIO_TOKEN, ROTATED_TOKEN]
    return values


def test_credentials_never_appear_in_the_answer_nor_in_the_request_log(
    client, key, fake_hr, settings, tool, integration_of
):
    """A tool echoing Relink's credentials back (in its body, its headers, a redirect) shows none."""
    serve(tool, fake_hr, settings)
    api, _, path, _ = CASES[tool]
    secrets = secrets_of(tool)
    echo = {"echo": secrets, "nested": [{"token": s, f"key-{s}": "v"} for s in secrets], "text": " ".join(secrets)}
    fake_hr.route(
        "GET",
        path,
        status=302,
        json=echo,
        headers={
            "Authorization": f"Bearer {ROTATED_TOKEN}",
            "Location": f"{fake_hr.url}/next?token={secrets[0]}",
            "X-Echo": secrets[-1],
            "X-Auth-Token": "some-other-session-token",
        },
    )
    integration = integration_of(tool)
    relative = path.removeprefix(CASES[tool][1]).removeprefix("/acme/v1" if tool == "bamboohr" else "")
    body = {"method": "GET", "path": relative, "headers": {"Authorization": secrets[0]}}

    response = post(client, key, integration.pk, tool, api, body)
    base64_answer = post(client, key, integration.pk, tool, api, {**body, "response_as_base64": True}).json()

    assert response.json()["data"]["status"] == 302
    assert "x-auth-token" not in response.json()["data"]["headers"]
    shown = [response.content.decode(), base64.b64decode(base64_answer["data"]["data"]).decode()]
    logs = RequestLog.objects.filter(integration_id=integration.pk)
    assert logs.count() == 2
    for log in logs:
        shown.append(json.dumps([log.path, log.request_body, log.response_body]))
    for text in shown:
        assert "[REDACTED]" in text
        for secret in secrets:
            assert secret not in text
    assert "some-other-session-token" not in shown[0]


# --- The sandbox, over real HTTP ----------------------------------------------------------------


@pytest.fixture
def live(live_server, settings):
    settings.BASE_URL = live_server.url
    return live_server


@pytest.fixture
def company(environment):
    company = factories.SandboxCompanyFactory(name="Initech HR", environment=environment)
    for name in ("Ada", "Grace", "Linus"):
        factories.SandboxEmployeeFactory(company=company, first_name=name)
    return company


def oauth_credentials(company, *, expired: bool) -> tuple[dict[str, str], SandboxOAuthGrant]:
    grant, refresh_token = SandboxOAuthGrant.create_with_refresh_token(
        company, SandboxOAuthClient.ensure_default(), ["employees:read", "absences:read"]
    )
    token, access_token = grant.issue_access_token()
    expires_at = token.expires_at.isoformat() if not expired else "2020-01-01T00:00:00+00:00"
    return {"access_token": access_token, "refresh_token": refresh_token, "expires_at": expires_at}, grant


@pytest.fixture
def count_refreshes(monkeypatch):
    """Counts the refreshes `SandboxOAuthProvider.refresh` makes (slowed, so concurrent requests overlap)."""
    calls: list[str] = []
    real = SandboxOAuthProvider.refresh

    def counted(self, credentials):
        calls.append(credentials.get("refresh_token", ""))
        time.sleep(0.3)
        return real(self, credentials)

    monkeypatch.setattr(SandboxOAuthProvider, "refresh", counted)
    return calls


@pytest.mark.django_db(transaction=True)
def test_the_kombo_sdk_reads_sandbox_employees_through_the_passthrough(live, environment, company, key):
    _, raw = company.create_key()
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox", credentials={"api_key": raw})

    with Kombo(api_key=key, integration_id=integration.pk, server_url=live.url + "/v1") as kombo:
        response = kombo.general.send_passthrough_request(
            tool="sandbox",
            api="v1",
            method="GET",
            path="/employees",
            params={"limit": "2"},
            headers={"Authorization": "Bearer not-forwarded"},
        )

    assert response.data.status == 200
    assert response.data.url == f"{live.url}/sandbox/api/v1/employees?limit=2"
    assert [e["first_name"] for e in response.data.data["data"]] == ["Ada", "Grace"]
    assert response.data.data["metadata"]["total_elements"] == 3
    assert raw not in json.dumps(response.data.model_dump(mode="json"))
    assert response.warnings and "Authorization" in response.warnings[0].message


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_answers_401_for_a_revoked_key_as_a_status(live, client, environment, company, key):
    integration = factories.IntegrationFactory(
        environment=environment, tool="sandbox", credentials={"api_key": "sbx_revoked-or-unknown-key-1234"}
    )

    answer = post(client, key, integration.pk, "sandbox", "v1", {"method": "GET", "path": "/me"}).json()

    assert answer["data"]["status"] == 401
    assert answer["data"]["data"]["error"]["code"] == "INVALID_API_KEY"


@pytest.mark.django_db(transaction=True)
def test_an_expired_oauth_token_is_refreshed_once_and_stored(live, client, environment, company, key, count_refreshes):
    credentials, _ = oauth_credentials(company, expired=True)
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox_oauth", credentials=credentials)
    body = {"method": "GET", "path": "/employees"}

    first = post(client, key, integration.pk, "sandbox_oauth", "v1", body).json()
    second = post(client, key, integration.pk, "sandbox_oauth", "v1", body).json()

    assert first["data"]["status"] == second["data"]["status"] == 200
    assert len(first["data"]["data"]["data"]) == 3
    assert count_refreshes == [credentials["refresh_token"]]
    stored = Integration.objects.get(pk=integration.pk).get_credentials()
    assert stored["access_token"] != credentials["access_token"]
    assert stored["refresh_token"] != credentials["refresh_token"]
    assert not SandboxOAuthProvider().needs_refresh(stored)
    texts = [json.dumps(first), json.dumps(list(RequestLog.objects.values_list("request_body", "response_body")))]
    for text in texts:
        for secret in (*credentials.values(), stored["access_token"], stored["refresh_token"], client_secret()):
            if len(secret) >= 8 and not secret.startswith("20"):
                assert secret not in text


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_refresh_an_expired_token_once(live, environment, company, key, count_refreshes):
    credentials, _ = oauth_credentials(company, expired=True)
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox_oauth", credentials=credentials)
    start = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def call() -> None:
        start.wait()
        answers.append(
            httpx.post(
                f"{live.url}/v1/passthrough/sandbox_oauth/v1",
                json={"method": "GET", "path": "/employees"},
                headers={"Authorization": f"Bearer {key}", "X-Integration-Id": integration.pk},
                timeout=30,
            )
        )

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status_code for a in answers] == [200, 200]
    assert [check_answer(200, a.json())["data"]["status"] for a in answers] == [200, 200]
    assert count_refreshes == [credentials["refresh_token"]]
    stored = Integration.objects.get(pk=integration.pk).get_credentials()
    assert stored["refresh_token"] != credentials["refresh_token"]
    assert SandboxOAuthProvider().check_auth(stored).outcome == "OK"  # the stored tokens are the live ones


@pytest.mark.django_db(transaction=True)
def test_a_refused_refresh_is_an_error_and_leaves_the_stored_credentials_alone(live, client, environment, company, key):
    credentials, grant = oauth_credentials(company, expired=True)
    grant.revoke()
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox_oauth", credentials=credentials)

    response = post(client, key, integration.pk, "sandbox_oauth", "v1", {"method": "GET", "path": "/employees"})

    message = error_of(response, 502, "PLATFORM.UNKNOWN_ERROR")["message"]
    assert "refused to refresh" in message and "reconnect" in message
    assert Integration.objects.get(pk=integration.pk).get_credentials() == credentials
    assert credentials["refresh_token"] not in response.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_syncs_auth_check_and_a_passthrough_request_refresh_an_expired_token_once(
    live, environment, company, key, count_refreshes
):
    """The sync's auth check refreshes through the same row lock as the passthrough
    (integrations.credentials): one rotating refresh token is never spent twice."""
    from integrations.health import check_and_record

    credentials, _ = oauth_credentials(company, expired=True)
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox_oauth", credentials=credentials)
    start = threading.Barrier(2)
    outcomes: list[Any] = []

    def passthrough_call() -> None:
        start.wait()
        outcomes.append(
            httpx.post(
                f"{live.url}/v1/passthrough/sandbox_oauth/v1",
                json={"method": "GET", "path": "/employees"},
                headers={"Authorization": f"Bearer {key}", "X-Integration-Id": integration.pk},
                timeout=30,
            ).json()["data"]["status"]
        )

    def auth_check() -> None:
        from django.db import connection

        start.wait()
        try:
            outcomes.append(check_and_record(Integration.objects.get(pk=integration.pk)).outcome.value)
        finally:
            connection.close()

    threads = [threading.Thread(target=passthrough_call), threading.Thread(target=auth_check)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(map(str, outcomes)) == ["200", "OK"]
    assert count_refreshes == [credentials["refresh_token"]]
    stored = Integration.objects.get(pk=integration.pk).get_credentials()
    assert SandboxOAuthProvider().check_auth(stored).outcome == "OK"


@pytest.mark.django_db(transaction=True)
def test_credentials_http_cannot_carry_are_an_error_not_an_outage(live, client, environment, key):
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox", credentials={"api_key": ""})

    response = post(client, key, integration.pk, "sandbox", "v1", {"method": "GET", "path": "/employees"})

    message = error_of(response, 502, "PLATFORM.UNKNOWN_ERROR")["message"]
    assert "cannot be sent" in message and "reconnect" in message


@pytest.mark.django_db(transaction=True)
def test_whitespace_around_a_callers_header_value_is_trimmed(live, client, environment, company, key):
    _, raw = company.create_key()
    integration = factories.IntegrationFactory(environment=environment, tool="sandbox", credentials={"api_key": raw})
    body = {"method": "GET", "path": "/employees", "headers": {"X-Request-Tag": "  tagged  "}}

    response = post(client, key, integration.pk, "sandbox", "v1", body)

    assert response.status_code == 200 and response.json()["data"]["status"] == 200
