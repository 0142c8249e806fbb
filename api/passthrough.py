"""`POST /v1/passthrough/{tool}/{api}`: a request forwarded to the integration's tool API with its
stored credentials (the reference API's PostPassthroughToolApi). Thin: reads the input, calls
integrations.passthrough, shapes the answer.

The answer is the reference's: `{"status": "success", "data": {"url", "status", "headers", "data"},
"warnings": [...]}` whatever HTTP status the tool answered; the error envelope only when Relink
could not forward the request (400), the tool did not answer in time (504) or could not be
reached (502). The integration's credentials are registered on the context, so the request log
masks them wherever they appear.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from integrations import passthrough as forwarding

from . import errors
from .framework import ApiContext, api_view
from .validation import Body, json_type


def _string_map(body: Body, name: str) -> dict[str, str]:
    """An optional object of strings (`headers`, `params`, `api_options`); null counts as absent."""
    value = body.data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.input_invalid(f"{name}: expected an object of strings, got {json_type(value)}.")
    for key, item in value.items():
        if not isinstance(item, str):
            raise errors.input_invalid(f"{name}.{str(key)[:80]}: expected a string, got {json_type(item)}.")
    return dict(value)


def _request(body: Body) -> forwarding.Request:
    method = body.string("method", required=True, choices=forwarding.METHODS)
    path = body.string("path", required=True)
    multipart = body.data.get("multipart_form_data")
    if multipart is not None and multipart != []:
        raise errors.input_invalid(
            "multipart_form_data: not supported by Relink's passthrough; send `data` as JSON (an object or "
            "an array) or as a raw string with your own Content-Type header."
        )
    data = body.data.get("data")
    return forwarding.Request(
        method=method,
        path=path,
        headers=_string_map(body, "headers"),
        params=_string_map(body, "params"),
        data=forwarding.NO_DATA if data is None else data,
        response_as_base64=body.boolean("response_as_base64", default=False),
        api_options=_string_map(body, "api_options"),
    )


def passthrough(ctx: ApiContext, tool: str, api: str) -> JsonResponse:
    integration_id = ctx.request.headers.get("X-Integration-Id", "").strip()
    if not integration_id:
        raise errors.input_invalid(
            "X-Integration-Id: this header is required and names the integration whose tool to call."
        )
    integration = ctx.get_integration(integration_id)
    request = _request(ctx.body())
    try:
        answer = forwarding.send(integration, tool, api, request, secrets=ctx.secrets)
    except forwarding.Refused as exc:
        raise errors.input_invalid(str(exc)) from None
    except forwarding.TimedOut as exc:
        raise errors.task_timed_out(str(exc)) from None
    except forwarding.Failed as exc:
        raise errors.upstream_failed(str(exc)) from None
    data: dict[str, Any] = {"url": answer.url, "status": answer.status, "headers": answer.headers, "data": answer.data}
    return JsonResponse(
        {"status": "success", "data": data, "warnings": [{"message": message} for message in answer.warnings]}
    )


passthrough_view = api_view({"POST": passthrough})
