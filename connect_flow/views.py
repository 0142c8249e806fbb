"""The hosted end-customer pages: `/connect/<token>/` (GET shows, POST acts) and the OAuth callback.

GET never changes anything but `opened_at` (mail scanners fetch links); only the customer's POST
verifies credentials and completes the link, through the domain functions in `links`.

No cookies, no session. An EMBEDDED link runs in a cross-site iframe, and browsers do not send
cookies there (SameSite defaults, third-party cookie blocking, storage partitioning). So neither
Django's cookie-based CSRF protection nor session-stored OAuth state can work in that iframe; all
state the flow needs travels with the request instead:

- the link token in the URL: 256 random bits only the customer was given, the capability itself;
- a signed form token in a hidden field (`signed.form_token`), in place of the CSRF cookie;
- a signed OAuth `state` (`signed.oauth_state`), in place of a session entry.

Every response carries `Referrer-Policy: no-referrer` (the token in the URL must not leak to the
provider's consent page or anywhere else), `Cache-Control: no-store`, and a frame policy: an
EMBEDDED link's pages may be framed by the environment's allowed origins only, everything else by
nobody (headers.py).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from integrations import requestlogs
from integrations.health import HealthPolicy
from integrations.lib.redaction import REDACTED
from integrations.lib.tokens import random_id
from integrations.models import RequestLog
from integrations.providers import REGISTRY, get_provider, providers_of_category
from integrations.providers.base import OAuthProvider, Provider
from integrations.scopes import Permission, ScopeSpec, effective_scope_config, permissions_needed

from . import links, signed
from .forms import ConnectForm, optional_items
from .headers import ViewResult, connect_view, frame_origins
from .models import LIVE_STATUSES, ConnectionLink, LinkKind, LinkStatus, LinkType

# Request logs name the page, never the token (it would let anyone reading logs use the link).
LOG_PATH = "/connect/<token>/"


def _callback_url() -> str:
    """The redirect URI registered with the OAuth provider (sandbox: RELINK_CALLBACK_PATH)."""
    return settings.BASE_URL + reverse("connect_flow:oauth_callback")


# --- Page building -------------------------------------------------------------------------------


def _tools(link: ConnectionLink) -> list[Provider]:
    return providers_of_category(link.category)


def _provider_for(link: ConnectionLink, requested: str) -> Provider | None:
    """The tool this link connects: the integration's, the link's, or the customer's pick from the category."""
    if link.kind == LinkKind.RECONNECT and link.integration_id:
        return link.integration.provider
    if link.tool:
        return get_provider(link.tool)
    provider = REGISTRY.get(requested)
    if provider is None or provider.category.value != link.category or not provider.is_available():
        return None
    return provider


def _scope_spec(link: ConnectionLink) -> ScopeSpec:
    scope = links.target_scope(link)
    return ScopeSpec.parse(scope.spec if scope else {})


def _permissions(link: ConnectionLink, provider: Provider, spec: ScopeSpec) -> list[Permission]:
    """What the target scope config needs; on a reconnect, each marked `new` if the current scope
    config did not need it."""
    if link.kind != LinkKind.RECONNECT or not link.integration_id:
        return permissions_needed(spec, provider)
    current = effective_scope_config(link.integration)  # what it reads now, perhaps the default
    return permissions_needed(spec, provider, before=ScopeSpec.parse(current.spec if current else None))


def _base_context(link: ConnectionLink) -> dict[str, Any]:
    origins = frame_origins(link)
    return {
        "embedded": link.link_type == LinkType.EMBEDDED,
        "target_origins": " ".join(origins),
    }


