"""Relink's own registration as an OAuth client of Sandbox HR, shared by both sides: the sandbox's
authorization server (sandbox.models) and Relink's `sandbox_oauth` adapter. No model imports, so
the adapter can use it without loading the sandbox app's models."""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import salted_hmac

CLIENT_ID = "relink"


def client_secret() -> str:
    """SANDBOX_OAUTH_CLIENT_SECRET, else one derived from SECRET_KEY; read at call time so tests
    and deployments can override it."""
    return settings.SANDBOX_OAUTH_CLIENT_SECRET or salted_hmac("sandbox-oauth", "client").hexdigest()
