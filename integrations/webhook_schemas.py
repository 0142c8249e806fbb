"""The OpenAPI description of Relink's own webhook events: those it sends that the reference API
does not have. Today one: `integration-auth-failing`.

`relink_webhooks()` gives what an OpenAPI 3.1 document needs to describe them, for the served
/v1/openapi.json to merge next to the reference's webhooks:

    {"webhooks": {"integration-auth-failing": <path item>},
     "schemas": {"IntegrationAuthFailingWebhookPayload": <schema>}}

The payload schema is written in the style of the reference's `*WebhookPayload` schemas (the same
wording, `nullable` and `additionalProperties: false` at every level), and its fields shared with
`integration-state-changed` are that schema's, word for word (tests/test_webhook_payload_contract.py
checks both, and validates real payloads against it). Each entry is marked `x-relink-extension`.

Signatures: like every webhook Relink sends, these are signed the Standard Webhooks way
(`webhook-id`, `webhook-timestamp`, `webhook-signature`; integrations/webhooks.py).
"""

from __future__ import annotations

from typing import Any

from .models import WebhookEvent

AUTH_FAILING_SCHEMA = "IntegrationAuthFailingWebhookPayload"

RELINK_ONLY = (
    "Relink's own event, not part of the reference API (marked `x-relink-extension`): sent once when an "
    "integration's authentication starts failing — the first rejected check of a failure streak — so the "
    "customer can be asked to reconnect before its syncs pause at `pauses_at`. If the credentials work "
    "again before then, nothing else is sent; if not, `integration-state-changed` follows with "
    "`state: INVALID`."
)

_HEADERS = [
    ("webhook-id", "Unique identifier of the event (the payload's `id`), the same on every retry: deduplicate on it."),
    ("webhook-timestamp", "When this attempt was signed, in seconds since the Unix epoch."),
    (
        "webhook-signature",
        "Standard Webhooks signature(s) of `<webhook-id>.<webhook-timestamp>.<body>`, space-separated "
        "`v1,<base64 HMAC-SHA256>` (two while a rotated signing secret is still signing).",
    ),
]


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", **extra, "description": description}


def _end_user() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "organization_name": _string("The name of the organization that owns the integration."),
            "creator_email": {
                "type": "string",
                "nullable": True,
                "description": "The email address of the user who created the integration.",
                "format": "email",
            },
            "origin_id": {
                "type": "string",
                "nullable": True,
                "description": "The unique identifier of the organization in the integrated system.",
            },
        },
        "required": ["organization_name", "creator_email", "origin_id"],
        "additionalProperties": False,
        "description": "Information about the end user who created the integration.",
    }


def auth_failing_schema() -> dict[str, Any]:
    """The JSON Schema of an `integration-auth-failing` payload (webhooks.emit_integration_auth_failing)."""
    data_properties: dict[str, Any] = {
        "integration_tool": _string('The name of the integrated tool (e.g., "personio", "greenhouse").'),
        "integration_id": _string("The unique identifier of the integration."),
        "integration_category": _string(
            "The category of the integration (HRIS, ATS, ASSESSMENT, or LMS).",
            enum=["HRIS", "ATS", "ASSESSMENT", "LMS"],
        ),
        "end_user": _end_user(),
        "state": _string("The current state of the integration.", enum=["ACTIVE", "INVALID", "INACTIVE"]),
        "failing_since": _string(
            "ISO 8601 timestamp of the first rejected authentication check of this failure streak.",
            format="date-time",
        ),
        "pauses_at": _string(
            "ISO 8601 timestamp when the integration becomes INVALID and its syncs pause, unless its "
            "credentials work again before (the environment's auth-failure window after `failing_since`).",
            format="date-time",
        ),
        "error": _string(
            "What the tool answered to the latest rejected check: its HTTP status and message (may be empty)."
        ),
    }
    return {
        "type": "object",
        "properties": {
            "id": _string("Unique identifier for this webhook event"),
            "type": _string("Type of the webhook event", enum=[WebhookEvent.INTEGRATION_AUTH_FAILING.value]),
            "data": {
                "type": "object",
                "properties": data_properties,
                "required": list(data_properties),
                "additionalProperties": False,
            },
        },
        "required": ["id", "type", "data"],
        "additionalProperties": False,
        "description": RELINK_ONLY,
    }


def _example() -> dict[str, Any]:
    return {
        "id": "Cbfk5sHtDxrSrJBRjsDtbaN9",
        "type": WebhookEvent.INTEGRATION_AUTH_FAILING.value,
        "data": {
            "integration_tool": "personio",
            "integration_id": "personio:CBNMt7dSNCzBdnRTx87dev4E",
            "integration_category": "HRIS",
            "end_user": {
                "organization_name": "Acme, Inc.",
                "creator_email": "user@example.com",
                "origin_id": "36123",
            },
            "state": "ACTIVE",
            "failing_since": "2021-09-01T12:00:00Z",
            "pauses_at": "2021-09-04T12:00:00Z",
            "error": "401 The API key was rejected",
        },
    }


def auth_failing_webhook() -> dict[str, Any]:
    """The `webhooks` entry (an OpenAPI 3.1 Path Item) of `integration-auth-failing`."""
    operation = {
        "summary": "Integration authentication failing",
        "description": RELINK_ONLY,
        "operationId": "webhookIntegrationAuthFailingWebhookPayload",
        "x-relink-extension": True,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{AUTH_FAILING_SCHEMA}"},
                    "example": _example(),
                }
            },
        },
        "parameters": [
            {"name": name, "in": "header", "required": True, "description": description, "schema": {"type": "string"}}
            for name, description in _HEADERS
        ],
        "responses": {"200": {"description": "Webhook received successfully (any 2xx; anything else is retried)"}},
    }
    return {"description": RELINK_ONLY, "x-relink-extension": True, "post": operation}


def relink_webhooks() -> dict[str, Any]:
    """Relink's own webhooks for an OpenAPI 3.1 document: `{"webhooks": {event: path item},
    "schemas": {name: schema}}` (merged into `webhooks` and `components.schemas`). New objects
    on every call: the caller may change them."""
    return {
        "webhooks": {WebhookEvent.INTEGRATION_AUTH_FAILING.value: auth_failing_webhook()},
        "schemas": {AUTH_FAILING_SCHEMA: auth_failing_schema()},
    }
