"""A secret shown once, after a redirect (Post/Redirect/Get).

The POST that creates a key stores the raw value in the session — server-side (the database
session backend), encrypted with FERNET_KEYS like every stored secret, never in a cookie — and
redirects; the next GET of the page takes it out and shows it. A refresh or Back then shows the
page without it and creates nothing. One slot per kind of secret; `owner` names what it belongs
to (an environment, a company) so it is never shown on another's page.
"""

from __future__ import annotations

from typing import Any

from . import crypto


def keep(session: Any, slot: str, owner: object, item_id: object, value: str) -> None:
    session[f"shown_once:{slot}"] = {"owner": str(owner), "id": item_id, "value": crypto.encrypt_str(value)}


def take(session: Any, slot: str, owner: object) -> tuple[Any, str] | None:
    """(item id, raw value) kept for `owner`, removed from the session; None if there is none."""
    key = f"shown_once:{slot}"
    pending = session.get(key)
    if not isinstance(pending, dict) or pending.get("owner") != str(owner):
        return None
    del session[key]
    try:
        return pending.get("id"), crypto.decrypt_str(str(pending.get("value", "")))
    except crypto.UndecryptableSecret:
        return None
