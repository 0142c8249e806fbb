"""The OpenAPI document /v1/openapi.json serves: the reference API's (api/openapi.json, the same as
the reference's lifecycle-api.openapi.json), narrowed to what Relink accepts.

The reference admits more than Relink does in three places; the served document says what Relink
takes, so clients (and the schema fuzzer, tests/test_api_schema.py) generate only valid input:

- `integration_tool` of POST /connect/create-link: Relink's registered tools, not the reference's list;
- the `X-Integration-Id` header of POST /force-sync: not empty;
- the body of PUT /integrations/{integration_id}/enabled: required (it carries the required `value`).

And one description says what the reference leaves vague: the token of GET
/connect/integration-by-token/{token} is single-use and valid for 10 minutes (ACTIVATION_TOKEN_NOTE).

Everything else is the reference's, operation for operation and schema for schema.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from integrations.providers import REGISTRY

REFERENCE_PATH = Path(__file__).with_name("openapi.json")
ACTIVATION_TOKEN_NOTE = (
    "\n\nIn Relink the token is single-use and short-lived, like an OAuth2 authorization code: it can be "
    "exchanged once, within 10 minutes of the connection; a second exchange, or a later one, answers 404 "
    "`PLATFORM.INTEGRATION_NOT_FOUND`."
)


def reference_document() -> dict[str, Any]:
    return json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))


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
    return narrow(reference_document())
