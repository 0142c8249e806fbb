"""The Members page: who can use an environment, and with which role. Owner-only.

Owners invite people by email (dashboard/invitations.py: the email, and the page where the
invited person sets a password or signs in and joins), revoke pending invitations, change roles and
remove members. An environment always keeps at least one owner.

Concurrency: a role change or a removal first locks the environment's row (`_lock_environment`),
then the memberships. Every such request takes the locks in that one order, so two owners
demoting each other at once run one after the other instead of deadlocking; the second one then
sees the first one's change (the actor may no longer be an owner, the target may be the last one).
"""

from __future__ import annotations

import logging
import smtplib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from integrations import audit, invitations
from integrations.invitations import InvitationError
from integrations.lib import shown_once
from integrations.models import Environment, Invitation, Membership, Role

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest, redirect_after_post
from .invitations import UNSENT_LINK_SLOT, InviteForm, send_invitation, take_unsent_link

logger = logging.getLogger(__name__)

TEMPLATE = "dashboard/members.html"
LAST_OWNER = "An environment needs at least one owner: make someone else an owner first."


def _members_url(access: EnvAccess) -> str:
    return reverse("dashboard:members", kwargs={"env": access.environment.slug})


def render_members(request: DashboardRequest, access: EnvAccess, form: InviteForm) -> HttpResponse:
    members = list(
        Membership.objects.filter(environment=access.environment).select_related("user").order_by("user__email")
    )
    ctx = {
        "access": access,
        "env": access.environment,
        "members": members,
        "invitations": list(invitations.pending(access.environment)),
        "unsent": take_unsent_link(request, access) if not form.is_bound else None,
        "form": form,
        "roles": Role.choices,
    }
    response = render(request, TEMPLATE, ctx, status=400 if form.is_bound and form.errors else 200)
    if ctx["unsent"]:
        add_never_cache_headers(response)  # an invitation link is in this response only
    return response


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
        return redirect(_members_url(access))
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
    return render_members(request, access, InviteForm())


@login_required
@require_POST
def invite(request: DashboardRequest, env: str) -> HttpResponse:
    """Owner: create the invitation and email it, then back to the Members page."""
    access = get_env_access(request, env, Role.OWNER)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return render_members(request, access, form)
    email, role = form.cleaned_data["email"], form.cleaned_data["role"]
    try:
        new = invitations.invite(access.environment, email, role, audit.Actor(user=request.user))
    except InvitationError as exc:
        form.add_error("email", str(exc))
        return render_members(request, access, form)
    try:
        send_invitation(new, request.user)
    except (smtplib.SMTPException, OSError) as exc:
        logger.warning("invitation email to %s not sent: %s", email, exc)
        shown_once.keep(request.session, UNSENT_LINK_SLOT, access.environment.pk, new.invitation.pk, new.token)
        messages.error(request, f"The invitation for {email} was created, but the email could not be sent ({exc}).")
    else:
        messages.success(request, f"Invitation sent to {email} ({new.invitation.get_role_display().lower()}).")
    return redirect_after_post(request, _members_url(access) + "#invitations")


@login_required
@require_POST
def revoke_invitation(request: DashboardRequest, env: str, invitation_id: int) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    invitation = access.get_or_404(Invitation, pk=invitation_id)
    if invitations.revoke(invitation, audit.Actor(user=request.user)):
        messages.success(request, f"Invitation for {invitation.email} revoked: its link no longer works.")
    else:
        messages.info(request, f"The invitation for {invitation.email} was no longer pending.")
    return redirect_after_post(request, _members_url(access) + "#invitations")


@login_required
@require_POST
def change_role(request: DashboardRequest, env: str, member_id: int) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    role = request.POST.get("role", "")
    if role not in Role.values:
        messages.error(request, "Choose a role: viewer, editor or owner.")
        return redirect(_members_url(access))
    with transaction.atomic():
        _lock_environment(request, access)
        membership = access.get_or_404(
            Membership.objects.select_for_update(of=("self",)).select_related("user"), pk=member_id
        )
        if membership.role == role:
            messages.info(request, f"{membership.user.email} is already {membership.get_role_display().lower()}.")
            return redirect(_members_url(access))
        if membership.role == Role.OWNER and _is_last_owner(access, membership):
            messages.error(request, f"{membership.user.email} is the last owner. {LAST_OWNER}")
            return redirect(_members_url(access))
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
            return redirect_after_post(request, _members_url(access))
        _audit(request, access, "member.removed", membership, role=membership.role)
        membership.delete()
    messages.success(request, f"{membership.user.email} removed from {access.environment.name}.")
    # hx-post (for its hx-confirm): a full navigation, so the message shows.
    return redirect_after_post(request, _after_change(request, access)["Location"])
