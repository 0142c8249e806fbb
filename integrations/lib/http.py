"""The one place outbound HTTP to providers goes through (a single choke point for tests)."""

from __future__ import annotations

import httpx
from django.conf import settings


def provider_client(**kwargs) -> httpx.Client:
    kwargs.setdefault("timeout", settings.PROVIDER_HTTP_TIMEOUT)
    kwargs.setdefault("follow_redirects", False)
    kwargs.setdefault("headers", {"User-Agent": "Relink/1.0"})
    return httpx.Client(**kwargs)
