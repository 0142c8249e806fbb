"""Every input gets an answer below 500: NUL, unpaired surrogates and other odd text thrown at the
dashboard's query strings and forms, the hosted connect form and /v1 JSON bodies (hypothesis), and
one plain example per case the audit found (NUL in a path or query string, a surrogate in a /v1
body, a non-ASCII API key on the connect form).

Requests go through the test client, so a lone surrogate can only arrive percent-encoded in UTF-8
(Django decodes invalid UTF-8 to U+FFFD) or escaped in JSON (`"\\ud800"`), exactly as over the wire;
the guard's own surrogate checks (ASGI paths are text) are tested on the middleware directly.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.core.cache import cache
from django.http import HttpResponse, QueryDict
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import errors
from config.middleware import InputGuardMiddleware
from connect_flow import links, signed
from connect_flow.models import ConnectionLink
from integrations import requestlogs
from integrations.lib.http import ProviderClient
from integrations.models import ApiKey, Integration, RequestLog, Role
from integrations.providers.base import Outcome, ProviderAuthFailed
from integrations.providers.sandbox import SandboxProvider

from . import factories

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
INTEGRATION_ID = "sandbox:FuzzInputsFuzzInputsFuzz"
NOT_A_KEY = "This value contains characters that cannot be part of a key."

# Text as odd as it gets: any code point (surrogates included), and the usual suspects mixed in.
NASTY = st.sampled_from(
    ["\x00", "\ud800", "\udfff", "\udc80", "\ufffd", "\u202e", "é", "ß", "%00", "%", "&", "=", "+", "#", "'", '"']
    + ["<script>", "\\", " ", "\t", "\n", "\r", "\x7f", "x" * 300]
)
TEXT = st.lists(st.one_of(st.characters(codec=None), st.characters(categories=["Cs"]), NASTY), max_size=8).map("".join)


def _utf8(value: str) -> bytes:
    """As a client would send it: UTF-8, a lone surrogate as its (invalid) three bytes."""
    return value.encode("utf-8", "surrogatepass")


def _urlencoded(params: dict[str, Any]) -> str:
    pairs = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append(f"{quote(_utf8(name), safe='')}={quote(_utf8(item), safe='')}")
    return "&".join(pairs)


def _encodable(params: dict[str, Any]) -> bool:
    try:
        json.dumps(params, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _post_form(client, path: str, params: dict[str, Any], multipart: bool):
    """urlencoded, or multipart (the test client's default) when every value is valid UTF-8."""
    if multipart and _encodable(params):
        return client.post(path, params)
    return client.post(path, _urlencoded(params), content_type="application/x-www-form-urlencoded")


@pytest.fixture(autouse=True)
def _no_celery(monkeypatch):
    monkeypatch.setattr("integrations.syncs._enqueue", lambda sync_ids, **kwargs: None)


@pytest.fixture
def sandbox_says_401(monkeypatch):
    """Sandbox HR answers 401 to everything, through the real provider HTTP client (its header
    encoding included); `requests` lists what reached it."""
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(401, json={"error": {"code": "INVALID_API_KEY", "message": "Invalid API key"}})

    monkeypatch.setattr(
        "integrations.providers.sandbox.provider_client",
        lambda **kw: ProviderClient(transport=httpx.MockTransport(answer)),
    )
    return requests


@pytest.fixture
def integration(environment):
    return factories.IntegrationFactory(
        id=INTEGRATION_ID, environment=environment, credentials={"api_key": "sbx_old"}, state="INVALID"
    )


@pytest.fixture
def signed_in(client, owner, integration):
    client.force_login(owner)
    return client


# --- The dashboard: query strings and forms ------------------------------------------------------


@given(q=TEXT, state=TEXT, tool=TEXT, sort=TEXT, page=TEXT, name=TEXT)
@FUZZ
def test_dashboard_query_strings_never_answer_500(signed_in, q, state, tool, sort, page, name):
    scope_diff = f"/env/acme/integrations/{INTEGRATION_ID}/relink/scope-diff/"
    for path, params in (
        ("/env/acme/", {"q": q, "state": state, "tool": tool, "sort": sort, "page": page}),
        ("/env/acme/", {"state": "INVALID", "tool": "sandbox", "sort": "-" + sort, "page": page, name: q}),
        ("/env/acme/logs/", {"q": q, "source": state, "status": tool, "integration": sort, "page": page}),
        ("/env/acme/logs/", {"status": "errors", "errors": "1", "q": name}),
        (scope_diff, {"scope_config": q, "link_type": state, "language": tool}),
        ("/env/acme/scope-configs/new/", {"category": q}),
    ):
        response = signed_in.get(f"{path}?{_urlencoded(params)}")
        assert response.status_code < 500, (path, params)
    for segment in (q, name):  # and as path segments naming an object
        for path in (
            f"/env/acme/integrations/{quote(_utf8(segment), safe='')}/",
            f"/env/acme/logs/{quote(_utf8(segment), safe='')}/",
        ):
            assert signed_in.get(path).status_code < 500, path


CHOICE_OR_TEXT = {
    "link_type": st.one_of(st.sampled_from(["EMBEDDED", "MAGIC_LINK"]), TEXT),
    "language": st.one_of(st.sampled_from(["en", "de", "fr"]), TEXT),
    "role": st.one_of(st.sampled_from(list(Role.values)), TEXT),
    "category": st.one_of(st.just("HRIS"), TEXT),
    "availability": st.one_of(st.sampled_from(["ENABLED", "OPTIONAL", "DISABLED"]), TEXT),
    "event": st.one_of(st.just("integration.state_changed"), TEXT),
    "email": st.one_of(st.just("owner@acme.test"), st.emails(), TEXT),
    "url": st.one_of(st.just("https://hooks.example.test/relink"), TEXT.map(lambda t: f"https://x.test/{t}"), TEXT),
}


@given(
    text=TEXT,
    other=TEXT,
    multipart=st.booleans(),
    link_type=CHOICE_OR_TEXT["link_type"],
    language=CHOICE_OR_TEXT["language"],
    role=CHOICE_OR_TEXT["role"],
    category=CHOICE_OR_TEXT["category"],
    availability=CHOICE_OR_TEXT["availability"],
    event=CHOICE_OR_TEXT["event"],
    email=CHOICE_OR_TEXT["email"],
    url=CHOICE_OR_TEXT["url"],
)
@FUZZ
def test_dashboard_forms_never_answer_500(
    signed_in, text, other, multipart, link_type, language, role, category, availability, event, email, url
):
    forms = (
        (
            f"/env/acme/integrations/{INTEGRATION_ID}/links/create/",
            {"scope_config": text, "link_type": link_type, "language": language},
        ),
        (
            f"/env/acme/integrations/{INTEGRATION_ID}/links/create/",
            {"link_type": link_type, "language": language, other: text},
        ),
        (
            "/env/acme/scope-configs/new/",
            {
                "name": text,
                "category": category,
                "model__hris_employees": availability,
                "field__hris_employees__salary": availability,
                f"model__{other}": text,
            },
        ),
        ("/env/acme/members/add/", {"email": email, "role": role}),
        ("/env/acme/members/add/", {"email": text, "role": other}),
        ("/env/acme/webhooks/new/", {"url": url, "description": text, "event_types": [event, other]}),
        ("/env/acme/secrets/create/", {"name": text, other: other}),
    )
    for path, params in forms:
        response = _post_form(signed_in, path, params, multipart)
        assert response.status_code < 500, (path, params)


# --- The hosted connect form ---------------------------------------------------------------------


@given(api_key=TEXT, tool=st.one_of(st.just("sandbox"), TEXT), opt_out=TEXT, junk=TEXT, multipart=st.booleans())
@FUZZ
def test_the_connect_form_never_answers_500(
    client, integration, sandbox_says_401, api_key, tool, opt_out, junk, multipart
):
    created = links.create_relink_link(integration)
    form_token = signed.form_token(created.link)
    params = {"form_token": form_token, "tool": tool, "api_key": api_key, "opt_out": [opt_out, "hris_employees.salary"]}
    if junk:
        params[junk] = junk

    response = _post_form(client, f"/connect/{created.token}/", params, multipart)

    assert response.status_code < 500
    assert "Traceback" not in response.content.decode(errors="replace")


# --- /v1 JSON bodies -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
API_FIELDS = st.sampled_from(
    ["value", "language", "link_type", "scope_config_id", "type", "end_user_email", "end_user_organization_name"]
    + ["end_user_origin_id", "integration_category", "integration_tool", "remote_environment", "enable_filtering"]
)
BODIES = st.one_of(st.dictionaries(st.one_of(API_FIELDS, TEXT), JSON_VALUES, max_size=5), JSON_VALUES)
ENDPOINTS = st.sampled_from(
    [
        ("POST", "/v1/connect/create-link"),
        ("POST", f"/v1/integrations/{INTEGRATION_ID}/relink"),
        ("PUT", f"/v1/integrations/{INTEGRATION_ID}/enabled"),
        ("DELETE", f"/v1/integrations/{INTEGRATION_ID}"),
        ("POST", "/v1/force-sync"),
        ("GET", "/v1/check-api-key"),
    ]
)


@pytest.fixture
def api_key(environment, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1_000_000
    cache.clear()
    return ApiKey.create(environment, "Fuzzer")[1]


def _raw_body(body: Any, encoding: str) -> bytes:
    if encoding == "escaped":
        return json.dumps(body).encode()  # "\ud800" and "\u0000" as JSON escapes
    if encoding == "utf-8":
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")  # lone surrogates as raw bytes
    return json.dumps(body).encode()[:-1] + b"\xff\xfe"  # invalid UTF-8 and truncated: no JSON


@given(endpoint=ENDPOINTS, body=BODIES, encoding=st.sampled_from(["escaped", "utf-8", "broken"]), header=TEXT)
@FUZZ
def test_v1_json_bodies_never_answer_500_and_are_always_logged(
    client, environment, integration, api_key, endpoint, body, encoding, header
):
    if not Integration.objects.filter(pk=INTEGRATION_ID).exists():  # a fuzzed DELETE removed it
        factories.IntegrationFactory(id=INTEGRATION_ID, environment=environment)
    method, path = endpoint
    headers = {"Authorization": f"Bearer {api_key}"}
    if path == "/v1/force-sync":
        headers["X-Integration-Id"] = INTEGRATION_ID if not header else quote(_utf8(header))
    logged = RequestLog.objects.count()

    response = client.generic(method, path, _raw_body(body, encoding), content_type="application/json", headers=headers)

    assert response.status_code < 500, response.content
    assert RequestLog.objects.count() == logged + 1
    if response.status_code == 400:
        assert response.json()["error"]["code"] == errors.INPUT_INVALID


# --- Examples: a. surrogates and NUL in /v1 bodies -----------------------------------------------


def test_a_surrogate_in_a_v1_delete_body_is_a_400_and_is_logged(client, integration, api_key):
    response = client.delete(
        f"/v1/integrations/{INTEGRATION_ID}",
        '{"reason": "\\ud800", "\\udfff": 1}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key}"},
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "PLATFORM.INPUT_INVALID"
    assert error["message"].startswith("reason: must not contain NUL characters") and "surrogates" in error["message"]
    assert Integration.objects.filter(pk=INTEGRATION_ID).exists()  # refused before anything was done
    entry = RequestLog.objects.get()
    assert (entry.method, entry.status_code, entry.error_code) == ("DELETE", 400, "PLATFORM.INPUT_INVALID")
    assert entry.request_body == {"reason": "\ufffd", "\ufffd": 1}
    assert error["log_url"].endswith(f"/logs/{entry.pk}/")


def test_nul_and_surrogates_anywhere_in_a_v1_body_are_refused_with_where(client, integration, api_key):
    def send(raw: bytes):
        return client.post(
            f"/v1/integrations/{INTEGRATION_ID}/relink",
            raw,
            content_type="application/json",
            headers={"Authorization": f"Bearer {api_key}"},
        )

    nested = send(b'{"language": "en", "meta": {"notes": ["ok", "a\\u0000b"]}}')
    raw_surrogate = send('{"language": "\ud800"}'.encode("utf-8", "surrogatepass"))  # the bytes ED A0 80
    in_a_key = send(b'{"x\\u0000y": true}')
    ignoring_endpoint = client.generic(
        "GET",
        "/v1/check-api-key",
        b'["\\udc00"]',
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key}"},
    )

    assert nested.status_code == raw_surrogate.status_code == in_a_key.status_code == 400
    assert nested.json()["error"]["message"].startswith("meta.notes[1]: must not contain NUL")
    assert raw_surrogate.json()["error"]["message"].startswith("language: ")
    assert in_a_key.json()["error"]["message"].startswith("x\ufffdy: ")
    assert ignoring_endpoint.status_code == 400
    assert ignoring_endpoint.json()["error"]["message"].startswith("(body)[0]: ")
    assert RequestLog.objects.filter(status_code=400).count() == 4
    assert RequestLog.objects.get(request_body__language="\ufffd").path.endswith("/relink")


def test_a_v1_body_in_invalid_utf8_is_logged_with_replacement_characters(client, integration, api_key):
    response = client.post(
        f"/v1/integrations/{INTEGRATION_ID}/relink",
        b'{"language": "\xff\xfe"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key}"},
    )

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    assert RequestLog.objects.get().request_body == {"language": "\ufffd\ufffd"}


def test_a_request_log_row_is_written_whatever_its_body(environment):
    surrogates = requestlogs.write(
        "API",
        method="POST",
        path="/v1/x\ud800",
        status_code=400,
        duration_ms=1,
        request_body={"a\ud800": ["\udfff", float("inf"), {"n": "\x00"}]},
    )
    unserializable = requestlogs.write(
        "API",
        method="POST",
        path="/v1/y",
        status_code=200,
        duration_ms=1,
        request_body={"x": object()},
        response_body={"ok": True},
    )
    too_deep: Any = "end"
    for _ in range(5000):
        too_deep = [too_deep]
    nested = requestlogs.write(
        "API", method="POST", path="/v1/z", status_code=400, duration_ms=1, request_body=too_deep
    )

    assert surrogates is not None and unserializable is not None and nested is not None
    stored = RequestLog.objects.get(pk=surrogates.pk)
    assert stored.path == "/v1/x\ufffd"
    assert stored.request_body == {"a\ufffd": ["\ufffd", "inf", {"n": "\ufffd"}]}
    kept = RequestLog.objects.get(pk=unserializable.pk)
    assert kept.status_code == 200 and kept.request_body == requestlogs.NOT_STORED
    assert RequestLog.objects.get(pk=nested.pk).request_body == requestlogs.NOT_STORED


# --- Examples: b. NUL in paths, query strings and forms -------------------------------------------


def _assert_plain_400(response) -> None:
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert "Bad request" in body and "Traceback" not in body


def test_nul_in_a_dashboard_path_is_a_400_page_before_any_query(signed_in, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = signed_in.get("/env/acme/integrations/sandbox%00x/")

    _assert_plain_400(response)


@pytest.mark.parametrize(
    "url",
    [
        "/env/acme/?q=%00",
        "/env/acme/?state=INVALID&q=a%00b",
        "/env/acme/logs/?q=%00",
        "/env/acme/logs/?integration=x%00",
        "/env/acme/?%00=1",
        "/admin/integrations/integration/?q=%00",
        "/connect/abc%00/",
    ],
)
def test_nul_in_a_query_string_or_path_is_a_400_page(client, superuser, owner, integration, url):
    client.force_login(superuser if url.startswith("/admin/") else owner)

    _assert_plain_400(client.get(url))


def test_nul_in_a_form_field_is_a_400_page(signed_in):
    create = f"/env/acme/integrations/{INTEGRATION_ID}/links/create/"

    urlencoded = signed_in.post(
        create, "link_type=EMBEDDED&language=en%00", content_type="application/x-www-form-urlencoded"
    )
    multipart = signed_in.post(create, {"link_type": "EMBEDDED", "language": "en\x00"})

    _assert_plain_400(urlencoded)
    _assert_plain_400(multipart)
    assert not ConnectionLink.objects.exists()


def test_nul_in_a_v1_path_or_query_is_the_api_envelope(client, api_key, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/v1/integrations/sandbox%00x", headers={"Authorization": f"Bearer {api_key}"})
    query = client.get("/v1/check-api-key?x=%00", headers={"Authorization": f"Bearer {api_key}"})

    for answer in (response, query):
        assert answer.status_code == 400
        assert answer["Cache-Control"] == "no-store"
        body = answer.json()
        expected = errors.input_invalid(body["error"]["message"]).envelope(None)
        assert body == expected  # the envelope of api.errors, code and title included
    assert "URL path" in response.json()["error"]["message"]
    assert "query string" in query.json()["error"]["message"]


def _guarded(request) -> HttpResponse:
    return InputGuardMiddleware(lambda r: HttpResponse("view ran"))(request)


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\x00"])
def test_the_guard_refuses_unpaired_surrogates_and_nul_wherever_they_are(text):
    """An ASGI server hands Django the path as text, so a surrogate can arrive there; query and
    form values are patched in for the same check."""
    factory = RequestFactory()
    in_path = factory.get("/env/acme/")
    in_path.path = in_path.path_info = f"/env/{text}/"
    in_query = factory.get("/v1/check-api-key")
    in_query.GET = QueryDict(mutable=True)
    in_query.GET["q"] = text
    in_form = factory.post("/env/acme/secrets/create/", {"name": "ok"})
    in_form._post = QueryDict(mutable=True)
    in_form._post["name"] = text
    in_form._files = QueryDict()

    assert _guarded(in_path).status_code == 400
    assert _guarded(in_query).status_code == 400 and _guarded(in_query)["Content-Type"] == "application/json"
    assert _guarded(in_form).status_code == 400
    assert _guarded(factory.get("/env/acme/?q=fine")).content == b"view ran"


def test_the_guard_leaves_json_bodies_to_the_api_and_refuses_its_form_values(client, integration, api_key):
    response = client.put(
        f"/v1/integrations/{INTEGRATION_ID}/enabled",
        '{"value": false}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    form_to_api = client.post(
        "/v1/connect/create-link",
        "a=%00",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": f"Bearer {api_key}"},
    )

    assert response.status_code == 200
    assert form_to_api.status_code == 400 and form_to_api.json()["error"]["code"] == errors.INPUT_INVALID


# --- Examples: c. non-ASCII credentials on the connect form ----------------------------------------


@pytest.mark.parametrize("api_key", ["sbx_schlüssel", "sbx_\u201ckey\u201d", "sbx_\ud800"])
def test_a_non_ascii_api_key_is_a_form_error_and_nothing_is_sent(client, integration, sandbox_says_401, api_key):
    created = links.create_relink_link(integration)
    params = {"form_token": signed.form_token(created.link), "tool": "sandbox", "api_key": api_key}

    response = client.post(
        f"/connect/{created.token}/", _urlencoded(params), content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert NOT_A_KEY in response.content.decode()
    assert sandbox_says_401 == []  # nothing reached the provider
    assert links.find_link(created.token).completed_at is None


def test_an_ascii_api_key_still_reaches_the_provider(client, integration, sandbox_says_401):
    created = links.create_relink_link(integration)
    params = {"form_token": signed.form_token(created.link), "tool": "sandbox", "api_key": "sbx_wrong key~"}

    response = client.post(f"/connect/{created.token}/", params)

    assert response.status_code == 400 and NOT_A_KEY not in response.content.decode()
    assert [r.headers["Authorization"] for r in sandbox_says_401] == ["Bearer sbx_wrong key~"]


def test_the_provider_http_layer_turns_unencodable_credentials_into_auth_failed(sandbox_says_401):
    provider = SandboxProvider()

    result = provider.check_auth({"api_key": "sbx_clé"})

    assert result.outcome is Outcome.AUTH_FAILED and result.error_code == "CREDENTIALS_NOT_ENCODABLE"
    assert "clé" not in result.message
    with pytest.raises(ProviderAuthFailed):
        provider.fetch("hris_employees", {"api_key": "sbx_clé"}, ["first_name"])
    assert sandbox_says_401 == []
