"""The fake HR system: an admin page per company (API keys, connected apps), a small JSON API
and an OAuth 2.0 authorization server.

The admin pages need a signed-in Relink user and go through sandbox.access: a company is seen
by the members of its environment and by staff, changed by its editors and owners and by staff,
and is a 404 for everyone else. The JSON API authenticates with a company's API key or an OAuth
access token as a bearer token and answers 401 for an unknown, expired or revoked one, like a
real HR system.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from integrations.lib import shown_once
from integrations.lib.tokens import hash_secret

from .access import (
    MANAGE_ROLE,
    environments_to_create_in,
    get_company_access,
    get_environment_to_create_in,
    manageable_companies,
    visible_companies,
)
from .models import (
    ACCESS_TOKEN_PREFIX,
    ALL_PERMISSIONS,
    SandboxAccessToken,
    SandboxApiKey,
    SandboxAuthorizationCode,
    SandboxCompany,
    SandboxEmployee,
    SandboxOAuthClient,
    SandboxOAuthGrant,
    access_token_validity,
)

# Who is calling the JSON API: an API key or an OAuth grant; both carry a company and permissions.
Caller = SandboxApiKey | SandboxOAuthGrant


@never_cache
@login_required
def companies(request: HttpRequest) -> HttpResponse:
    rows = (
        visible_companies(request)
        .select_related("environment")
        .annotate(
            employee_count=Count("employees", distinct=True),
            active_key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
        )
        .order_by("name")
    )
    ctx = {"companies": rows, "create_environments": environments_to_create_in(request)}
    return render(request, "sandbox/companies.html", ctx)


@login_required
@require_POST
def create_company(request: HttpRequest) -> HttpResponse:
    """A new, empty company in an environment where the user is at least an editor (or staff)."""
    environment = get_environment_to_create_in(request, request.POST.get("environment", ""))
    name = " ".join(request.POST.get("name", "").split())[:200]
    slug = slugify(name)[:200]
    if not slug:
        messages.error(request, "Give the new company a name with at least one letter or digit.")
        return redirect("sandbox:companies")
    # Names and slugs are unique across environments; the message does not say whose it is.
    taken = "That name is not available: choose another one."
    if SandboxCompany.objects.filter(Q(name=name) | Q(slug=slug)).exists():
        messages.error(request, taken)
        return redirect("sandbox:companies")
    try:
        with transaction.atomic():
            created = SandboxCompany.objects.create(name=name, slug=slug, environment=environment)
    except IntegrityError:  # created by someone else a moment ago
        messages.error(request, taken)
        return redirect("sandbox:companies")
    messages.success(request, f"{created.name} created in {environment.name}.")
    return redirect("sandbox:company", slug=created.slug)


# A key created a moment ago waits in the session (encrypted, server-side) for the one page view
# that shows it: Post/Redirect/Get, so reloading never mints a second key.
NEW_KEY_SLOT = "sandbox_key"


def _remember_new_key(request: HttpRequest, key: SandboxApiKey, raw: str) -> None:
    shown_once.keep(request.session, NEW_KEY_SLOT, key.company_id, key.pk, raw)


def _pop_new_key(request: HttpRequest, company: SandboxCompany) -> dict[str, object] | None:
    """The key created a moment ago for this company, shown once; never on another company's page."""
    pending = shown_once.take(request.session, NEW_KEY_SLOT, company.pk)
    if pending is None:
        return None
    key_id, raw = pending
    key = company.api_keys.filter(pk=key_id).first() if isinstance(key_id, int) else None
    return {"raw": raw, "key": key} if key is not None else None


@never_cache  # the page right after creating a key holds its raw value: no cache may keep it
@login_required
def company(request: HttpRequest, slug: str) -> HttpResponse:
    access = get_company_access(request, slug)
    found = access.company
    ctx = {
        "company": found,
        "can_manage": access.can_manage,
        "keys": found.api_keys.defer("key_hash"),
        "grants": found.oauth_grants.select_related("client").defer("refresh_token_hash"),
        "employees": found.employees.all(),
        "all_permissions": ALL_PERMISSIONS,
        # A key created a moment ago is shown once, straight after the redirect.
        "new_key": _pop_new_key(request, found),
    }
    return render(request, "sandbox/company.html", ctx)


