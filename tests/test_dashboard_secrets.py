"""The API keys page: owner-only; a new API key is shown once and stored only as a hash."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integrations.lib.tokens import hash_secret
from integrations.models import ApiKey, AuditEvent

from . import factories


def _url(name: str = "dashboard:api_keys", env: str = "acme", **kwargs) -> str:
    return reverse(name, kwargs={"env": env, **kwargs})


def _create(client, name: str = "Backend"):
    return client.post(_url("dashboard:api_key_create"), {"name": name})


def _raw_key(response) -> str:
    return re.search(r'id="new-api-key" value="([^"]+)"', response.content.decode()).group(1)


# --- Access ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("persona", "status"), [("owner", 200), ("editor", 403), ("viewer", 403), ("outsider", 404)])
def test_only_owners_open_the_secrets_page(client, request, environment, persona, status):
    client.force_login(request.getfixturevalue(persona))

    assert client.get(_url()).status_code == status


@pytest.mark.parametrize(("persona", "status"), [("editor", 403), ("viewer", 403), ("outsider", 404)])
def test_only_owners_create_or_revoke_keys(client, request, environment, persona, status):
    key, _ = ApiKey.create(environment, "Existing")
    client.force_login(request.getfixturevalue(persona))

    assert _create(client).status_code == status
    assert client.post(_url("dashboard:api_key_revoke", key_id=key.pk)).status_code == status

    assert ApiKey.objects.count() == 1
    key.refresh_from_db()
    assert key.revoked_at is None


def test_anonymous_users_are_sent_to_login(client, environment):
    for response in (client.get(_url()), _create(client)):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
    assert not ApiKey.objects.exists()


def test_another_environments_key_is_a_404(client, owner, outsider, other_environment):
    theirs, raw = ApiKey.create(other_environment, "Globex key")
    client.force_login(owner)

    assert client.post(_url("dashboard:api_key_revoke", key_id=theirs.pk)).status_code == 404
    assert ApiKey.objects.find(raw) is not None
    assert "Globex key" not in client.get(_url()).content.decode()


# --- Create --------------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_stored_only_as_a_hash(client, owner, environment):
    client.force_login(owner)

    created = _create(client, "Backend")
    assert created.status_code == 302 and created["Location"] == _url()  # Post/Redirect/Get
    assert "rlk_" not in str(dict(client.session.items()))  # waiting server-side, encrypted, for one display
    response = client.get(created["Location"])

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert "data-copy-target=" in body and "/static/dashboard/copy.js" in body  # the Copy button works
    raw = _raw_key(response)
    key = ApiKey.objects.get()
    assert key.name == "Backend"
    assert key.created_by == owner
    assert key.key_hash == hash_secret(raw)
    assert raw.startswith(key.prefix)
    for field in ApiKey._meta.concrete_fields:
        value = field.value_from_object(key)
        assert raw not in str(value), field.name
    assert ApiKey.objects.find(raw) == key
    event = AuditEvent.objects.get(action="api_key.created")
    assert event.actor_user == owner
    assert raw not in str(event.details)

    again = client.get(_url()).content.decode()  # a refresh: the list without it, and no second key
    assert raw not in again and ApiKey.objects.filter(environment=environment).count() == 1
    assert "Backend" in again
    assert f"{key.prefix}…" in again


def test_a_key_needs_a_name(client, owner):
    client.force_login(owner)

    response = _create(client, "   ")

    assert response.status_code == 200
    body = response.content.decode()
    assert "This field is required." in body
    assert 'id="new-api-key"' not in body
    assert not ApiKey.objects.exists()


# --- Revoke --------------------------------------------------------------------------------------


def test_revoking_a_key_stops_it_working(client, owner, environment):
    key, raw = ApiKey.create(environment, "Old backend")
    client.force_login(owner)

    response = client.post(_url("dashboard:api_key_revoke", key_id=key.pk))

    assert response.status_code == 302
    assert response["Location"] == _url()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert ApiKey.objects.find(raw) is None
    assert AuditEvent.objects.get(action="api_key.revoked").actor_user == owner
    body = client.get(_url()).content.decode()
    assert "revoked" in body
    assert _url("dashboard:api_key_revoke", key_id=key.pk) not in body  # no revoke button any more


def test_revoking_asks_for_confirmation_and_htmx_gets_a_full_redirect(client, owner, environment):
    key, raw = ApiKey.create(environment, "Backend")
    client.force_login(owner)

    assert "hx-confirm=" in client.get(_url()).content.decode()
    response = client.post(_url("dashboard:api_key_revoke", key_id=key.pk), headers={"HX-Request": "true"})

    assert response["HX-Redirect"] == _url()
    assert ApiKey.objects.find(raw) is None


def test_revoking_twice_keeps_the_first_date(client, owner, environment):
    key, _ = ApiKey.create(environment, "Backend")
    client.force_login(owner)
    client.post(_url("dashboard:api_key_revoke", key_id=key.pk))
    key.refresh_from_db()
    first = key.revoked_at

    client.post(_url("dashboard:api_key_revoke", key_id=key.pk))

    key.refresh_from_db()
    assert key.revoked_at == first
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_the_revoke_url_is_post_only(client, owner, environment):
    key, raw = ApiKey.create(environment, "Backend")
    client.force_login(owner)

    assert client.get(_url("dashboard:api_key_revoke", key_id=key.pk)).status_code == 405
    assert ApiKey.objects.find(raw) is not None


# --- Queries -------------------------------------------------------------------------------------


def test_the_key_list_runs_a_constant_number_of_queries(client, owner, environment):
    client.force_login(owner)

    def make(n: int) -> None:
        for _ in range(n):
            key, _ = ApiKey.create(environment, "k", created_by=factories.UserFactory())

    make(3)
    with CaptureQueriesContext(connection) as with_3:
        assert client.get(_url()).content.decode().count('class="api-key-row') == 3
    make(12)
    with CaptureQueriesContext(connection) as with_15:
        assert client.get(_url()).content.decode().count('class="api-key-row') == 15

    assert len(with_15) == len(with_3), [q["sql"] for q in with_15.captured_queries]
    assert not any("key_hash" in q["sql"] for q in with_15.captured_queries)
