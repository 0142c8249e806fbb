"""The Members page: owner-only; change roles, remove; an environment always keeps an owner.
Invitations: test_dashboard_invitations.py."""

from __future__ import annotations

import threading

import pytest
from django.contrib.messages import get_messages
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard import members
from integrations.models import AuditEvent, Invitation, Membership, Role, User

from . import factories


def _url(name: str = "dashboard:members", env: str = "acme", **kwargs) -> str:
    return reverse(name, kwargs={"env": env, **kwargs})


def _membership(user, environment) -> Membership:
    return Membership.objects.get(user=user, environment=environment)


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Access --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("persona", "status"), [("owner", 200), ("editor", 403), ("viewer", 403), ("outsider", 404)])
def test_only_owners_open_the_members_page(client, request, environment, persona, status):
    client.force_login(request.getfixturevalue(persona))

    assert client.get(_url()).status_code == status


@pytest.mark.parametrize(("persona", "status"), [("editor", 403), ("viewer", 403), ("outsider", 404)])
def test_only_owners_change_members(client, request, environment, owner, persona, status):
    newcomer = factories.UserFactory(email="new@acme.test")
    client.force_login(request.getfixturevalue(persona))
    owner_membership = _membership(owner, environment)

    invite = {"email": newcomer.email, "role": "owner"}
    assert client.post(_url("dashboard:member_invite"), invite).status_code == status
    assert (
        client.post(_url("dashboard:member_role", member_id=owner_membership.pk), {"role": "viewer"}).status_code
        == status
    )
    assert client.post(_url("dashboard:member_remove", member_id=owner_membership.pk)).status_code == status

    assert not Membership.objects.filter(user=newcomer).exists()
    assert not Invitation.objects.exists()
    assert _membership(owner, environment).role == Role.OWNER


def test_anonymous_users_are_sent_to_login(client, environment):
    for response in (client.get(_url()), client.post(_url("dashboard:member_invite"), {"email": "x@y.test"})):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_another_environments_membership_is_a_404(client, owner, outsider, other_environment):
    theirs = _membership(outsider, other_environment)
    client.force_login(owner)

    assert client.post(_url("dashboard:member_role", member_id=theirs.pk), {"role": "viewer"}).status_code == 404
    assert client.post(_url("dashboard:member_remove", member_id=theirs.pk)).status_code == 404
    assert _membership(outsider, other_environment).role == Role.OWNER
    assert outsider.email not in client.get(_url()).content.decode()


# --- List ----------------------------------------------------------------------------------------


def test_the_page_lists_members_with_their_roles(client, owner, editor, viewer, outsider):
    client.force_login(owner)

    body = client.get(_url()).content.decode()

    for user in (owner, editor, viewer):
        assert user.email in body
    assert outsider.email not in body
    assert body.count('class="member-row"') == 3


def test_the_member_list_runs_a_constant_number_of_queries(client, owner, environment):
    client.force_login(owner)

    factories.MembershipFactory.create_batch(2, environment=environment)
    with CaptureQueriesContext(connection) as with_3:
        assert client.get(_url()).content.decode().count('class="member-row"') == 3
    factories.MembershipFactory.create_batch(12, environment=environment)
    with CaptureQueriesContext(connection) as with_15:
        assert client.get(_url()).content.decode().count('class="member-row"') == 15

    assert len(with_15) == len(with_3), [q["sql"] for q in with_15.captured_queries]


# --- Change role and remove -----------------------------------------------------------------------


def test_an_owner_changes_a_members_role(client, owner, viewer, environment):
    client.force_login(owner)
    membership = _membership(viewer, environment)

    response = client.post(_url("dashboard:member_role", member_id=membership.pk), {"role": "owner"})

    assert response["Location"] == _url()
    assert _membership(viewer, environment).role == Role.OWNER
    event = AuditEvent.objects.get(action="member.role_changed")
    assert event.details["old_role"] == "viewer" and event.details["role"] == "owner"


def test_an_owner_removes_a_member(client, owner, editor, environment):
    client.force_login(owner)

    response = client.post(_url("dashboard:member_remove", member_id=_membership(editor, environment).pk))

    assert response["Location"] == _url()
    assert not Membership.objects.filter(user=editor, environment=environment).exists()
    assert User.objects.filter(pk=editor.pk).exists()  # the account stays
    assert AuditEvent.objects.get(action="member.removed").details["user_id"] == editor.pk
    client.force_login(editor)
    assert client.get(reverse("dashboard:integrations", kwargs={"env": "acme"})).status_code == 404