def _page(
    request: HttpRequest,
    link: ConnectionLink,
    provider: Provider | None,
    *,
    form: ConnectForm | None = None,
    error: dict[str, Any] | None = None,
    retry_url: str = "",
    status: int = 200,
) -> HttpResponse:
    """The connect page: who asks, the tool (or the picker), permissions, opt-outs, the form; on
    a reconnect, how long the connection may fail before syncs pause (the environment's window)."""
    policy = HealthPolicy.of(link.environment)
    ctx: dict[str, Any] = {
        **_base_context(link),
        "environment_name": link.environment.name,
        "auth_window_days": policy.window_days,
        "auth_window_hours": policy.window_hours,
        "reconnect": link.kind == LinkKind.RECONNECT,
        # A relative "?" link: only on the page at /connect/<token>/, not on the callback's retry page.
        "can_change_tool": link.kind == LinkKind.CONNECT and not link.tool and not retry_url,
        "error": error,
        "retry_url": retry_url,
    }
    if provider is None:
        ctx["tools"] = _tools(link)
        return render(request, "connect_flow/link.html", ctx, status=status)
    spec = _scope_spec(link)
    permissions = _permissions(link, provider, spec)
    if form is None:
        form = ConnectForm(provider, optional_items(provider, spec))
    ctx.update(
        provider=provider,
        tool_label=provider.label,
        oauth=isinstance(provider, OAuthProvider),
        permissions=permissions,
        has_new_permissions=any(p.new for p in permissions),
        form=form,
        opted_out=_ticked_opt_outs(link, form),
        form_token=signed.form_token(link),
    )
    return render(request, "connect_flow/link.html", ctx, status=status)


def _ticked_opt_outs(link: ConnectionLink, form: ConnectForm) -> list[str]:
    """The customer's last answer, else (reconnect) the opt-outs they chose before, so a
    reconnect does not silently start sharing what they had kept back."""
    if form.is_bound:
        return form.data.getlist("opt_out")  # type: ignore[attr-defined]  # bound to request.POST, a QueryDict
    if link.kind == LinkKind.RECONNECT and link.integration_id:
        return list(link.integration.opted_out_fields or [])
    return []


def _status_page(request: HttpRequest, link: ConnectionLink, status: str) -> HttpResponse:
    """Completed, expired or revoked: says so in the link's language and shows nothing else."""
    ctx = {**_base_context(link), "status": status}
    return render(request, "connect_flow/status.html", ctx, status=200 if status == LinkStatus.COMPLETED else 410)


def _invalid(request: HttpRequest) -> HttpResponse:
    """The same page for every unknown token, so a guess learns nothing."""
    return render(request, "connect_flow/invalid.html", {}, status=404)


def _forbidden(request: HttpRequest, link: ConnectionLink | None) -> HttpResponse:
    ctx = {**(_base_context(link) if link else {}), "can_reload": link is not None}
    return render(request, "connect_flow/forbidden.html", ctx, status=403)


def _error(code: str, tool: str, missing: list[str] | None = None) -> dict[str, Any]:
    """The customer-facing explanation of a failed attempt, in the active language."""
    messages = {
        "AUTH_FAILED": _(
            "The credentials were rejected by %(tool)s. Check that you copied them completely and that they "
            "are still active, then try again."
        ),
        "PERMISSION_MISSING": _(
            "%(tool)s accepted the credentials, but they lack permissions that are needed. Grant these "
            "permissions in %(tool)s, then try again:"
        ),
        "UNAVAILABLE": _(
            "%(tool)s could not be reached just now. Nothing was changed. Please try again in a few minutes."
        ),
        "ACCESS_DENIED": _("Access was not granted in %(tool)s. To connect, allow access when %(tool)s asks."),
        links.ACCOUNT_MISMATCH: _(
            "These credentials belong to a different company account than the one connected before. Nothing "
            "was changed. Use credentials of the %(tool)s account you connected before, or ask whoever sent "
            "you this link to allow a change of account."
        ),
    }
    message = messages.get(code, _("The connection could not be completed. Please try again."))
    return {"code": code, "message": message % {"tool": tool}, "missing": missing or []}


