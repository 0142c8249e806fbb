"""The provider interface every tool adapter implements, and the registry of tools.

A tool declares what it needs from the end customer (its credential fields, which of them are
secret), which data models it can read and the permission each model and field needs, and two
operations: `check_auth(credentials)` and `fetch_pages(model, credentials, fields, since=None)`,
which yields a model's records page by page as the tool's API pages them (a sync writes each page
before the next is read, so its memory does not grow with the company), only those changed after
`since` for the models in `delta_models`. `fetch` (every page, as one list) and `probe` (the first
small page: what the hosted connect page reads) are built on it.

For the passthrough API (`POST /v1/passthrough/{tool}/{api}`, integrations.passthrough) a tool
declares its own APIs a request may be forwarded to (`passthrough_apis`) and builds, for one of
them, its base URL and the headers that authenticate a request with stored credentials
(`passthrough_target`), the way its adapter authenticates its own calls. A tool whose credentials
must be refreshed before use (OAuth) says so (`needs_refresh`) and refreshes them (`refresh`).

It also names the upstream account its credentials reach (`account_of`, usually read from the
auth check's own answer): the connect flow records it at the first connection and refuses a
reconnect whose credentials reach another account (connect_flow.links).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


class Category(enum.StrEnum):
    HRIS = "HRIS"
    ATS = "ATS"


class AuthType(enum.StrEnum):
    API_KEY = "API_KEY"
    BASIC = "BASIC"
    OAUTH2 = "OAUTH2"


class Outcome(enum.StrEnum):
    """Result of one authentication check (DESIGN "Integration state")."""

    OK = "OK"
    AUTH_FAILED = "AUTH_FAILED"  # credentials rejected: 401, invalid key, OAuth refresh refused
    UNAVAILABLE = "UNAVAILABLE"  # the provider's problem: timeout, connection error, 5xx, 429


@dataclass(frozen=True)
class CredentialField:
    name: str
    label: str
    secret: bool = True
    help_text: str = ""


@dataclass(frozen=True)
class DataModel:
    """A readable model, e.g. `hris_employees`, with the permission it and each field need."""

    name: str
    label: str
    permission: str
    fields: dict[str, str] = field(default_factory=dict)  # field name -> permission it needs


@dataclass(frozen=True)
class UpstreamAccount:
    """The account at the tool that credentials reach: the customer's company or tenant.

    `id` is stable and unique at the tool (a company id, a subdomain); `label` is for people
    (a company name), may change and is never compared.
    """

    id: str
    label: str = ""

    def __post_init__(self) -> None:
        # Stored in Integration.upstream_account / upstream_account_label (200 characters each).
        object.__setattr__(self, "id", str(self.id)[:200])
        object.__setattr__(self, "label", str(self.label)[:200])

    def __str__(self) -> str:
        return f"{self.label} ({self.id})" if self.label and self.label != self.id else self.id


@dataclass
class Page:
    """One page of a model's records as the tool answered them, cut down to the requested fields."""

    rows: list[dict[str, Any]]


# How many records `Provider.probe` asks for: enough to see which fields the tool returns, few
# enough that the answer costs the same for 50 or 50,000 employees.
PROBE_PAGE_SIZE = 20


@dataclass
class AuthResult:
    outcome: Outcome
    http_status: int | None = None
    error_code: str = ""
    message: str = ""
    # New credentials to store (e.g. refreshed OAuth tokens); None when nothing changed.
    updated_credentials: dict[str, Any] | None = None
    # The upstream account the credentials reach, when the check's answer names it (OK checks only).
    account: UpstreamAccount | None = None


@dataclass(frozen=True)
class PassthroughTarget:
    """Where a passthrough request goes and how it is authenticated.

    `base_url` has no trailing slash: the caller's path is appended after a `/`. `headers` are the
    authentication headers, set over whatever the caller sent. `secrets` are values derived from
    the credentials (a session token) that must never be shown to the caller; the header values
    and the credentials' own secrets are masked anyway.
    """

    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


