"""Signed values that stand in for the session on the connect pages (a cross-site iframe gets no
cookies): the form token that replaces the CSRF cookie, and the OAuth `state`."""

from __future__ import annotations

import secrets
from typing import Any

from django.core import signing

from integrations.providers.base import Provider

from .models import ConnectionLink

FORM_TOKEN_SALT = "relink-connect-form"
# Long enough for a customer who opens the page, goes to find an API key and comes back.
FORM_TOKEN_MAX_AGE = 3 * 60 * 60
OAUTH_STATE_SALT = "relink-oauth"
# Consent pages are quick; an hour covers a customer who first has to sign in to the tool.
OAUTH_STATE_MAX_AGE = 60 * 60


def form_token(link: ConnectionLink) -> str:
    """The hidden field that stands in for the CSRF cookie.

    Bound to this link and valid for FORM_TOKEN_MAX_AGE, it shows the POST comes from a form this
    server rendered for this link a short while ago, not from a blind or replayed request (the
    URL's link token already keeps out anyone who was not given the link).
    """
    return signing.dumps({"link": link.pk}, salt=FORM_TOKEN_SALT)


def form_token_valid(value: str, link: ConnectionLink) -> bool:
    try:
        data = signing.loads(value, salt=FORM_TOKEN_SALT, max_age=FORM_TOKEN_MAX_AGE)
    except signing.BadSignature:  # also SignatureExpired
        return False
    return isinstance(data, dict) and data.get("link") == link.pk


def oauth_state(link: ConnectionLink, provider: Provider, opted_out: list[str]) -> str:
    """The OAuth `state`: which link and tool, the customer's opt-outs, and a random nonce, signed.

    The usual pattern keeps a random state in the session and compares it in the callback. The
    embedded flow has no session (no cookies in a cross-site iframe), so the state carries its own
    proof instead: the signature means only this server can have made it, `max_age` bounds its
    life, and the link id binds it to one link. Someone without the link token cannot obtain a
    state for that link, so a forged callback cannot complete someone else's link; the provider's
    code is single use, and `links.complete` completes a link only once.
    """
    payload = {"link": link.pk, "tool": provider.id, "opt_out": list(opted_out), "nonce": secrets.token_urlsafe(16)}
    return signing.dumps(payload, salt=OAUTH_STATE_SALT, compress=True)


def read_oauth_state(value: str) -> dict[str, Any] | None:
    try:
        data = signing.loads(value, salt=OAUTH_STATE_SALT, max_age=OAUTH_STATE_MAX_AGE)
    except signing.BadSignature:  # tampered, truncated, missing or expired
        return None
    if not isinstance(data, dict):
        return None
    opt_out = data.get("opt_out")
    if not isinstance(data.get("link"), str) or not isinstance(data.get("tool"), str):
        return None
    if not isinstance(opt_out, list) or not all(isinstance(v, str) for v in opt_out):
        return None
    return data