@login_required
@require_POST
def create_key(request: HttpRequest, slug: str) -> HttpResponse:
    found = get_company_access(request, slug, MANAGE_ROLE).company
    permissions = [p for p in request.POST.getlist("permissions") if p in ALL_PERMISSIONS]
    if not permissions:
        messages.error(request, "Choose at least one permission for the new key.")
        return redirect("sandbox:company", slug=found.slug)
    key, raw = found.create_key(label=request.POST.get("label", "")[:100], permissions=permissions)
    _remember_new_key(request, key, raw)
    return redirect("sandbox:company", slug=found.slug)


@login_required
@require_POST
def revoke_key(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    found = get_company_access(request, slug, MANAGE_ROLE).company
    key = get_object_or_404(SandboxApiKey.objects.defer("key_hash"), pk=key_id, company=found)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        messages.success(request, f"Key {key.prefix}… revoked.")
    return redirect("sandbox:company", slug=found.slug)


@login_required
@require_POST
def revoke_grant(request: HttpRequest, slug: str, grant_id: int) -> HttpResponse:
    found = get_company_access(request, slug, MANAGE_ROLE).company
    grant = get_object_or_404(SandboxOAuthGrant.objects.select_related("client"), pk=grant_id, company=found)
    if grant.revoke():
        messages.success(request, f"Access for {grant.client.name} revoked.")
    return redirect("sandbox:company", slug=found.slug)


# --- JSON API ------------------------------------------------------------------------------


def _error(status: int, code: str, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, **extra}}, status=status)


def _find_caller(raw: str) -> Caller | None:
    """The API key or, for an OAuth access token (told apart by its prefix), its grant."""
    if raw.startswith(ACCESS_TOKEN_PREFIX):
        token = SandboxAccessToken.objects.find_valid(raw)
        return token.grant if token is not None else None
    return SandboxApiKey.objects.find_active(raw)


def _unauthorized(raw: str) -> JsonResponse:
    if raw.startswith(ACCESS_TOKEN_PREFIX):
        response = _error(401, "INVALID_ACCESS_TOKEN", "The access token is unknown, expired or revoked.")
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    return _error(401, "INVALID_API_KEY", "The API key is unknown or has been revoked.")


