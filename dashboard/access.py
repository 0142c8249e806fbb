"""The one access helper every dashboard view goes through.

Anything outside the operator's environments is a 404, never a 403: another environment's
objects must not even be confirmed to exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from dashboard.htmx import DashboardRequest
from integrations.models import Environment, Membership, Role

SESSION_KEY = "environment_slug"


@dataclass(frozen=True)
class EnvAccess:
    environment: Environment
    membership: Membership

    @property
    def role(self) -> str:
        return self.membership.role

    def can(self, role: str) -> bool:
        return self.membership.has_role(role)

    def require(self, role: str) -> None:
        """403 unless the member has at least `role`."""
        if not self.can(role):
            raise PermissionDenied(f"This needs the {Role(role).label.lower()} role.")

    def get_or_404(self, queryset: type[Model] | QuerySet, **lookups: Any) -> Any:
        """The object of this environment matching `lookups`, else 404 (also for another
        environment's object, whose existence is not confirmed)."""
        return get_object_or_404(queryset, environment=self.environment, **lookups)


def user_memberships(request: DashboardRequest) -> list[Membership]:
    """The signed-in user's memberships with their environments, by environment name: one query
    per request, shared by the access check, the environment switcher and the home redirect."""
    cached = getattr(request, "_relink_memberships", None)
    if cached is None:
        cached = list(
            Membership.objects.filter(user_id=request.user.pk)
            .select_related("environment")
            .order_by("environment__name")
        )
        request._relink_memberships = cached  # type: ignore[attr-defined]  # a per-request memo
    return cached


def get_env_access(request: DashboardRequest, slug: str, role: str = Role.VIEWER) -> EnvAccess:
    """The environment `slug` if the signed-in user is a member with at least `role`.

    Not a member: 404. A member whose role is too low: 403.
    """
    membership = next((m for m in user_memberships(request) if m.environment.slug == slug), None)
    if membership is None:
        raise Http404("No such environment")
    access = EnvAccess(membership.environment, membership)
    access.require(role)
    return access


def remember_environment(request: DashboardRequest, environment: Environment) -> None:
    """The environment `/` sends the operator back to; the session is written only on change."""
    if request.session.get(SESSION_KEY) != environment.slug:
        request.session[SESSION_KEY] = environment.slug
