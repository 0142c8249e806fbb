"""The /v1 endpoints. Thin: read the input, call the domain functions, shape the answer.

Authentication, rate limiting, errors and the request log live in api.framework.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import JsonResponse

from connect_flow import links
from connect_flow.models import LinkType
from integrations import health
from integrations.models import IntegrationState, ScopeConfig, SyncType
from integrations.providers import Category
from integrations.scopes import find_scope_config
from integrations.syncs import NotSyncable, queue_sync

from . import errors, shapes
from . import openapi as openapi_document
from .framework import ApiContext, api_view

# Categories the reference API knows; Relink ships tools for those in integrations.providers.Category.
API_CATEGORIES = ("HRIS", "ATS", "ASSESSMENT", "LMS")
SUPPORTED_CATEGORIES = tuple(c.value for c in Category)
LANGUAGES = tuple(links.LANGUAGE_CODES)
LINK_TYPES = tuple(LinkType.values)


def _customer_id() -> str:
    """The reference API's account id: one per Relink installation (its host unless configured)."""
    return settings.API_CUSTOMER_ID or urlsplit(settings.BASE_URL).hostname or "relink"


def _scope_config(ctx: ApiContext, scope_config_id: str | None) -> ScopeConfig | None:
    """The environment's scope config with this id; any other id (unknown, another environment's) is a 400."""
    if not scope_config_id:
        return None
    scope_config = find_scope_config(ctx.environment.pk, scope_config_id)
    if scope_config is None:
        raise errors.input_invalid("scope_config_id: no scope config with this id exists in this environment.")
    return scope_config


def _link_input(call):
    try:
        return call()
    except links.LinkInputError as exc:
        raise errors.input_invalid(str(exc)) from None


# --- General -----------------------------------------------------------------------------------


def check_api_key(ctx: ApiContext) -> dict[str, Any]:
    return {"environment_id": str(ctx.environment.pk), "customer_id": _customer_id()}


def get_integration(ctx: ApiContext, integration_id: str) -> dict[str, Any]:
    return shapes.integration_details(ctx.get_integration(integration_id))


def delete_integration(ctx: ApiContext, integration_id: str) -> dict[str, Any]:
    ctx.body()  # an optional, empty JSON object; malformed JSON is still a 400
    integration = ctx.get_integration(integration_id)
    if not health.delete_integration(integration, actor_api_key=ctx.api_key):  # deleted concurrently
        raise errors.no_such_integration(integration_id)
    return {}


def set_enabled(ctx: ApiContext, integration_id: str) -> dict[str, Any]:
    value = ctx.body().boolean("value", required=True)
    integration = ctx.get_integration(integration_id)
    health.set_enabled(integration.pk, value, actor_api_key=ctx.api_key)
    return {}


def relink(ctx: ApiContext, integration_id: str) -> dict[str, Any]:
    # The integration first: a refused body is then logged with the integration it was for.
    integration = ctx.get_integration(integration_id)
    body = ctx.body()
    language = body.string("language", nullable=True, default="en", choices=LANGUAGES)
    scope_config_id = body.string("scope_config_id", nullable=True)
    link_type = body.string("link_type", default=LinkType.EMBEDDED, choices=LINK_TYPES)
    scope_config = _scope_config(ctx, scope_config_id)
    created = _link_input(
        lambda: links.create_relink_link(
            integration,
            link_type=link_type,
            language=language,
            scope_config=scope_config,
            api_key=ctx.api_key,
        )
    )
    return {"link": created.url}


NOT_SYNCABLE: dict[str, str] = {
    IntegrationState.INVALID: (
        "The integration is INVALID: its authentication kept failing for the environment's auth-failure "
        "window (72 hours unless its owner changed it), so its syncs are paused. Create a reconnection link "
        "(POST /integrations/{id}/relink) for the customer to fix it."
    ),
    IntegrationState.INACTIVE: (
        "The integration is INACTIVE: it was disabled. Enable it first (PUT /integrations/{id}/enabled)."
    ),
}


