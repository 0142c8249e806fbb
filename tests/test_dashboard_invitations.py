"""Member invitations: an owner invites by email (a real SMTP server of the test's own), the
invited person opens the link, sets a password or signs in, and joins once with the role."""

from __future__ import annotations

import re
import socket
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from integrations import audit, invitations
from integrations.lib.tokens import hash_secret
from integrations.models import AuditEvent, Invitation, Membership, Role, User

from . import factories

NEW_PASSWORD = "correct horse battery staple 42"


def _members(env: str = "acme") -> str:
    return reverse("dashboard:members", kwargs={"env": env})


def _invite_url(env: str = "acme") -> str:
    return reverse("dashboard:member_invite", kwargs={"env": env})


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _link_path(smtp, address: str) -> str:
    """The invitation link of the last email to `address`, as a path on the test client's host."""
    message = smtp.wait_for(address)
    links = [link for link in smtp.links(message) if "/invite/" in link]
    assert len(links) == 1, smtp.text(message)
    return re.sub(r"^https?://[^/]+", "", links[0])


def _token(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[1]


# --- Inviting ------------------------------------------------------------------------------------


def test_an_owner_invites_by_email_and_the_email_arrives(client, owner, environment, smtp):
    client.force_login(owner)

    response = client.post(_invite_url(), {"email": "New.Person@umbrella.test", "role": "editor"})

    assert response.status_code == 302 and response["Location"] == _members() + "#invitations"
    assert _messages(response) == ["Invitation sent to New.Person@umbrella.test (editor)."]
    message = smtp.wait_for("new.person@umbrella.test")
    assert message["Subject"] == "You are invited to Acme production on Relink"
    assert message["Reply-To"] == owner.email
    text = smtp.text(message)
    assert "with the editor role" in text
    html = smtp.html(message)
    assert html is not None and "Join Acme production" in html
    path = _link_path(smtp, "new.person@umbrella.test")
    # Only the hash is stored; the token is in the email only.
    invitation = Invitation.objects.get()
    assert invitation.token_hash == hash_secret(_token(path))
    assert _token(path) not in str(Invitation.objects.values().get())
    assert AuditEvent.objects.get(action="member.invited").details["role"] == "editor"
    page = client.get(_members()).content.decode()
    assert "New.Person@umbrella.test" in page and 'class="invitation-row"' in page
    assert _token(path) not in page


def test_inviting_again_replaces_the_pending_invitation(client, owner, environment, smtp):
    client.force_login(owner)
    client.post(_invite_url(), {"email": "again@umbrella.test", "role": "viewer"})
    first = _link_path(smtp, "again@umbrella.test")

    client.post(_invite_url(), {"email": "again@umbrella.test", "role": "owner"})

    assert len(invitations.pending(environment)) == 1
    assert client.get(first).status_code == 404  # the first link no longer works
    second = [m for m in smtp.to("again@umbrella.test")][-1]
    assert "owner role" in smtp.text(second)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "not-an-email", "role": "viewer"}, "Enter a valid email address."),
        ({"email": "x@umbrella.test", "role": "god"}, "Select a valid choice."),
        ({"email": "editor@acme.test", "role": "owner"}, "already a member"),
    ],
)
def test_bad_invitations_rerender_with_a_message_and_send_nothing(client, owner, editor, smtp, data, message):
    client.force_login(owner)

    response = client.post(_invite_url(), data)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Invitation.objects.exists()
    assert smtp.messages == []


