"""The OpenAPI document /v1/openapi.json serves: the reference API's (api/openapi.json, the same as
the reference's lifecycle-api.openapi.json), with the operations and webhooks Relink also serves
from the reference's second cut (api/openapi_unified.json: `GET /hris/employees`,
`GET /hris/absences`, `POST /passthrough/{tool}/{api}` and the `webhooks` Relink sends, with every
schema they use, unchanged), plus Relink's own webhook (`integration-auth-failing`, marked
`x-relink-extension`), narrowed to what Relink accepts.

The reference admits more than Relink does in three places; the served document says what Relink
takes, so clients (and the schema fuzzer, tests/test_api_schema.py) generate only valid input:

- `integration_tool` of POST /connect/create-link: Relink's registered tools, not the reference's list;
- the `X-Integration-Id` header of POST /force-sync: not empty;
- the body of PUT /integrations/{integration_id}/enabled: required (it carries the required `value`).

And one description says what the reference leaves vague: the token of GET
/connect/integration-by-token/{token} is single-use and valid for 10 minutes (ACTIVATION_TOKEN_NOTE).

One correction: the reference's absence schema types `start_date`, `end_date`, `start_time` and
`end_time` as `{"type": "null"}` while describing a date (`yyyy-MM-dd`) and a time (`HH:mm:ss`) —
its generator lost their type (its own SDKs take any value there). The served document gives them
the type described, nullable (LOST_TYPES).

Everything else is the reference's, operation for operation and schema for schema.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from integrations.providers import REGISTRY
from integrations.webhook_schemas import relink_webhooks

REFERENCE_PATH = Path(__file__).with_name("openapi.json")
ACTIVATION_TOKEN_NOTE = (
    "\n\nIn Relink the token is single-use and short-lived, like an OAuth2 authorization code: it can be "
    "exchanged once, within 10 minutes of the connection; a second exchange, or a later one, answers 404 "
    "`PLATFORM.INTEGRATION_NOT_FOUND`."
)


UNIFIED_PATH = Path(__file__).with_name("openapi_unified.json")
# The operations of the second cut Relink serves (the POSTs that create employees and absences, the
# absence types and the setup-link flow it does not).
UNIFIED_OPERATIONS = {
    "/hris/employees": ("get",),
    "/hris/absences": ("get",),
    "/passthrough/{tool}/{api}": ("post",),
}
DATE = {"type": ["string", "null"], "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
TIME = {"type": ["string", "null"], "pattern": r"^\d{2}:\d{2}:\d{2}$"}
LOST_TYPES = {"start_date": DATE, "end_date": DATE, "start_time": TIME, "end_time": TIME}


def reference_document() -> dict[str, Any]:
    return json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))


def unified_document() -> dict[str, Any]:
    return json.loads(UNIFIED_PATH.read_text(encoding="utf-8"))


def _refs(node: Any) -> set[str]:
    """The component names (`schemas/X`, `responses/Y`) `node` refers to, directly."""
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix("#/components/")} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


def with_unified(document: dict[str, Any], unified: dict[str, Any], own_webhooks: dict[str, Any]) -> dict[str, Any]:
    """`document` (the lifecycle cut) with the UNIFIED_OPERATIONS of `unified`, its `webhooks`, and
    Relink's own webhooks (`{"webhooks": …, "schemas": …}`), each with every component it uses."""
    document = copy.deepcopy(document)
    added: dict[str, Any] = {}
    for path, methods in UNIFIED_OPERATIONS.items():
        added[path] = {method: unified["paths"][path][method] for method in methods}
    document["paths"].update(copy.deepcopy(added))
    document["webhooks"] = {**copy.deepcopy(unified["webhooks"]), **copy.deepcopy(own_webhooks["webhooks"])}
    wanted, seen = _refs(added) | _refs(unified["webhooks"]), set()
    while wanted:
        name = wanted.pop()
        seen.add(name)
        kind, _, key = name.partition("/")
        component = unified["components"][kind][key]
        existing = document["components"].setdefault(kind, {}).get(key)
        if existing is not None and existing != component:
            raise ValueError(f"components/{name} differs between the two cuts of the reference")
        document["components"][kind][key] = copy.deepcopy(component)
        wanted |= _refs(component) - seen
    document["components"]["schemas"].update(copy.deepcopy(own_webhooks["schemas"]))
    return document


def correct_lost_types(document: dict[str, Any]) -> None:
    """The absence properties LOST_TYPES names get the type their description gives (in place)."""
    results = document["components"]["schemas"]["GetHrisAbsencesPositiveResponse"]["properties"]["data"]
    item = results["properties"]["results"]["items"]["properties"]
    for name, schema in LOST_TYPES.items():
        if item[name].get("type") == "null":
            item[name] = {**item[name], **schema}


def narrow(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the reference `document` with the three narrowings above."""
    document = copy.deepcopy(document)
    schemas = document["components"]["schemas"]
    schemas["PostConnectCreateLinkRequestBody"]["properties"]["integration_tool"]["enum"] = sorted(REGISTRY)
    for parameter in document["paths"]["/force-sync"]["post"]["parameters"]:
        if parameter.get("in") == "header" and parameter.get("name") == "X-Integration-Id":
            parameter["schema"]["minLength"] = 1
    document["paths"]["/integrations/{integration_id}/enabled"]["put"]["requestBody"]["required"] = True
    document["paths"]["/connect/integration-by-token/{token}"]["get"]["description"] += ACTIVATION_TOKEN_NOTE
    return document


@lru_cache(maxsize=1)
def served_document() -> dict[str, Any]:
    """Built once per process (the registry is complete once integrations.providers is imported)."""
    document = narrow(with_unified(reference_document(), unified_document(), relink_webhooks()))
    correct_lost_types(document)
    return document
