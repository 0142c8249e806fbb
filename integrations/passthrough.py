"""Passthrough: one request forwarded to an integration's tool API with the integration's stored
credentials (`POST /v1/passthrough/{tool}/{api}`, the reference API's PostPassthroughToolApi).

Which `{tool}/{api}` exist, their base URLs and their authentication are declared by the tools
(`Provider.passthrough_apis`, `Provider.passthrough_target`); this module checks the request,
refreshes OAuth credentials when they need it (stored at once, under the integration's row lock),
sends the request through the shared provider client and shapes the tool's answer.

The containment rule: the caller's `path` is appended to the API's base URL and can never leave
it. Absolute URLs, `//host`, `..` or `.` segments (also percent-encoded, once or more), backslashes,
`@`, `#` and control characters in the path are refused before anything is sent, and the URL built
must still start with the base URL and `/` (httpx resolves dot segments, so that is checked on the
URL as httpx will send it). A query string in `path` is kept, `params` are appended to it.

Nothing of the credentials reaches the caller: the caller's authentication, cookie and hop-by-hop
headers are not forwarded (the tool's authentication is set by Relink and always wins), the
answer's credential-bearing headers (Set-Cookie, Authorization: Personio's rotated token, …) are
not returned, and every credential value (and value derived from one: a session token, an
authentication header) is masked wherever it appears in the returned URL, headers or body. The
caller's list of `secrets` gets each of them as soon as it is known, for its own logs.

Errors: a request that cannot be forwarded as asked raises `Refused` (the caller's to fix); a tool
that does not answer in time `TimedOut`; a tool that cannot be reached, refuses Relink's own
authentication (an OAuth refresh, Personio's `/auth`) or answers more than `MAX_RESPONSE_BYTES`
raises `Failed`. Any HTTP answer of the forwarded request itself, 4xx and 5xx included, is an
`Answer` with that status, as the reference API does.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import httpx
from django.conf import settings

from config.text import REDACTED, is_secret_name, replace_unusable

from .credentials import usable_credentials
from .lib.http import RequestNotEncodable, provider_client
from .lib.redaction import MIN_MASKED_LENGTH, mask
from .models import Integration, IntegrationState
from .providers import Provider
from .providers.base import PassthroughTarget, ProviderAuthFailed, ProviderError

METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH")
# The tool's answer is read up to this size (decoded); a larger one is refused, not cut.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
# A JSON answer nested deeper than this is returned as text.
MAX_JSON_DEPTH = 200

NO_DATA = object()  # the request has no `data` (absent or null): no body is sent

# Caller headers never forwarded: hop-by-hop, framing, and authentication (Relink's wins).
# Accept-Encoding is httpx's to set: it decodes what it asked for, nothing else.
DROPPED_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "accept-encoding",
    }
)
# Answer headers never returned: credentials (cookies, a rotated token), hop-by-hop, and those that
# describe the body as sent rather than as returned (httpx has decoded it; JSON is re-encoded).
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "set-cookie",
        "set-cookie2",
        "authorization",
        "proxy-authorization",
        "proxy-authenticate",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-encoding",
        "content-length",
    }
)
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,200}$")
HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]*$")
# An answer header named like this may carry a credential (X-Auth-Token, X-Api-Key, …): not returned.
CREDENTIAL_HEADER = re.compile(
    r"api[_-]?key|secret|token|passw(or)?d|authori[sz]ation|credential|cookie", re.IGNORECASE
)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
MAX_PATH_LENGTH = 4000


class PassthroughError(Exception):
    """Why a request was not forwarded, or got no answer; the message is for the caller and names
    no secret."""


class Refused(PassthroughError):
    """The request cannot be forwarded as asked: the caller's to fix (nothing was sent)."""


class TimedOut(PassthroughError):
    """The tool did not answer in time."""


class Failed(PassthroughError):
    """The tool could not be reached, refused Relink's own authentication, or answered too much."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    data: Any = NO_DATA
    response_as_base64: bool = False
    api_options: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    """The tool's answer as the reference returns it, with every credential masked."""

    url: str
    status: int
    headers: dict[str, str | list[str]]
    data: Any
    warnings: list[str] = field(default_factory=list)


def available_apis(provider: Provider) -> list[str]:
    """The `{tool}/{api}` identifiers of one tool."""
    return [f"{provider.id}/{api}" for api in provider.passthrough_apis]


