"""The reference API's schemas as JSON Schema, for validating what Relink sends with jsonschema-rs.

The schemas come unchanged from the reference's OpenAPI document (api/openapi_unified.json, the cut
with the HRIS reads, passthrough and webhooks). Two mechanical conversions make them JSON Schema:

- OpenAPI 3.0's `nullable: true`, which a few of its schemas still use: the type also admits null;
- the four absence properties the published document types as `{"type": "null"}` while describing
  a value (`start_date`/`end_date`: "in the `yyyy-MM-dd` format", `start_time`/`end_time`:
  "`HH:mm:ss`"): its generator lost their type (the reference's own Python SDK types them
  `Nullable[Any]`). They are checked as the described format, or null.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

DOCUMENT = Path(__file__).resolve().parent.parent / "api" / "openapi_unified.json"

LOST_TYPES = {
    "The date this absence starts in the `yyyy-MM-dd` format.": r"^\d{4}-\d{2}-\d{2}$",
    "The date this absence ends in the `yyyy-MM-dd` format.": r"^\d{4}-\d{2}-\d{2}$",
}
TIME = r"^\d{2}:\d{2}:\d{2}$"


def json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and "type" in node:
        converted["type"] = [node["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    description = node.get("description", "")
    if node.get("type") == "null" and (description in LOST_TYPES or "Follows the format `HH:mm:ss`" in description):
        converted["type"] = ["string", "null"]
        converted["pattern"] = LOST_TYPES.get(description, TIME)
    return converted


@cache
def document() -> dict[str, Any]:
    return json_schema(json.loads(DOCUMENT.read_text(encoding="utf-8")))


@cache
def _validator(ref: str) -> Any:
    root = {"$ref": ref, "components": document()["components"]}
    return jsonschema_rs.validator_for(root)


def schema(name: str) -> dict[str, Any]:
    """A component schema (`GetHrisEmployeesPositiveResponse`), or an error response's schema
    (`ErrorResponseGeneral`), as JSON Schema."""
    components = document()["components"]
    if name in components["schemas"]:
        return components["schemas"][name]
    return components["responses"][name]["content"]["application/json"]["schema"]


def webhook_schemas() -> dict[str, dict[str, Any]]:
    """{payload schema name: schema} for every webhook of the reference's `webhooks` section."""
    names = [
        item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        for item in document()["webhooks"].values()
    ]
    return {name: schema(name) for name in names}


def errors(instance: Any, ref: str) -> list[str]:
    """What is wrong with `instance` under the schema at `ref` (e.g.
    `#/components/schemas/GetHrisEmployeesPositiveResponse`); empty when it is valid."""
    return [f"{e.instance_path}: {e}" for e in _validator(ref).iter_errors(instance)]


def response_errors(instance: Any, path: str, method: str, status: str) -> list[str]:
    """Errors of an answer of the operation `method path` with HTTP `status` ("200", "default")."""
    responses = document()["paths"][path][method]["responses"]
    response = responses.get(status) or responses["default"]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        schema = document()["components"]["responses"][name]["content"]["application/json"]["schema"]
    else:
        schema = response["content"]["application/json"]["schema"]
    root = {**schema, "components": document()["components"]}
    return [f"{e.instance_path}: {e}" for e in jsonschema_rs.validator_for(root).iter_errors(instance)]
