"""Redacting secrets from request and response bodies before they are logged."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from config.text import REDACTED, is_secret_name, replace_unusable

# The secret-name rule and the marker are config.text's, shared with the error reports.
MIN_MASKED_LENGTH = 8  # shorter "secrets" (e.g. a bogus bearer value "x") would mangle every string


def redact(value: Any, secrets: list[str] | tuple[str, ...] = ()) -> Any:
    """A copy of `value` with secret-named keys replaced and every string in `secrets` masked.

    What PostgreSQL's jsonb cannot store is made storable on the way: NUL and unpaired
    surrogates in keys and strings become U+FFFD (`clean`), numbers JSON has no form for
    (Infinity, NaN) become strings.
    """
    return _redact(value, [s for s in secrets if s and len(s) >= MIN_MASKED_LENGTH])


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        redacted = {}
        for key, item in value.items():
            text = str(key)
            name, secret = _key(text) if len(text) <= 64 else _uncached_key(text)
            redacted[name] = REDACTED if secret else _redact(item, secrets)
        return redacted
    if isinstance(value, (list, tuple)):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, str):
        return clean(mask(value, secrets))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _uncached_key(name: str) -> tuple[str, bool]:
    """A key as stored, and whether its value is secret."""
    return clean(name), is_secret_name(name)


# Bodies repeat their keys; short ones are cached (a bounded cache of bounded entries).
_key = lru_cache(maxsize=2048)(_uncached_key)


def mask(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= MIN_MASKED_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def clean(text: str) -> str:
    """`text` as PostgreSQL can store it (config.text: NUL and unpaired surrogates replaced)."""
    return replace_unusable(text)