def send(integration: Integration, tool: str, api: str, request: Request, secrets: list[str]) -> Answer:
    """Forward `request` to passthrough API `tool/api` of `integration` and return the answer.

    `secrets` (the caller's list) receives every credential value, and every value derived from
    one, before anything is sent, so the caller can mask them in its own logs whatever happens.
    Raises `Refused`, `TimedOut` or `Failed` (see the module docstring).
    """
    provider = integration.provider
    _check_api(integration, provider, tool, api)
    if not integration.enabled:
        raise Refused(
            "The integration is disabled (INACTIVE): Relink sends nothing to its tool. "
            "Enable it first (PUT /integrations/{integration_id}/enabled)."
        )
    path, query = split_path(request.path)
    forwarded_headers(request.headers, frozenset())  # checked before anything is sent

    credentials = _usable_credentials(integration, provider, secrets)
    target = _target(provider, api, credentials, secrets)
    url = build_url(target.base_url, path, query, request.params)
    # Relink's authentication wins: the caller's headers of the same names are not forwarded.
    headers, dropped = forwarded_headers(request.headers, frozenset(name.lower() for name in target.headers))
    headers.update(target.headers)
    return _forward(provider, url, headers, request, secrets, _warnings(integration, request, dropped))


# --- What may be called -------------------------------------------------------------------------


def _check_api(integration: Integration, provider: Provider, tool: str, api: str) -> None:
    if tool == integration.tool and api in provider.passthrough_apis:
        if not provider.is_available():
            raise Refused(f"{provider.label} is not served by this Relink installation.")
        return
    available = available_apis(provider)
    shown = replace_unusable(f"{tool}/{api}")[:120]
    offer = f"use {', '.join(available)}" if available else "it has no passthrough API in Relink"
    if tool != integration.tool:
        raise Refused(
            f"{shown} is not a passthrough API of this integration, which is a {provider.label} "
            f"integration ({integration.tool}): {offer}."
        )
    raise Refused(f"{shown} is not a passthrough API of {provider.label}: {offer}.")


def _warnings(integration: Integration, request: Request, dropped: list[str]) -> list[str]:
    warnings = []
    if dropped:
        warnings.append(
            f"Not forwarded: the header(s) {', '.join(dropped)}. Relink sets the tool's authentication "
            "itself and never forwards authentication, cookie or connection headers."
        )
    if request.api_options:
        warnings.append("api_options are not interpreted by Relink's passthrough and were ignored.")
    if integration.state == IntegrationState.INVALID:
        warnings.append(
            "The integration is INVALID: its authentication has kept failing, so the tool may refuse "
            "its credentials. Create a reconnection link (POST /integrations/{integration_id}/relink)."
        )
    return warnings


# --- The path and the URL -----------------------------------------------------------------------


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


def _fully_unquoted(text: str) -> str:
    """`text` percent-decoded until nothing changes (`%252e` is `%2e` is `.`)."""
    for _ in range(10):
        decoded = unquote(text)
        if decoded == text:
            return text
        text = decoded
    return text


def split_path(raw: str) -> tuple[str, str]:
    """The caller's `path` as (path, query), the path without its leading slashes; `Refused` if it
    could leave the base URL (see the module docstring) or is otherwise unusable."""
    if len(raw) > MAX_PATH_LENGTH:
        raise Refused(f"path: must be at most {MAX_PATH_LENGTH} characters long.")
    if _has_control(raw):
        raise Refused("path: must not contain control characters (such as a line break or a tab).")
    if SCHEME.match(raw) or raw.startswith("//"):
        raise Refused(
            "path: must be a path relative to the API's base URL (such as /company/employees), not an absolute URL."
        )
    path, _, query = raw.partition("?")
    if "#" in raw:
        raise Refused("path: must not contain a fragment (#); percent-encode it as %23 if it is part of the path.")
    if "\\" in path:
        raise Refused("path: must not contain backslashes.")
    if "@" in path:
        raise Refused("path: must not contain @ outside its query string; percent-encode it as %40 if needed.")
    decoded = _fully_unquoted(path)
    if _has_control(decoded) or "\\" in decoded:
        raise Refused("path: must not contain encoded control characters or backslashes.")
    for segment in decoded.split("/"):
        if segment.split(";", 1)[0] in (".", ".."):
            raise Refused(
                "path: must not contain . or .. segments (also percent-encoded): it stays under the base URL."
            )
    return path.lstrip("/"), query


