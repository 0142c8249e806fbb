"""The audit trail's one writer: every AuditEvent row is written here, in one shape.

`record()` writes one event; `event()` builds one unsaved, for `record_many()` (bulk writers: the
expiry sweep, the demo seeder). The actor is an `Actor` value: an operator, an API key, or a
label for everyone else ("system", "end customer").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from .models import ApiKey, AuditEvent, User


@dataclass(frozen=True)
class Actor:
    user: User | None = None
    api_key: ApiKey | None = None
    label: str = ""

    @classmethod
    def of(cls, user: Any = None, api_key: ApiKey | None = None, *, otherwise: str = "system") -> Actor:
        """The operator or API key that acted, else `otherwise` ("system", "end customer")."""
        if user is not None or api_key is not None:
            return cls(user=user, api_key=api_key)
        return cls(label=otherwise)


SYSTEM = Actor(label="system")
END_CUSTOMER = Actor(label="end customer")


def event(
    environment_id: int,
    action: str,
    actor: Actor = SYSTEM,
    *,
    integration_id: str = "",
    at: datetime | None = None,
    **details: Any,
) -> AuditEvent:
    """An unsaved event (for `record_many`)."""
    return AuditEvent(
        environment_id=environment_id,
        integration_id=integration_id or "",
        actor_user=actor.user,
        actor_api_key=actor.api_key,
        actor_label=actor.label,
        action=action,
        details=details,
        created_at=at or timezone.now(),
    )


def record(
    environment_id: int,
    action: str,
    actor: Actor = SYSTEM,
    *,
    integration_id: str = "",
    at: datetime | None = None,
    **details: Any,
) -> AuditEvent:
    """Write one event: `action` (e.g. "link.created") by `actor`, with JSON `details`."""
    created = event(environment_id, action, actor, integration_id=integration_id, at=at, **details)
    created.save()
    return created


def record_many(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    return AuditEvent.objects.bulk_create(events)