def force_sync(ctx: ApiContext) -> dict[str, Any]:
    integration_id = ctx.request.headers.get("X-Integration-Id", "").strip()
    sync_type = ctx.body().string("type", default=SyncType.FULL, choices=tuple(SyncType.values))
    if not integration_id:
        raise errors.input_invalid("X-Integration-Id: this header is required and names the integration to sync.")
    integration = ctx.get_integration(integration_id)
    try:
        sync, already_queued = queue_sync(integration.pk, sync_type, actor_api_key=ctx.api_key)
    except NotSyncable as exc:
        raise errors.input_invalid(NOT_SYNCABLE[exc.state]) from None
    return {"already_queued": already_queued, "sync_id": sync.pk, "type": sync.type}


def tools(ctx: ApiContext, category: str) -> dict[str, Any]:
    name = category.upper()
    if name not in API_CATEGORIES:
        raise errors.input_invalid(f"category: must be one of {', '.join(c.lower() for c in API_CATEGORIES)}.")
    return {"tools": shapes.tools_of_category(name)}


# --- Connect -----------------------------------------------------------------------------------


def create_link(ctx: ApiContext) -> dict[str, Any]:
    body = ctx.body()
    email = body.email("end_user_email", required=True)
    organization = body.string("end_user_organization_name", required=True, min_length=1, max_length=200)
    origin_id = body.string("end_user_origin_id", nullable=True, min_length=1, max_length=200) or ""
    body.string("remote_environment", nullable=True)  # accepted; Relink has no remote environments
    category = body.string("integration_category", default="HRIS", choices=API_CATEGORIES)
    if category not in SUPPORTED_CATEGORIES:
        raise errors.input_invalid(
            f"integration_category: Relink has no {category} tools; use one of {', '.join(SUPPORTED_CATEGORIES)}."
        )
    tool = body.string("integration_tool", nullable=True) or ""
    language = body.string("language", nullable=True, default="en", choices=LANGUAGES)
    scope_config_id = body.string("scope_config_id", nullable=True)
    for flag in ("enable_filtering", "enable_field_mapping", "enable_static_ips"):
        body.boolean(flag)  # accepted; these features do not exist in Relink
    link_type = body.string("link_type", default=LinkType.EMBEDDED, choices=LINK_TYPES)
    scope_config = _scope_config(ctx, scope_config_id)
    created = _link_input(
        lambda: links.create_connect_link(
            ctx.environment,
            end_user_email=email,
            end_user_organization_name=organization,
            end_user_origin_id=origin_id,
            category=category,
            tool=tool,
            scope_config=scope_config,
            link_type=link_type,
            language=language,
            api_key=ctx.api_key,
        )
    )
    return {"link": created.url}


def integration_by_token(ctx: ApiContext, token: str) -> dict[str, Any]:
    integration = links.exchange_activation_token(ctx.environment, token)
    if integration is None:
        raise errors.integration_not_found(
            "No integration was connected with this token in this environment, or the token was already "
            "exchanged or has expired: an activation token works once, within 10 minutes of the connection."
        )
    ctx.integration_id = integration.pk
    return shapes.integration_by_token(integration)


# --- The OpenAPI document and unknown paths ----------------------------------------------------


def openapi(ctx: ApiContext) -> JsonResponse:
    # A shallow copy: only the top-level "servers" differs from the cached document.
    servers = [{"url": f"{settings.BASE_URL}/v1", "description": "This Relink installation"}]
    # The reference's document, narrowed to what Relink accepts (api/openapi.py).
    return JsonResponse({**openapi_document.served_document(), "servers": servers})


def unknown_path(ctx: ApiContext, **kwargs: Any) -> None:
    raise errors.route_not_found(ctx.request.path)


check_api_key_view = api_view({"GET": check_api_key})
integration_view = api_view({"GET": get_integration, "DELETE": delete_integration})
enabled_view = api_view({"PUT": set_enabled})
relink_view = api_view({"POST": relink})
force_sync_view = api_view({"POST": force_sync})
tools_view = api_view({"GET": tools})
create_link_view = api_view({"POST": create_link})
integration_by_token_view = api_view({"GET": integration_by_token}, secret_kwargs=("token",))
openapi_view = api_view({"GET": openapi}, auth=False)
not_found_view = api_view(fallback=unknown_path)