def build_url(base_url: str, path: str, query: str, params: dict[str, str]) -> str:
    """The base URL, `/`, the path, and the path's query followed by `params`, as httpx sends it.
    Checked: it starts with the base URL and `/`."""
    if params:
        query = f"{query}&{urlencode(params)}" if query else urlencode(params)
    base = str(httpx.URL(base_url.rstrip("/")))
    try:
        url = str(httpx.URL(f"{base}/{path}" + (f"?{query}" if query else "")))
    except httpx.InvalidURL:
        raise Refused("path: not a valid URL path.") from None
    if not url.startswith(base + "/"):
        raise Refused("path: must stay under the API's base URL.")
    return url


# --- Headers ------------------------------------------------------------------------------------


def forwarded_headers(headers: dict[str, str], auth_names: frozenset[str]) -> tuple[dict[str, str], list[str]]:
    """The caller's headers Relink forwards, and the names of those it does not (as sent): never
    `DROPPED_REQUEST_HEADERS`, nor those the tool's authentication sets (`auth_names`, lower case)."""
    forwarded, dropped = {}, []
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise Refused(f"headers: {replace_unusable(name)[:80]!r} is not a valid header name.")
        if not HEADER_VALUE.match(value):
            raise Refused(
                f"headers: the value of {name} must be printable ASCII (no line breaks or other control characters)."
            )
        if name.lower() in DROPPED_REQUEST_HEADERS or name.lower() in auth_names:
            dropped.append(name)
        else:
            forwarded[name] = value.strip(" \t")  # HTTP allows no whitespace around a value
    return forwarded, dropped


def _credential_bearing(name: str) -> bool:
    """An answer header that may carry a credential: never returned."""
    return name in DROPPED_RESPONSE_HEADERS or CREDENTIAL_HEADER.search(name) is not None


def _header_secrets(value: str) -> list[str]:
    """An authentication header's value and its credentials part (`Bearer <token>`)."""
    return [value, value.partition(" ")[2].strip()]


# --- Credentials --------------------------------------------------------------------------------


def credential_secrets(provider: Provider, credentials: dict[str, Any]) -> list[str]:
    """The secret values of stored credentials: the tool's secret fields and anything named like a
    secret (OAuth tokens)."""
    names = provider.secret_field_names()
    return [
        value
        for key, value in credentials.items()
        if isinstance(value, str) and value and (key in names or is_secret_name(str(key)))
    ]


def _usable_credentials(integration: Integration, provider: Provider, secrets: list[str]) -> dict[str, Any]:
    """The stored credentials, refreshed first (under the integration's row lock, and stored) when
    the tool says they must be (integrations.credentials); their secret values join `secrets`."""
    secrets.extend(credential_secrets(provider, integration.get_credentials()))
    try:
        credentials = usable_credentials(integration, provider)
    except ProviderAuthFailed as exc:
        raise Failed(
            f"{provider.label} refused to refresh the integration's access token ({_detail(exc)}); "
            "the customer may need to reconnect the integration."
        ) from None
    except ProviderError as exc:
        if isinstance(exc.__cause__, httpx.TimeoutException):
            raise TimedOut(f"{provider.label} did not answer the token refresh in time.") from None
        raise Failed(f"{provider.label} could not refresh the integration's access token ({_detail(exc)}).") from None
    secrets.extend(credential_secrets(provider, credentials))
    return credentials


def _not_encodable(provider: Provider) -> str:
    return f"The integration's credentials hold characters that cannot be sent to {provider.label}."


def _detail(exc: Exception) -> str:
    """A provider error's message, which names no credential (integrations.providers.rest)."""
    return replace_unusable(str(exc))[:300] or type(exc).__name__


def _target(provider: Provider, api: str, credentials: dict[str, Any], secrets: list[str]) -> PassthroughTarget:
    try:
        target = provider.passthrough_target(api, credentials)
    except httpx.TimeoutException:
        raise TimedOut(f"{provider.label} did not answer Relink's authentication request in time.") from None
    except httpx.TransportError as exc:
        raise Failed(f"{provider.label} could not be reached for authentication ({type(exc).__name__}).") from None
    except (RequestNotEncodable, httpx.LocalProtocolError):  # the caller's headers were checked: the credentials
        raise Failed(
            f"The integration's credentials hold characters that cannot be sent to {provider.label} "
            "(or are empty); the customer may need to reconnect the integration."
        ) from None
    except ProviderAuthFailed as exc:
        raise Failed(f"{provider.label} refused the integration's credentials ({_detail(exc)}).") from None
    except ProviderError as exc:
        raise Failed(f"{provider.label} could not authenticate the request ({_detail(exc)}).") from None
    secrets.extend(target.secrets)
    for value in target.headers.values():
        secrets.extend(_header_secrets(value))
    return target


