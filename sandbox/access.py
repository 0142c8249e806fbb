"""Who may see and manage a sandbox company: the one check every HR admin page goes through.

A company belongs to an environment. Its members see it; editors and owners also change it
(create and revoke keys, revoke connected apps); staff see and change every company, including
those with no environment. Anyone else gets a 404, never a 403: another environment's company
must not even be confirmed to exist. A member below the needed role gets 403, as on the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from integrations.models import ROLE_RANK, Environment, Membership, Role, User

from .models import SandboxCompany, SandboxCompanyQuerySet

# The role a member needs to change a company (keys, connected apps) or to create one.
MANAGE_ROLE = Role.EDITOR


def _user(request: HttpRequest) -> User | None:
    """The signed-in, active user (AUTH_USER_MODEL is integrations.User), else None."""
    user = request.user
    if not isinstance(user, User) or not user.is_active:
        return None
    return user


@dataclass(frozen=True)
class CompanyAccess:
    company: SandboxCompany
    is_staff: bool
    membership: Membership | None

    def can(self, role: str) -> bool:
        if self.is_staff:
            return True
        return self.membership is not None and self.membership.has_role(role)

    @property
    def can_manage(self) -> bool:
        return self.can(MANAGE_ROLE)

    def require(self, role: str) -> None:
        """403 unless the user has at least `role` in the company's environment (or is staff)."""
        if not self.can(role):
            raise PermissionDenied(f"This needs the {Role(role).label.lower()} role.")


def visible_companies(request: HttpRequest) -> SandboxCompanyQuerySet:
    """The companies the signed-in user may see (all for staff)."""
    user = _user(request)
    return SandboxCompany.objects.visible_to(user) if user is not None else SandboxCompany.objects.none()


def manageable_companies(request: HttpRequest) -> SandboxCompanyQuerySet:
    """The companies the signed-in user may change — and so grant an application access to on
    the OAuth consent page: all for staff, else those of environments where the user is at least
    an editor."""
    user = _user(request)
    if user is None:
        return SandboxCompany.objects.none()
    if user.is_staff:
        return SandboxCompany.objects.all()
    roles = [role for role in Role if ROLE_RANK[role] >= ROLE_RANK[Role(MANAGE_ROLE)]]
    return SandboxCompany.objects.filter(
        environment__memberships__user_id=user.pk, environment__memberships__role__in=roles
    )


def get_company_access(request: HttpRequest, slug: str, role: str = Role.VIEWER) -> CompanyAccess:
    """The company `slug` if the user may see it and has at least `role`.

    Not visible (unknown, another environment's, or without environment for a non-staff user): 404.
    Visible but the role is too low: 403.
    """
    user = _user(request)
    company = None
    if user is not None:
        company = SandboxCompany.objects.visible_to(user).select_related("environment").filter(slug=slug).first()
    if user is None or company is None:
        raise Http404("No such sandbox company")
    membership = None
    if company.environment_id is not None:
        membership = Membership.objects.filter(environment_id=company.environment_id, user_id=user.pk).first()
    access = CompanyAccess(company, is_staff=bool(user.is_staff), membership=membership)
    access.require(role)
    return access


def environments_to_create_in(request: HttpRequest) -> list[Environment]:
    """Where the user may create a sandbox company: every environment for staff, else those where
    the user is at least an editor."""
    user = _user(request)
    if user is None:
        return []
    if user.is_staff:
        return list(Environment.objects.order_by("name"))
    memberships = Membership.objects.filter(user_id=user.pk).select_related("environment")
    return sorted((m.environment for m in memberships if m.has_role(MANAGE_ROLE)), key=lambda e: e.name)


def get_environment_to_create_in(request: HttpRequest, slug: str) -> Environment:
    """The environment `slug` if the user may create a company there: 404 for one the user is not
    a member of (staff: any existing one), 403 for a member below editor."""
    user = _user(request)
    if user is None:
        raise Http404("No such environment")
    if user.is_staff:
        environment = Environment.objects.filter(slug=slug).first()
        if environment is None:
            raise Http404("No such environment")
        return environment
    membership = Membership.objects.filter(environment__slug=slug, user_id=user.pk).select_related("environment")
    found = membership.first()
    if found is None:
        raise Http404("No such environment")
    if not found.has_role(MANAGE_ROLE):
        raise PermissionDenied(f"This needs the {Role(MANAGE_ROLE).label.lower()} role.")
    return found.environment
