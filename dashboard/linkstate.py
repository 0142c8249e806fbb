"""A broken integration's newest reconnection link, as the lists and the status card show it:
none, sent (not opened), opened, expired, completed or revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from connect_flow.links import latest_reconnect_links
from connect_flow.models import LIVE_STATUSES, ConnectionLink
from integrations.models import Integration, IntegrationState

NO_LINK = "NONE"


@dataclass(frozen=True)
class LinkState:
    """A broken integration's newest reconnection link, for the lists."""

    code: str  # NONE, PENDING (sent), OPENED, EXPIRED, COMPLETED, REVOKED
    link: ConnectionLink | None

    @property
    def live(self) -> bool:
        return self.code in LIVE_STATUSES


def is_broken(integration: Integration) -> bool:
    """INVALID, or still ACTIVE while its authentication fails: a reconnection would fix it."""
    return integration.state == IntegrationState.INVALID or (
        integration.state == IntegrationState.ACTIVE and integration.auth_failing_since is not None
    )


def link_states(integrations: list[Integration], now: datetime | None = None) -> dict[str, LinkState]:
    """The link state of each broken integration among `integrations` (two queries in all)."""
    now = now or timezone.now()
    broken = [i.pk for i in integrations if is_broken(i)]
    latest = latest_reconnect_links(broken)
    return {pk: LinkState(latest[pk].status_at(now) if pk in latest else NO_LINK, latest.get(pk)) for pk in broken}