def test_removing_asks_for_confirmation(client, owner, editor, environment):
    client.force_login(owner)
    membership = _membership(editor, environment)

    assert "hx-confirm=" in client.get(_url()).content.decode()
    response = client.post(_url("dashboard:member_remove", member_id=membership.pk), headers={"HX-Request": "true"})

    assert response["HX-Redirect"] == _url()
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_the_last_owner_cannot_be_demoted_or_removed(client, owner, environment):
    client.force_login(owner)
    membership = _membership(owner, environment)

    demoted = client.post(_url("dashboard:member_role", member_id=membership.pk), {"role": "editor"})
    removed = client.post(_url("dashboard:member_remove", member_id=membership.pk))

    assert _membership(owner, environment).role == Role.OWNER
    for response in (demoted, removed):
        assert response["Location"] == _url()
        assert any("last owner" in m for m in _messages(response))
    assert not AuditEvent.objects.exists()


def test_with_a_second_owner_an_owner_can_step_down(client, owner, editor, environment):
    Membership.objects.filter(user=editor, environment=environment).update(role=Role.OWNER)
    client.force_login(owner)

    response = client.post(
        _url("dashboard:member_role", member_id=_membership(owner, environment).pk), {"role": "viewer"}
    )

    assert _membership(owner, environment).role == Role.VIEWER
    # No longer an owner: sent to the environment, not to a members page that is now a 403.
    assert response["Location"] == reverse("dashboard:integrations", kwargs={"env": "acme"})
    assert client.get(_url()).status_code == 403

    # The remaining owner is now the last one.
    client.force_login(editor)
    last = _membership(editor, environment)
    client.post(_url("dashboard:member_role", member_id=last.pk), {"role": "viewer"})
    assert _membership(editor, environment).role == Role.OWNER


def test_an_unknown_role_is_refused(client, owner, viewer, environment):
    client.force_login(owner)

    response = client.post(
        _url("dashboard:member_role", member_id=_membership(viewer, environment).pk), {"role": "god"}
    )

    assert response.status_code == 302
    assert _membership(viewer, environment).role == Role.VIEWER


# --- Concurrency ---------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_neither_deadlock_nor_lose_the_last_owner(
    environment, owner, editor, monkeypatch
):
    """Each request used to lock the membership it changes, then all owners: A held B's row and
    waited for A's, B the other way round, and PostgreSQL killed one with a deadlock (a 500). The
    rule check waits here until both requests are inside (or a second), which reproduced it."""
    Membership.objects.filter(user=editor, environment=environment).update(role=Role.OWNER)
    targets = {owner.email: _membership(editor, environment), editor.email: _membership(owner, environment)}
    both_inside = threading.Barrier(2, timeout=1)
    original = members._is_last_owner

    def is_last_owner(access, membership):
        try:
            both_inside.wait()  # only one gets here at a time now: the other waits for the environment lock
        except threading.BrokenBarrierError:
            pass
        return original(access, membership)

    monkeypatch.setattr(members, "_is_last_owner", is_last_owner)
    start = threading.Barrier(2)
    outcomes: dict[str, int | str] = {}

    def demote(actor) -> None:
        client = Client()
        client.force_login(actor)
        start.wait()
        try:
            target = targets[actor.email]
            outcomes[actor.email] = client.post(
                _url("dashboard:member_role", member_id=target.pk), {"role": "viewer"}
            ).status_code
        except Exception as exc:  # a deadlock surfaces here as django.db.utils.OperationalError
            outcomes[actor.email] = repr(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=demote, args=(user,)) for user in (owner, editor)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(isinstance(status, int) and status < 500 for status in outcomes.values()), outcomes
    assert sorted(outcomes.values()) == [302, 403]  # the second one is no longer an owner when it runs
    assert Membership.objects.filter(environment=environment, role=Role.OWNER).count() == 1
    assert AuditEvent.objects.filter(action="member.role_changed").count() == 1


def test_an_owner_demoted_meanwhile_can_no_longer_change_roles(client, owner, viewer, environment, monkeypatch):
    """The access check runs before the lock, so the operator's role is checked again under it."""
    client.force_login(owner)
    real = members.get_env_access

    def demoted_right_after_the_check(request, env, role=Role.VIEWER):
        found = real(request, env, role)
        Membership.objects.filter(user=owner, environment=environment).update(role=Role.EDITOR)
        return found

    monkeypatch.setattr(members, "get_env_access", demoted_right_after_the_check)

    response = client.post(
        _url("dashboard:member_role", member_id=_membership(viewer, environment).pk), {"role": "owner"}
    )

    assert response.status_code == 403
    assert _membership(viewer, environment).role == Role.VIEWER
    assert not AuditEvent.objects.exists()
