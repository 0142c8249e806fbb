"""The one place outbound HTTP to providers goes through (a single choke point for tests).

A request httpx cannot build because a header would hold characters HTTP headers cannot carry
(a credential with a non-ASCII character, sent as `Authorization: Bearer …`) raises
`RequestNotEncodable` rather than a bare UnicodeEncodeError; the adapters turn it into an
AUTH_FAILED outcome (the credentials are unusable), never a 500.
"""

from __future__ import annotations

from typing import Any

import httpx
from django.conf import settings


class RequestNotEncodable(Exception):
    """The request could not be encoded (a header value outside ASCII). Names no value: it may be a secret."""


class ProviderClient(httpx.Client):
    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        try:
            return super().build_request(*args, **kwargs)
        except UnicodeEncodeError:
            raise RequestNotEncodable("a request header holds characters HTTP headers cannot carry") from None

    def send(self, *args: Any, **kwargs: Any) -> httpx.Response:
        try:  # an auth flow adds its headers here
            return super().send(*args, **kwargs)
        except UnicodeEncodeError:
            raise RequestNotEncodable("a request header holds characters HTTP headers cannot carry") from None


def provider_client(**kwargs) -> httpx.Client:
    kwargs.setdefault("timeout", settings.PROVIDER_HTTP_TIMEOUT)
    kwargs.setdefault("follow_redirects", False)
    kwargs.setdefault("headers", {"User-Agent": "Relink/1.0"})
    return ProviderClient(**kwargs)
