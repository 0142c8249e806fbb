"""Response shapes of the /v1 API, field for field as in api/openapi.json."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.templatetags.static import static

from integrations.models import Integration
from integrations.providers import REGISTRY, providers_of_category
from integrations.providers.base import Provider
from integrations.scopes import DISABLED, ScopeSpec
from integrations.webhooks import end_user

SUPPORTED = "SUPPORTED"
UNSUPPORTED = "UNSUPPORTED"


def iso(value: datetime | None) -> str | None:
    """Like JavaScript's Date.toISOString(): UTC, milliseconds, `Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- Tools -------------------------------------------------------------------------------------


@cache
def _asset_path(name: str) -> str:
    """The static path of a tool image shipped in api/static/api/tools/, or of the generic one."""
    path = f"api/tools/{name}.svg"
    if not finders.find(path):
        path = "api/tools/_generic" + ("-black" if name.endswith("-black") else "") + ".svg"
    return path


def _asset(name: str) -> str:
    return f"{settings.BASE_URL}{static(_asset_path(name))}"


def tool_assets(tool_id: str) -> dict[str, str]:
    return {"logo_url": _asset(tool_id), "icon_url": _asset(tool_id), "icon_black_url": _asset(f"{tool_id}-black")}


def _provider(tool_id: str) -> Provider | None:
    return REGISTRY.get(tool_id)  # None: a tool no longer shipped, described by its id


def tool_summary(tool_id: str) -> dict[str, Any]:
    provider = _provider(tool_id)
    assets = tool_assets(tool_id)
    return {
        "id": tool_id,
        "label": provider.label if provider else tool_id,
        "internal_label": None,
        "logo_url": assets["logo_url"],
        "icon_url": assets["icon_url"],
    }


def tool(provider: Provider) -> dict[str, Any]:
    """One entry of GET /v1/tools/{category}."""
    return {
        "id": provider.id,
        "label": provider.label,
        "internal_label": None,
        "assets": tool_assets(provider.id),
        "paid_api_details_markdown": None,
        "fast_track_details_markdown": None,
        "partner_only_details_markdown": None,
        "connection_guide_url": None,
        "coverage": {
            "read_models": [
                {
                    "id": model.name,
                    "label": model.label,
                    "coverage_status": SUPPORTED,
                    "fields": [{"id": name, "coverage_status": SUPPORTED} for name in model.fields],
                }
                for model in provider.models
            ],
            "write_actions": [],  # Relink reads; it writes nothing to the tools
            "features": [],
        },
    }


def tools_of_category(category: str) -> list[dict[str, Any]]:
    return [tool(p) for p in providers_of_category(category)]


# --- Integrations ------------------------------------------------------------------------------


def _model_label(name: str) -> str:
    for provider in REGISTRY.values():
        model = provider.get_model(name)
        if model is not None:
            return model.label
    return name.replace("_", " ").capitalize()


def read_models(provider: Provider | None, spec: ScopeSpec, opted_out: list[str]) -> list[dict[str, Any]]:
    """Every model the tool can read plus every model the scope config names, with availability.

    A model (field) is available when the tool supports it, the scope config does not disable it
    and the customer did not opt out of it.
    """
    opted = set(opted_out or [])
    tool_models = {m.name: m for m in (provider.models if provider else ())}
    names = list(tool_models) + [name for name in spec.models if name not in tool_models]
    result = []
    for name in names:
        scope = spec.models.get(name)
        setting = scope.availability if scope else DISABLED
        supported = name in tool_models
        model_opted_out = name in opted
        model_available = supported and setting != DISABLED and not model_opted_out
        field_names = list(tool_models[name].fields) if supported else []
        field_names += [f for f in (scope.fields if scope else {}) if f not in field_names]
        fields = []
        for field_name in field_names:
            field_setting = scope.fields.get(field_name, DISABLED) if scope else DISABLED
            field_supported = supported and field_name in tool_models[name].fields
            field_opted_out = f"{name}.{field_name}" in opted
            fields.append(
                {
                    "id": field_name,
                    "is_available": model_available
                    and field_supported
                    and field_setting != DISABLED
                    and not field_opted_out,
                    "coverage_status": SUPPORTED if field_supported else UNSUPPORTED,
                    "scope_config_setting": field_setting,
                    "opted_out_by_customer": field_opted_out,
                }
            )
        result.append(
            {
                "id": name,
                "label": tool_models[name].label if supported else _model_label(name),
                "is_available": model_available,
                "coverage_status": SUPPORTED if supported else UNSUPPORTED,
                "scope_config_setting": setting,
                "opted_out_by_customer": model_opted_out,
                "fields": fields,
            }
        )
    return result


def integration_details(integration: Integration) -> dict[str, Any]:
    """GET /v1/integrations/{id}."""
    scope_config = integration.scope_config
    spec = ScopeSpec.parse(scope_config.spec if scope_config else {})
    return {
        "id": integration.id,
        "tool": tool_summary(integration.tool),
        "category": integration.category,
        "status": integration.state,
        "setup_status": integration.setup_status,
        "end_user": end_user(integration),
        # The schema requires an object; an integration without a scope config has id "" and name null.
        "scope_config": {"id": scope_config.pk, "name": scope_config.name}
        if scope_config
        else {"id": "", "name": None},
        "data_expired_at": iso(integration.data_expired_at),
        "created_at": iso(integration.created_at),
        "beta": False,
        "read_models": read_models(_provider(integration.tool), spec, integration.opted_out_fields),
        "write_actions": [],
    }


def integration_by_token(integration: Integration) -> dict[str, Any]:
    """GET /v1/connect/integration-by-token/{token}."""
    return {
        "tool": integration.tool,
        "id": integration.id,
        "end_user_origin_id": integration.end_user_origin_id or None,
        "end_user_organization_name": integration.end_user_organization_name,
        "end_user_email": integration.end_user_email or None,
        "setup_status": integration.setup_status,
    }
