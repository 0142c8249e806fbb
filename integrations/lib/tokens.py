"""Random public ids, secret tokens and their hashes."""

from __future__ import annotations

import hashlib
import secrets

from django.utils.crypto import get_random_string


def random_id(length: int = 24) -> str:
    """A public id like `9Pv6aCFwNDEzPNmwjSsY9SQx` (letters and digits, ~143 bits at 24)."""
    return get_random_string(length)


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """A URL-safe secret such as an API key, `<prefix><43 chars>`."""
    return prefix + secrets.token_urlsafe(nbytes)


def hash_secret(value: str) -> str:
    """SHA-256 hex digest; secrets with 256 bits of entropy need no salt or slow hash."""
    return hashlib.sha256(value.encode()).hexdigest()