class ProviderError(Exception):
    """A fetch failed; `outcome` says whose fault it was."""

    outcome: ClassVar[Outcome] = Outcome.UNAVAILABLE

    def __init__(self, message: str, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


class ProviderUnavailable(ProviderError):
    outcome = Outcome.UNAVAILABLE


class ProviderAuthFailed(ProviderError):
    outcome = Outcome.AUTH_FAILED


class ModelPermissionDenied(ProviderError):
    """The credentials are valid but may not read this model (HTTP 403)."""

    outcome = Outcome.OK

    def __init__(self, model: str, permission: str, http_status: int | None = 403):
        super().__init__(f"permission {permission!r} for {model} not granted", http_status)
        self.model = model
        self.permission = permission


class Provider:
    id: ClassVar[str]
    label: ClassVar[str]
    category: ClassVar[Category]
    auth_type: ClassVar[AuthType]
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    models: ClassVar[tuple[DataModel, ...]] = ()
    # Models whose reads honour `since` (the tool documents an updated-after filter): a DELTA sync
    # reads only their records changed since its previous read. Other models are read in full.
    delta_models: ClassVar[frozenset[str]] = frozenset()
    # The tool's own APIs a passthrough request may reach: api id -> what it is and its base URL
    # (`{tool}/{api}` as the reference API names them, where it does).
    passthrough_apis: ClassVar[dict[str, str]] = {}

    def check_auth(self, credentials: dict[str, Any]) -> AuthResult:
        raise NotImplementedError

    def fetch_pages(
        self,
        model: str,
        credentials: dict[str, Any],
        fields: list[str],
        since: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """The model's records, one `Page` per request, in the tool's own paging (a tool that
        documents no paging yields its one answer as one page).

        `since`: only records changed after it (models in `delta_models`; others ignore it and
        yield everything). `page_size`: ask for pages this small (the tool's default or maximum
        otherwise). Raises `ModelPermissionDenied` for a model the credentials may not read,
        `ProviderAuthFailed` / `ProviderUnavailable` otherwise — possibly after some pages were
        yielded: the caller must not take a read that raised as complete.
        """
        raise NotImplementedError

    def fetch(self, model: str, credentials: dict[str, Any], fields: list[str]) -> list[dict[str, Any]]:
        """Every record of the model, as one list (all pages): for small reads and tests; syncs
        stream `fetch_pages`."""
        return [row for page in self.fetch_pages(model, credentials, fields) for row in page.rows]

    def probe(self, model: str, credentials: dict[str, Any], fields: list[str]) -> list[dict[str, Any]]:
        """The first small page of the model (one request, PROBE_PAGE_SIZE records where the tool
        pages): what the hosted connect page reads to see that the credentials may read the model
        and which requested fields the tool returns, in about the same time whatever the size of
        the company. A tool that documents no paging answers its one page, whole."""
        pages = self.fetch_pages(model, credentials, fields, page_size=PROBE_PAGE_SIZE)
        try:
            first = next(iter(pages), None)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()  # a generator stops here: no second request
        return first.rows if first is not None else []

    def account_of(self, credentials: dict[str, Any], checked: AuthResult) -> UpstreamAccount | None:
        """The upstream account credentials that just passed `check_auth` reach (`checked` is
        that check's result, `credentials` the ones it may have refreshed).

        By default what the check's answer named (`AuthResult.account`); a tool whose check call
        names no account overrides this with the cheapest call that does. None when the tool
        cannot tell (then nothing is recorded and no reconnect is refused). May raise
        `ProviderError` when the tool cannot answer.
        """
        return checked.account

    def same_account(self, recorded: str, account: UpstreamAccount, credentials: dict[str, Any]) -> bool:
        """Whether `account` (what the new `credentials` reach) is the account recorded as
        `recorded` at an earlier connection. Equal ids by default; a tool whose identity signal is
        indirect may look further (may raise `ProviderError`)."""
        return account.id == recorded

    def passthrough_target(self, api: str, credentials: dict[str, Any]) -> PassthroughTarget:
        """The base URL of the passthrough API `api` (a key of `passthrough_apis`) and the headers
        authenticating a request to it with `credentials`, as the adapter's own calls are.

        May call the tool (e.g. to exchange the credentials for a session token): raises
        `ProviderAuthFailed` when it refuses them, `ProviderUnavailable` when it cannot answer, and
        lets httpx's `TransportError` and `RequestNotEncodable` through.
        """
        raise NotImplementedError

    def needs_refresh(self, credentials: dict[str, Any]) -> bool:
        """Whether `credentials` must be refreshed (`refresh`) before a request is made with them:
        an OAuth access token that is expired or about to expire. Never, by default."""
        return False

    def refresh(self, credentials: dict[str, Any]) -> dict[str, Any]:
        """New credentials in place of `credentials`, which the caller must store at once (a
        refresh token may be rotated: the old one stops working). Raises `ProviderAuthFailed` when
        the tool refuses the refresh, `ProviderUnavailable` when it cannot answer."""
        raise NotImplementedError(f"{self.label} credentials are not refreshed")

    @classmethod
    def is_available(cls) -> bool:
        """False for a tool this deployment does not serve (the sandbox tools with
        SANDBOX_ENABLED off): it is offered for no new connection."""
        return True

    @classmethod
    def secret_field_names(cls) -> set[str]:
        return {f.name for f in cls.credential_fields if f.secret}

    @classmethod
    def get_model(cls, name: str) -> DataModel | None:
        return next((m for m in cls.models if m.name == name), None)

    @classmethod
    def model_spec(cls, name: str) -> DataModel:
        """The model a fetch was asked for; LookupError if this tool has no such model."""
        spec = cls.get_model(name)
        if spec is None:
            raise LookupError(f"{cls.label} has no model {name!r}")
        return spec

    @classmethod
    def withheld_fields(cls, model: str, fields: list[str], rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """(field, permission) for each requested field missing from every returned record.

        Many tools answer 200 and silently drop a field the credentials may not read (salary
        without a compensation permission) rather than refusing the request. No records, no
        verdict: an empty list proves nothing.
        """
        present: set[str] = set()
        for row in rows:
            present.update(row)
        return cls.withheld_of(model, fields, present, bool(rows))

    @classmethod
    def withheld_of(cls, model: str, fields: list[str], present: set[str], any_rows: bool) -> list[tuple[str, str]]:
        """`withheld_fields` from what a streamed read saw: the union of the keys of its records
        (`present`) and whether it read any (`any_rows`)."""
        data_model = cls.get_model(model)
        if not any_rows or data_model is None:
            return []
        return [(f, data_model.fields.get(f, data_model.permission)) for f in fields if f not in present]


class OAuthProvider(Provider):
    """A tool whose customers grant access through OAuth2's authorization-code flow: the hosted
    connect page redirects to `authorize_url`, the callback exchanges the code it receives."""

    auth_type = AuthType.OAUTH2

    @classmethod
    def authorize_url(cls, redirect_uri: str, state: str, scopes: Iterable[str] | None = None) -> str:
        """Where to send the customer to grant access, coming back to `redirect_uri` with `state`."""
        raise NotImplementedError

    @classmethod
    def exchange_code(cls, code: str, redirect_uri: str) -> dict[str, Any]:
        """The credentials to store for the code the callback received.

        Raises ProviderAuthFailed when the code is refused (wrong, used, expired) and
        ProviderUnavailable when the tool cannot answer.
        """
        raise NotImplementedError

    @classmethod
    def revoke_grant(cls, credentials: dict[str, Any]) -> bool:
        """Revoke, at the tool, the grant these credentials hold (a reconnect replaced it, or a
        refused attempt will never use it): True when the tool confirmed.

        False when the tool offers no revocation: the grant is then only forgotten (Relink drops
        its tokens). Raises `ProviderError` when the tool could not be reached.
        """
        return False


REGISTRY: dict[str, Provider] = {}


def register(cls: type[Provider]) -> type[Provider]:
    """Class decorator: make a tool available by its id (form choices and dispatch share this)."""
    REGISTRY[cls.id] = cls()
    return cls


def get_provider(tool_id: str) -> Provider:
    try:
        return REGISTRY[tool_id]
    except KeyError:
        raise LookupError(f"Unknown tool {tool_id!r}") from None


def tool_choices() -> list[tuple[str, str]]:
    return [(p.id, p.label) for p in REGISTRY.values()]


def providers_of_category(category: str) -> list[Provider]:
    """The tools of one category (e.g. "HRIS") this deployment serves, by label."""
    return sorted(
        (p for p in REGISTRY.values() if p.category.value == category and p.is_available()),
        key=lambda p: p.label.lower(),
    )