def test_when_the_email_cannot_be_sent_the_link_is_shown_once(client, owner, environment, settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    client.force_login(owner)

    response = client.post(_invite_url(), {"email": "lost@umbrella.test", "role": "viewer"}, follow=True)

    body = response.content.decode()
    assert "the email could not be sent" in body
    link = re.search(r'id="invitation-url" value="([^"]+)"', body)
    assert link is not None
    assert Invitation.objects.get().token_hash == hash_secret(_token(link.group(1)))
    assert response["Cache-Control"].startswith("max-age=0")
    # Shown once: a refresh shows no link and creates nothing.
    again = client.get(_members()).content.decode()
    assert 'id="invitation-url"' not in again
    assert Invitation.objects.count() == 1


def test_an_owner_revokes_a_pending_invitation(client, owner, environment, smtp):
    client.force_login(owner)
    client.post(_invite_url(), {"email": "gone@umbrella.test", "role": "viewer"})
    path = _link_path(smtp, "gone@umbrella.test")
    invitation = Invitation.objects.get()

    url = reverse("dashboard:invitation_revoke", kwargs={"env": "acme", "invitation_id": invitation.pk})
    response = client.post(url, HTTP_HX_REQUEST="true")

    assert response.status_code == 200 and response["HX-Redirect"] == _members() + "#invitations"
    assert Invitation.objects.get().revoked_at is not None
    assert client.get(path).status_code == 404
    assert 'class="invitation-row"' not in client.get(_members()).content.decode()
    assert AuditEvent.objects.filter(action="member.invitation_revoked").exists()


def test_another_environments_invitation_cannot_be_revoked(client, owner, other_environment):
    theirs = factories.InvitationFactory(environment=other_environment)
    client.force_login(owner)

    url = reverse("dashboard:invitation_revoke", kwargs={"env": "acme", "invitation_id": theirs.pk})

    assert client.post(url).status_code == 404
    assert Invitation.objects.get(pk=theirs.pk).revoked_at is None


# --- Accepting -----------------------------------------------------------------------------------


def _invite(environment, owner, email="newbie@umbrella.test", role=Role.EDITOR) -> str:
    new = invitations.invite(environment, email, role, audit.Actor(user=owner))
    return reverse("dashboard:invitation", kwargs={"token": new.token})


def test_a_new_person_sets_a_password_and_joins(client, owner, environment):
    path = _invite(environment, owner)

    page = client.get(path)
    assert page.status_code == 200
    assert page["Referrer-Policy"] == "same-origin" and "no-store" in page["Cache-Control"]
    assert "Create account and join" in page.content.decode()
    assert not User.objects.filter(email="newbie@umbrella.test").exists()  # GET changes nothing

    response = client.post(path, {"name": "Newbie", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard:overview", kwargs={"env": "acme"})
    user = User.objects.get(email="newbie@umbrella.test")
    assert user.check_password(NEW_PASSWORD) and user.name == "Newbie"
    assert Membership.objects.get(user=user, environment=environment).role == Role.EDITOR
    assert client.session[SESSION_KEY] == str(user.pk)
    assert client.get(response["Location"]).status_code == 200
    assert AuditEvent.objects.get(action="member.joined").actor_user == user
    # Single use: the link is dead now, also after signing out.
    client.logout()
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    ("password1", "password2", "message"),
    [
        ("short", "short", "too short"),
        ("password", "password", "too common"),
        (NEW_PASSWORD, NEW_PASSWORD + "x", "The two passwords differ."),
    ],
)
def test_a_weak_or_mistyped_password_creates_nothing(client, owner, environment, password1, password2, message):
    path = _invite(environment, owner)

    response = client.post(path, {"name": "N", "password1": password1, "password2": password2})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not User.objects.filter(email="newbie@umbrella.test").exists()
    assert Invitation.objects.get().accepted_at is None


def test_someone_with_an_account_signs_in_then_joins(client, owner, environment, other_environment):
    existing = factories.member(other_environment, Role.VIEWER, "newbie@umbrella.test")
    path = _invite(environment, owner)

    page = client.get(path).content.decode()
    assert "Sign in to accept" in page and "?next=" + path in page
    client.force_login(existing)
    assert "Join Acme production" in client.get(path).content.decode()

    response = client.post(path)

    assert response.status_code == 302
    assert Membership.objects.get(user=existing, environment=environment).role == Role.EDITOR
    assert User.objects.filter(email="newbie@umbrella.test").count() == 1


def test_signed_in_as_someone_else_nothing_happens(client, owner, environment, viewer):
    path = _invite(environment, owner)
    client.force_login(viewer)

    response = client.post(path)

    assert response.status_code == 403
    assert "this invitation is for newbie@umbrella.test" in response.content.decode()
    assert Invitation.objects.get().accepted_at is None
    assert not User.objects.filter(email="newbie@umbrella.test").exists()


def test_expired_revoked_and_unknown_links_look_the_same(client, owner, environment):
    expired = _invite(environment, owner, email="late@umbrella.test")
    revoked = _invite(environment, owner, email="revoked@umbrella.test")
    invitations.revoke(Invitation.objects.get(email="revoked@umbrella.test"), audit.Actor(user=owner))

    with time_machine.travel(timezone.now() + invitations.INVITATION_VALIDITY + timedelta(minutes=1)):
        bodies = [client.get(path) for path in (expired, revoked, "/invite/inv_guess/")]

    for response in bodies:
        assert response.status_code == 404
        assert "This invitation is not valid" in response.content.decode()
        assert "Acme production" not in response.content.decode()
    with time_machine.travel(timezone.now() + invitations.INVITATION_VALIDITY + timedelta(minutes=1)):
        client.post(expired, {"name": "L", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert not User.objects.filter(email="late@umbrella.test").exists()


def test_accepting_twice_joins_once(owner, environment):
    _invite(environment, owner)
    invitation = Invitation.objects.get()
    user = factories.UserFactory(email="newbie@umbrella.test")

    invitations.accept(invitation, user)
    with pytest.raises(invitations.InvitationError):
        invitations.accept(invitation, user)

    assert Membership.objects.filter(user=user, environment=environment).count() == 1
    assert AuditEvent.objects.filter(action="member.joined").count() == 1


def test_a_member_invited_to_a_higher_role_keeps_the_higher_one(owner, environment):
    user = factories.UserFactory(email="newbie@umbrella.test")
    new = invitations.invite(environment, user.email, Role.OWNER, audit.Actor(user=owner))
    Membership.objects.create(environment=environment, user=user, role=Role.VIEWER)  # joined meanwhile

    invitations.accept(new.invitation, user)

    assert Membership.objects.get(user=user, environment=environment).role == Role.OWNER