def _log(
    link: ConnectionLink,
    *,
    method: str,
    path: str,
    status: int,
    body: dict[str, Any],
    started: float,
    log_id: str,
    error_code: str = "",
    response_body: dict[str, Any] | None = None,
    integration_id: str = "",
) -> None:
    requestlogs.write(
        RequestLog.Source.CONNECT_FLOW,
        log_id=log_id,
        environment_id=link.environment_id,
        method=method,
        path=path,
        status_code=status,
        integration_id=integration_id or link.integration_id or "",
        request_body=body,
        response_body=response_body,
        error_code=error_code,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _redacted_body(data: Any, provider: Provider) -> dict[str, Any]:
    """The POST as the request log keeps it: known fields only, secret ones and the form token redacted."""
    body: dict[str, Any] = {"tool": provider.id, "opt_out": data.getlist("opt_out")}
    for field in provider.credential_fields:
        value = data.get(field.name, "")
        body[field.name] = REDACTED if field.secret and value else value[:200]
    body["form_token"] = REDACTED if data.get("form_token") else ""
    return body


# --- The page for an attempt's outcome -----------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    """The request as its request log keeps it (method, path, redacted body, when it started),
    and the id its row gets: chosen up front, so a failed attempt's `connection-flow-failed`
    webhook can link to the row (`log_url`) before it is written."""

    method: str
    path: str
    body: dict[str, Any]
    started: float
    log_id: str


def _failure_body(verification: links.Verification) -> dict[str, Any]:
    """What the request log keeps of a failed attempt's answer, for the operator: the error code,
    the permissions missing and, for ACCOUNT_MISMATCH, the account the credentials reached."""
    body: dict[str, Any] = {
        "error_code": verification.error_code,
        "missing_permissions": verification.missing_permissions,
    }
    if verification.error_code == links.ACCOUNT_MISMATCH and verification.account is not None:
        body["account"] = {"id": verification.account.id, "label": verification.account.label}
    return body


def _outcome_page(
    request: HttpRequest,
    link: ConnectionLink,
    provider: Provider,
    result: links.Attempt,
    logged: LoggedRequest,
    *,
    form: ConnectForm | None = None,
    retry_url: str = "",
    in_other_tab: bool = False,
) -> HttpResponse:
    """Log the request and render what `links.attempt` decided: success, the link's status page
    (another attempt used it first), or the form again with the reason.

    An EMBEDDED link completed in the tab the OAuth consent opened in (`in_other_tab`) cannot
    message the frame: the frame collects the activation token itself (`link_handoff`).
    """
    log = functools.partial(
        _log,
        link,
        method=logged.method,
        path=logged.path,
        body=logged.body,
        started=logged.started,
        log_id=logged.log_id,
    )
    if result.completion is not None:
        log(status=200, integration_id=result.completion.integration.pk)
        ctx = {**_base_context(link), "tool_label": provider.label, "in_other_tab": in_other_tab}
        if link.link_type == LinkType.EMBEDDED:
            # Posted to the framing page, which exchanges it through /v1/connect/integration-by-token.
            ctx["activation_token"] = result.completion.activation_token
        return render(request, "connect_flow/success.html", ctx)
    if result.unusable:
        log(status=409, error_code=f"LINK_{result.unusable}")
        return _status_page(request, link, result.unusable)
    verification = result.verification
    log(status=400, error_code=verification.error_code, response_body=_failure_body(verification))
    error = _error(verification.error_code, provider.label, verification.missing_permissions)
    return _page(request, link, provider, form=form, error=error, retry_url=retry_url, status=400)


# --- Views ---------------------------------------------------------------------------------------


@connect_view(("GET", "POST"))
def link_page(request: HttpRequest, token: str) -> ViewResult:
    link = links.find_link(token)
    if link is None:
        return _invalid(request), None
    with translation.override(link.language):
        response = _link_page(request, link)
        response["Content-Language"] = link.language
    return response, link


def _link_page(request: HttpRequest, link: ConnectionLink) -> HttpResponse:
    status = link.status
    if status not in LIVE_STATUSES:
        return _status_page(request, link, status)
    if request.method == "GET":
        links.mark_opened(link)
        return _page(request, link, _provider_for(link, request.GET.get("tool", "")))
    return _submit(request, link)


def _submit(request: HttpRequest, link: ConnectionLink) -> HttpResponse:
    """The customer's POST: credentials (verify, then complete) or "Continue" to the OAuth consent."""
    if not signed.form_token_valid(request.POST.get("form_token", ""), link):
        return _forbidden(request, link)
    provider = _provider_for(link, request.POST.get("tool", ""))
    if provider is None:
        error = {"code": "TOOL_MISSING", "message": _("Choose the system you use"), "missing": []}
        return _page(request, link, None, error=error, status=400)
    form = ConnectForm(provider, optional_items(provider, _scope_spec(link)), data=request.POST)
    if not form.is_valid():
        error = {"code": "INPUT_INVALID", "message": _("Please check the fields marked below."), "missing": []}
        return _page(request, link, provider, form=form, error=error, status=400)
    opted_out = form.opted_out()
    if isinstance(provider, OAuthProvider):
        return HttpResponseRedirect(
            provider.authorize_url(_callback_url(), signed.oauth_state(link, provider, opted_out))
        )

    logged = LoggedRequest("POST", LOG_PATH, _redacted_body(request.POST, provider), time.monotonic(), random_id(24))
    result = links.attempt(link, provider, form.credentials(), opted_out, log_id=logged.log_id)
    return _outcome_page(request, link, provider, result, logged, form=form)


@connect_view(("POST",))
def link_handoff(request: HttpRequest, token: str) -> ViewResult:
    """Polled by an embedded page while the customer consents to an OAuth tool in another tab.

    JSON `{"status": "waiting"}` until the link is used; then, once, `{"status": "completed",
    "activation_token": "…"}` for the page to post to its framing page; after that, or for a link
    completed some other way, `{"status": "completed"}`; `expired` / `revoked` when it is over.
    The link token in the URL and the signed form token are the credentials, as for the form.
    """
    link = links.find_link(token, related=("environment",))  # polled: only what the headers need
    if link is None:
        return JsonResponse({"status": "invalid"}, status=404), None
    if not signed.form_token_valid(request.POST.get("form_token", ""), link):
        return JsonResponse({"status": "forbidden"}, status=403), link
    status = link.status
    if status in LIVE_STATUSES:
        return JsonResponse({"status": "waiting"}), link
    body: dict[str, str] = {"status": status.lower()}
    if status == LinkStatus.COMPLETED:
        activation_token = links.hand_off_activation_token(link)
        if activation_token:
            body["activation_token"] = activation_token
    return JsonResponse(body), link


@connect_view(("GET",))
def oauth_callback(request: HttpRequest) -> ViewResult:
    """Where the provider sends the customer back with `code` (or `error`) and our signed `state`.

    Steps: verify the state (403 if missing, tampered or expired) → load its link → in the link's
    language: stop at a used link before touching the code → exchange the code → verify the
    credentials against the target scope → complete, or record the failure and offer a retry.
    """
    state = signed.read_oauth_state(request.GET.get("state", ""))
    if state is None:
        return _forbidden(request, None), None
    link = links.get_link(state["link"])
    if link is None:
        return _invalid(request), None
    with translation.override(link.language):
        response = _oauth_return(request, link, state)
        response["Content-Language"] = link.language
    return response, link


def _oauth_return(request: HttpRequest, link: ConnectionLink, state: dict[str, Any]) -> HttpResponse:
    status = link.status
    if status not in LIVE_STATUSES:
        return _status_page(request, link, status)
    provider = _provider_for(link, state["tool"])
    if not isinstance(provider, OAuthProvider) or provider.id != state["tool"]:
        return _forbidden(request, link)
    allowed = {item.value for item in optional_items(provider, _scope_spec(link))}
    opted_out = [value for value in state["opt_out"] if value in allowed]
    code, error = request.GET.get("code", ""), request.GET.get("error", "")
    body = {"tool": provider.id, "opt_out": opted_out, "code": REDACTED if code else "", "error": error[:100]}
    logged = LoggedRequest("GET", reverse("connect_flow:oauth_callback"), body, time.monotonic(), random_id(24))
    in_other_tab = link.link_type == LinkType.EMBEDDED
    result = links.attempt_oauth(
        link,
        provider,
        code=code,
        error=error,
        redirect_uri=_callback_url(),
        opted_out=opted_out,
        log_id=logged.log_id,
        issue_activation_token=not in_other_tab,
    )
    # No link token here (only its hash is stored), so a retry is a fresh authorization with a
    # new signed state rather than the form.
    retry_url = (
        ""
        if result.completion
        else provider.authorize_url(_callback_url(), signed.oauth_state(link, provider, opted_out))
    )
    return _outcome_page(request, link, provider, result, logged, retry_url=retry_url, in_other_tab=in_other_tab)
