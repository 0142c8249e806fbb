"""Encryption of third-party secrets at rest.

MultiFernet over the keys in settings.FERNET_KEYS: the first key encrypts, every key decrypts.
The keys are independent of SECRET_KEY and never stored in the database. A token that no key
can decrypt raises `UndecryptableSecret` — there is no silent fallback.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class UndecryptableSecret(Exception):
    """Stored data that none of the configured FERNET_KEYS can decrypt."""


@functools.lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def _fernet() -> MultiFernet:
    return _multifernet(tuple(settings.FERNET_KEYS))


def primary_fernet() -> Fernet:
    return Fernet(settings.FERNET_KEYS[0])


def encrypt_str(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt_str(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise UndecryptableSecret(
            "Stored secret cannot be decrypted with any key in FERNET_KEYS. "
            "Was a key removed before `manage.py rotate_fernet_keys` re-encrypted the data?"
        ) from exc


def encrypt_json(value: Any) -> str:
    return encrypt_str(json.dumps(value, separators=(",", ":"), sort_keys=True))


def decrypt_json(token: str) -> Any:
    return json.loads(decrypt_str(token))


def rotate(token: str) -> str:
    """Re-encrypt a token under the first key (it must decrypt under one of the keys)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise UndecryptableSecret("Stored secret cannot be decrypted with any key in FERNET_KEYS.") from exc


def is_under_primary_key(token: str) -> bool:
    try:
        primary_fernet().decrypt(token.encode())
    except InvalidToken:
        return False
    return True
