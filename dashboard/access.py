"""The one access helper every dashboard view goes through.

Anything outside the operator's environments is a 404, never a 403: another environment's
objects must not even be confirmed to exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from integrations.models import Environment, Membership, Role


@dataclass(frozen=True)
class EnvAccess:
    environment: Environment
    membership: Membership

    @property
    def role(self) -> str:
        return self.membership.role

    def can(self, role: str) -> bool:
        return self.membership.has_role(role)


def get_env_access(request: HttpRequest, slug: str, role: str = Role.VIEWER) -> EnvAccess:
    """The environment `slug` if the signed-in user is a member with at least `role`.

    Not a member: 404. A member whose role is too low: 403.
    """
    membership = (
        Membership.objects.select_related("environment")
        .filter(user_id=request.user.pk, environment__slug=slug)
        .first()
    )
    if membership is None:
        raise Http404("No such environment")
    if not membership.has_role(role):
        raise PermissionDenied(f"This needs the {Role(role).label.lower()} role.")
    return EnvAccess(membership.environment, membership)