# --- Sending and the answer ---------------------------------------------------------------------


def _body(request: Request) -> dict[str, Any]:
    """httpx arguments for the body: objects and arrays (and other JSON values) as JSON, a string raw."""
    if request.data is NO_DATA:
        return {}
    if isinstance(request.data, str):
        return {"content": request.data.encode("utf-8")}
    return {"json": request.data}


def _forward(
    provider: Provider,
    url: str,
    headers: dict[str, str],
    request: Request,
    secrets: list[str],
    warnings: list[str],
) -> Answer:
    try:
        with provider_client() as client:
            with client.stream(request.method, url, headers=headers, **_body(request)) as response:
                content = _read_capped(response, provider)
    except httpx.TimeoutException:
        raise TimedOut(f"{provider.label} did not answer within {settings.PROVIDER_HTTP_TIMEOUT:g} seconds.") from None
    except (RequestNotEncodable, httpx.LocalProtocolError):  # the caller's headers were checked: the credentials
        raise Failed(
            f"The integration's credentials hold characters that cannot be sent to {provider.label} "
            "(or are empty); the customer may need to reconnect the integration."
        ) from None
    except httpx.HTTPError as exc:  # connection refused or reset, DNS, a body that cannot be decoded
        raise Failed(f"{provider.label} could not be reached ({type(exc).__name__}).") from None

    answer_headers: dict[str, str | list[str]] = {}
    for name, value in response.headers.multi_items():
        if _credential_bearing(name):
            secrets.extend(_header_secrets(value))  # e.g. Personio's rotated token: masked in the body too
            continue
        existing = answer_headers.get(name)
        if existing is None:
            answer_headers[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            answer_headers[name] = [existing, value]

    hidden = _masking_list(secrets)
    return Answer(
        url=mask(url, hidden),
        status=response.status_code,
        headers=_masked(answer_headers, hidden),
        data=_data(response, content, request.response_as_base64, hidden),
        warnings=warnings,
    )


def _read_capped(response: httpx.Response, provider: Provider) -> bytes:
    limit = MAX_RESPONSE_BYTES
    shown = f"{limit // 2**20} MB" if limit % 2**20 == 0 else f"{limit} bytes"
    too_large = Failed(
        f"{provider.label}'s answer is larger than {shown}, more than Relink passes through; ask for less "
        "(a smaller page, fewer fields)."
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES and not response.headers.get("content-encoding"):
        raise too_large
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _masking_list(secrets: list[str]) -> list[str]:
    """The secrets worth masking (as the request log does: not those too short to be one), longest first."""
    return sorted({s for s in secrets if s and len(s) >= MIN_MASKED_LENGTH}, key=len, reverse=True)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.endswith("/json") or media.endswith("+json")


class _TooDeep(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _data(response: httpx.Response, content: bytes, as_base64: bool, secrets: list[str]) -> Any:
    """The body as the reference returns it: base64 if asked, parsed JSON, else text."""
    if as_base64:
        for secret in secrets:
            content = content.replace(secret.encode("utf-8"), REDACTED.encode())
        return base64.b64encode(content).decode("ascii")
    text = _text(response, content)
    if _is_json(response.headers.get("content-type", "")):
        try:
            return _masked(json.loads(text, parse_constant=_reject_constant), secrets)
        except (ValueError, RecursionError, _TooDeep):
            pass  # not JSON after all, or too deep to return as such: as text
    return mask(text, secrets)


def _text(response: httpx.Response, content: bytes) -> str:
    encoding = response.charset_encoding or "utf-8"
    try:
        return content.decode(encoding, errors="replace")
    except LookupError:  # a charset Python does not know
        return content.decode("utf-8", errors="replace")


def _masked(value: Any, secrets: list[str], depth: int = 0) -> Any:
    """A copy of decoded JSON with every secret masked in its strings, keys included."""
    if depth > MAX_JSON_DEPTH:
        raise _TooDeep
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {mask(str(key), secrets): _masked(item, secrets, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, secrets, depth + 1) for item in value]
    return value
