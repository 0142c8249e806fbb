"""The Members page: who can use an environment, and with which role. Owner-only.

Owners add existing operators by email (accounts are created by admins, not here), change roles
and remove members. An environment always keeps at least one owner.

Concurrency: a role change or a removal first locks the environment's row (`_lock_environment`),
then the memberships. Every such request takes the locks in that one order, so two owners
demoting each other at once run one after the other instead of deadlocking; the second one then
sees the first one's change (the actor may no longer be an owner, the target may be the last one).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from integrations import audit
from integrations.models import Environment, Membership, Role, User

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest, redirect_after_post

TEMPLATE = "dashboard/members.html"
LAST_OWNER = "An environment needs at least one owner: make someone else an owner first."


class AddMemberForm(forms.Form):
    email = forms.EmailField(label="Email")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def __init__(self, *args, environment: Environment, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.environment = environment
        self.user: User | None = None

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip()
        user = User.objects.filter(email__iexact=email, is_active=True).first()
        if user is None:
            raise forms.ValidationError("No Relink account uses this email. Ask an admin to create the account first.")
        if Membership.objects.filter(environment=self.environment, user=user).exists():
            raise forms.ValidationError(f"{user.email} is already a member; change their role below.")
        self.user = user
        return email


def _render(request: DashboardRequest, access: EnvAccess, form: AddMemberForm) -> HttpResponse:
    members = list(
        Membership.objects.filter(environment=access.environment).select_related("user").order_by("user__email")
    )
    ctx = {
        "access": access,
        "env": access.environment,
        "members": members,
        "form": form,
        "roles": Role.choices,
    }
    return render(request, TEMPLATE, ctx)


def _audit(request: DashboardRequest, access: EnvAccess, action: str, membership: Membership, **details) -> None:
    audit.record(
        access.environment.pk,
        action,
        audit.Actor(user=request.user),
        user_id=membership.user_id,
        email=membership.user.email,
        **details,
    )


def _after_change(request: DashboardRequest, access: EnvAccess) -> HttpResponse:
    """Back to the members page, or to the environment if the operator is no longer an owner."""
    still_owner = Membership.objects.filter(
        environment=access.environment, user_id=request.user.pk, role=Role.OWNER
    ).exists()
    if still_owner:
        return redirect("dashboard:members", env=access.environment.slug)
    if Membership.objects.filter(environment=access.environment, user_id=request.user.pk).exists():
        return redirect("dashboard:integrations", env=access.environment.slug)
    return redirect("dashboard:home")


def _lock_environment(request: DashboardRequest, access: EnvAccess) -> None:
    """Serialize the environment's membership changes: lock its row (inside a transaction), before
    any membership row. Then re-check, under the lock, that the operator is still an owner: a
    concurrent change may have demoted or removed them since the access check."""
    list(Environment.objects.select_for_update(no_key=True).filter(pk=access.environment.pk).values_list("pk"))
    if not Membership.objects.filter(environment=access.environment, user_id=request.user.pk, role=Role.OWNER).exists():
        raise PermissionDenied("This needs the owner role.")


def _is_last_owner(access: EnvAccess, membership: Membership) -> bool:
    """Whether `membership` is the environment's only owner. Call inside a transaction: locks the owners."""
    owners = list(
        Membership.objects.select_for_update()
        .filter(environment=access.environment, role=Role.OWNER)
        .values_list("pk", flat=True)
    )
    return owners == [membership.pk]


@login_required
def members(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    return _render(request, access, AddMemberForm(environment=access.environment))


@login_required
@require_POST
def add_member(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    form = AddMemberForm(request.POST, environment=access.environment)
    if not form.is_valid():
        return _render(request, access, form)
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            environment=access.environment, user=form.user, defaults={"role": form.cleaned_data["role"]}
        )
        if created:
            _audit(request, access, "member.added", membership, role=membership.role)
    assert form.user is not None  # a valid form found the user
    if created:
        messages.success(request, f"{form.user.email} added as {membership.get_role_display().lower()}.")
    else:
        messages.info(request, f"{form.user.email} is already a member.")
    return redirect("dashboard:members", env=access.environment.slug)


@login_required
@require_POST
def change_role(request: DashboardRequest, env: str, member_id: int) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    role = request.POST.get("role", "")
    if role not in Role.values:
        messages.error(request, "Choose a role: viewer, editor or owner.")
        return redirect("dashboard:members", env=access.environment.slug)
    with transaction.atomic():
        _lock_environment(request, access)
        membership = access.get_or_404(
            Membership.objects.select_for_update(of=("self",)).select_related("user"), pk=member_id
        )
        if membership.role == role:
            messages.info(request, f"{membership.user.email} is already {membership.get_role_display().lower()}.")
            return redirect("dashboard:members", env=access.environment.slug)
        if membership.role == Role.OWNER and _is_last_owner(access, membership):
            messages.error(request, f"{membership.user.email} is the last owner. {LAST_OWNER}")
            return redirect("dashboard:members", env=access.environment.slug)
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        _audit(request, access, "member.role_changed", membership, old_role=old, role=role)
    messages.success(request, f"{membership.user.email} is now {membership.get_role_display().lower()}.")
    return _after_change(request, access)


@login_required
@require_POST
def remove_member(request: DashboardRequest, env: str, member_id: int) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    with transaction.atomic():
        _lock_environment(request, access)
        membership = access.get_or_404(
            Membership.objects.select_for_update(of=("self",)).select_related("user"), pk=member_id
        )
        if membership.role == Role.OWNER and _is_last_owner(access, membership):
            messages.error(request, f"{membership.user.email} is the last owner and cannot be removed. {LAST_OWNER}")
            return redirect_after_post(request, reverse("dashboard:members", kwargs={"env": access.environment.slug}))
        _audit(request, access, "member.removed", membership, role=membership.role)
        membership.delete()
    messages.success(request, f"{membership.user.email} removed from {access.environment.name}.")
    # hx-post (for its hx-confirm): a full navigation, so the message shows.
    return redirect_after_post(request, _after_change(request, access)["Location"])
