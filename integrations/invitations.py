"""Invitations: an owner invites a person by email to join an environment with a role.

The link's token is 32 random bytes shown only in the email; the row keeps its SHA-256, like every
token. An invitation is used once (accepted), until it expires (INVITATION_VALIDITY) or an owner
revokes it; inviting the same address again replaces the pending invitation, so a person never
holds two live links to one environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import audit
from .lib.tokens import hash_secret, new_secret
from .models import Environment, Invitation, Membership, Role, User

INVITATION_VALIDITY = timedelta(days=7)


class InvitationError(ValueError):
    """The invitation cannot be created or accepted; the message is for the person."""


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str  # the raw token: in the email only


def pending(environment: Environment):
    """The environment's invitations that can still be accepted, newest first."""
    return Invitation.objects.filter(
        environment=environment, accepted_at=None, revoked_at=None, expires_at__gt=timezone.now()
    ).select_related("invited_by")


def invite(environment: Environment, email: str, role: str, actor: audit.Actor) -> NewInvitation:
    """A new invitation for `email` with `role`, replacing (revoking) a pending one for the same
    address; InvitationError if the address already belongs to a member."""
    email = email.strip()
    if role not in Role.values:
        raise InvitationError("Choose a role: viewer, editor or owner.")
    if Membership.objects.filter(environment=environment, user__email__iexact=email).exists():
        raise InvitationError(f"{email} is already a member; change their role below.")
    token = new_secret("inv_")
    now = timezone.now()
    with transaction.atomic():
        Invitation.objects.filter(
            environment=environment, email__iexact=email, accepted_at=None, revoked_at=None
        ).update(revoked_at=now)
        invitation = Invitation.objects.create(
            environment=environment,
            email=email,
            role=role,
            token_hash=hash_secret(token),
            invited_by=actor.user,
            created_at=now,
            expires_at=now + INVITATION_VALIDITY,
        )
        audit.record(environment.pk, "member.invited", actor, email=email, role=role, invitation_id=invitation.pk)
    return NewInvitation(invitation, token)


def find(token: str) -> Invitation | None:
    """The invitation whose token is `token` if it can still be accepted, else None (unknown,
    used, revoked and expired tokens look the same to whoever holds them)."""
    if not token or len(token) > 100:
        return None
    invitation = (
        Invitation.objects.filter(token_hash=hash_secret(token)).select_related("environment", "invited_by").first()
    )
    return invitation if invitation is not None and invitation.is_pending() else None


def account_for(invitation: Invitation) -> User | None:
    """The existing account the invitation's address belongs to, if any."""
    return User.objects.filter(email__iexact=invitation.email).first()


def accept(invitation: Invitation, user: User) -> Membership:
    """Make `user` a member with the invitation's role and mark the invitation used, once: the row
    is locked, so two tabs submitting at once accept it one time (the second gets InvitationError).
    A user who is already a member keeps the higher of the two roles."""
    if user.email.lower() != invitation.email.lower():
        raise InvitationError(f"This invitation is for {invitation.email}.")
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if not locked.is_pending():
            raise InvitationError("This invitation has already been used, revoked or has expired.")
        membership, created = Membership.objects.get_or_create(
            environment_id=locked.environment_id, user=user, defaults={"role": locked.role}
        )
        if not created and not membership.has_role(locked.role):
            membership.role = locked.role
            membership.save(update_fields=["role"])
        locked.accepted_at = timezone.now()
        locked.accepted_by = user
        locked.save(update_fields=["accepted_at", "accepted_by"])
        audit.record(
            locked.environment_id,
            "member.joined",
            audit.Actor(user=user),
            email=user.email,
            role=membership.role,
            invitation_id=locked.pk,
        )
    return membership


def join_with_new_account(invitation: Invitation, name: str, password: str) -> Membership:
    """Create the invited person's account (email from the invitation, `password` already checked
    against the password validators) and accept the invitation, in one transaction: a failure
    leaves neither the account nor the membership."""
    try:
        with transaction.atomic():
            user = User.objects.create_user(invitation.email, password, name=name.strip())
            return accept(invitation, user)
    except IntegrityError:
        raise InvitationError(f"An account for {invitation.email} exists already: sign in to accept.") from None


def revoke(invitation: Invitation, actor: audit.Actor) -> bool:
    """Revoke a pending invitation; False if it was no longer pending."""
    with transaction.atomic():
        updated = Invitation.objects.filter(pk=invitation.pk, accepted_at=None, revoked_at=None).update(
            revoked_at=timezone.now()
        )
        if updated:
            audit.record(
                invitation.environment_id,
                "member.invitation_revoked",
                actor,
                email=invitation.email,
                invitation_id=invitation.pk,
            )
    return bool(updated)