def api_key_required(permission: str | None = None) -> Callable:
    """Authenticate the bearer (API key or OAuth access token) and check one permission."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            auth = request.headers.get("Authorization", "")
            raw = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            caller = _find_caller(raw) if raw else None
            if caller is None:
                return _unauthorized(raw)
            if permission and permission not in caller.permissions:
                holder = "API key" if isinstance(caller, SandboxApiKey) else "access token"
                return _error(
                    403,
                    "PERMISSION_DENIED",
                    f"This {holder} lacks the permission {permission}.",
                    required_permission=permission,
                )
            return view(request, caller, *args, **kwargs)

        return wrapper

    return decorator


@require_GET
@api_key_required()
def api_me(request: HttpRequest, caller: Caller) -> JsonResponse:
    """Who is calling: the company the key or grant belongs to (its stable id and its name) and
    what it may read. The sandbox adapters take `company_id` as the upstream account."""
    company = caller.company
    data = {"company": company.name, "company_id": company.account_id, "permissions": caller.permissions}
    return JsonResponse({"data": data})


# Lists page like Personio's (the tool Sandbox HR stands for): `limit` records (50 when absent, at
# most 100) from `offset` (the first record to return), in id order, with Personio's `metadata`
# block; `updated_after` (ISO 8601, naive is UTC) keeps the records changed after it.
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 100


@dataclass(frozen=True)
class _ListQuery:
    limit: int
    offset: int
    updated_after: datetime | None


def _list_query(request: HttpRequest) -> _ListQuery | JsonResponse:
    """The paging and filter parameters, or the 400 answering bad ones."""
    try:
        limit = int(request.GET.get("limit", DEFAULT_PAGE_LIMIT))
        offset = int(request.GET.get("offset", 0))
    except ValueError:
        return _error(400, "INVALID_PARAMETER", "limit and offset must be integers.")
    if not 1 <= limit <= MAX_PAGE_LIMIT or offset < 0:
        return _error(400, "INVALID_PARAMETER", f"limit must be 1 to {MAX_PAGE_LIMIT} and offset 0 or more.")
    raw = request.GET.get("updated_after")
    updated_after = None
    if raw is not None:
        try:
            updated_after = parse_datetime(raw)
        except ValueError:
            updated_after = None
        if updated_after is None:
            return _error(400, "INVALID_PARAMETER", "updated_after must be an ISO 8601 date-time.")
        if timezone.is_naive(updated_after):
            updated_after = updated_after.replace(tzinfo=UTC)
    return _ListQuery(limit, offset, updated_after)


def _list_page(rows: list[dict[str, object]], query: _ListQuery, total: int) -> JsonResponse:
    metadata = {
        "total_elements": total,
        "current_page": query.offset // query.limit,
        "total_pages": -(-total // query.limit),
    }
    body = {"success": True, "metadata": metadata, "offset": query.offset, "limit": query.limit, "data": rows}
    return JsonResponse(body)


@require_GET
@api_key_required("employees:read")
def api_employees(request: HttpRequest, caller: Caller) -> JsonResponse:
    query = _list_query(request)
    if isinstance(query, JsonResponse):
        return query
    columns = ["id", "first_name", "last_name", "email", "department"]
    if "compensation:read" in caller.permissions:
        columns.append("salary")
    employees = SandboxEmployee.objects.filter(company_id=caller.company_id)
    if query.updated_after is not None:
        employees = employees.filter(updated_at__gt=query.updated_after)
    total = employees.count()
    rows = list(employees.order_by("pk").values(*columns)[query.offset : query.offset + query.limit])
    for row in rows:
        row["id"] = str(row["id"])
    return _list_page(rows, query, total)


@require_GET
@api_key_required("absences:read")
def api_absences(request: HttpRequest, caller: Caller) -> JsonResponse:
    # The sandbox keeps no absences yet; the endpoint exists so permission checks (and paging) are real.
    query = _list_query(request)
    if isinstance(query, JsonResponse):
        return query
    return _list_page([], query, 0)


# --- OAuth 2.0 authorization server (RFC 6749, authorization code grant) ------------------------

_AUTHORIZE_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state")


def _with_query(url: str, params: dict[str, str]) -> str:
    """Add params to a redirect URI, keeping the query it already has (RFC 6749 §3.1.2)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _back_to_client(redirect_uri: str, state: str, **params: str) -> HttpResponseRedirect:
    if state:
        params["state"] = state
    return HttpResponseRedirect(_with_query(redirect_uri, params))


def _authorize_refused(request: HttpRequest, reason: str) -> HttpResponse:
    """Shown instead of redirecting: an unverified client or redirect URI must never receive a code."""
    return render(request, "sandbox/oauth_error.html", {"reason": reason}, status=400)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def oauth_authorize(request: HttpRequest) -> HttpResponse:
    """GET shows the consent page; POST (the HR admin's answer) redirects back with a code or an error."""
    data = request.GET if request.method == "GET" else request.POST
    params = {name: data.get(name, "") for name in _AUTHORIZE_PARAMS}
    client = SandboxOAuthClient.find(params["client_id"]) if params["client_id"] else None
    if client is None:
        return _authorize_refused(request, "The application asking for access is not registered (unknown client_id).")
    if not client.allows_redirect(params["redirect_uri"]):
        return _authorize_refused(request, "The redirect_uri is not registered for this application.")
    redirect_uri, state = params["redirect_uri"], params["state"]
    if params["response_type"] != "code":
        return _back_to_client(redirect_uri, state, error="unsupported_response_type")
    scopes = list(dict.fromkeys(params["scope"].split())) or list(ALL_PERMISSIONS)
    if not set(scopes) <= set(ALL_PERMISSIONS):
        return _back_to_client(redirect_uri, state, error="invalid_scope")
    params["scope"] = " ".join(scopes)

    company = None
    if request.method == "POST":
        if request.POST.get("decision") != "allow":
            return _back_to_client(redirect_uri, state, error="access_denied")
        # Only a company the signed-in HR admin may change (another environment's reads as unknown).
        company = manageable_companies(request).filter(slug=request.POST.get("company", "")).first()
        if company is not None:
            code = SandboxAuthorizationCode.issue(client, company, redirect_uri, scopes)
            return _back_to_client(redirect_uri, state, code=code)
        messages.error(request, "Choose the company to connect.")
    ctx = {
        "client": client,
        "params": params,
        "scopes": scopes,
        "companies": manageable_companies(request).order_by("name"),
        "redirect_host": urlsplit(redirect_uri).netloc,
    }
    return render(request, "sandbox/oauth_authorize.html", ctx)


def _token_error(status: int, error: str, description: str) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="sandbox"'
    return response


def _client_credentials(request: HttpRequest) -> tuple[str, str]:
    """HTTP Basic, whose parts are form-encoded (RFC 6749 §2.3.1), or client_id/client_secret fields."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Basic "):
        return request.POST.get("client_id", ""), request.POST.get("client_secret", "")
    try:
        decoded = base64.b64decode(auth.removeprefix("Basic ").strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


def _authenticate_client(request: HttpRequest) -> SandboxOAuthClient | None:
    client_id, secret = _client_credentials(request)
    client = SandboxOAuthClient.find(client_id) if client_id else None
    return client if client is not None and client.check_secret(secret) else None


def _token_response(grant: SandboxOAuthGrant, refresh_token: str) -> JsonResponse:
    _, access_token = grant.issue_access_token()
    response = JsonResponse(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": int(access_token_validity().total_seconds()),
            "refresh_token": refresh_token,
            "scope": " ".join(grant.permissions),
        }
    )
    response["Pragma"] = "no-cache"
    return response


@csrf_exempt
@never_cache
@require_POST
def oauth_token(request: HttpRequest) -> JsonResponse:
    """Exchange a code, or a refresh token (rotated on every use), for a new access token."""
    client = _authenticate_client(request)
    if client is None:
        return _token_error(401, "invalid_client", "Client authentication failed.")
    grant_type = request.POST.get("grant_type", "")
    if grant_type == "authorization_code":
        issued = SandboxAuthorizationCode.redeem(
            client, request.POST.get("code", ""), request.POST.get("redirect_uri", "")
        )
    elif grant_type == "refresh_token":
        issued = SandboxOAuthGrant.rotate_refresh_token(client, request.POST.get("refresh_token", ""))
    else:
        return _token_error(400, "unsupported_grant_type", "Use authorization_code or refresh_token.")
    if issued is None:
        return _token_error(
            400, "invalid_grant", "The authorization code or refresh token is invalid, expired, used or revoked."
        )
    return _token_response(*issued)


@csrf_exempt
@never_cache
@require_POST
def oauth_revoke(request: HttpRequest) -> HttpResponse:
    """Token revocation (RFC 7009): the client says it no longer needs a token.

    A refresh token revokes its grant, and with it every access token the grant issued (§2.1); an
    access token ends that token only. The token is looked up among the authenticated client's
    whatever `token_type_hint` says. An unknown, expired or already revoked token, or another
    client's, answers 200 like a revoked one: the client could do nothing with an error (§2.2).
    """
    client = _authenticate_client(request)
    if client is None:
        return _token_error(401, "invalid_client", "Client authentication failed.")
    raw = request.POST.get("token", "")
    if not raw:
        return _token_error(400, "invalid_request", "The token to revoke is missing.")
    if raw.startswith(ACCESS_TOKEN_PREFIX):
        SandboxAccessToken.objects.filter(token_hash=hash_secret(raw), grant__client=client).delete()
    else:
        grant = SandboxOAuthGrant.objects.filter(client=client, refresh_token_hash=hash_secret(raw)).first()
        if grant is not None:
            grant.revoke()
    response = HttpResponse(status=200)
    response["Pragma"] = "no-cache"
    return response
