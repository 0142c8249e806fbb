"""The link lifecycle: validity windows, completion exactly once, reconnect rules."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.utils import timezone

from connect_flow import links
from connect_flow.models import ConnectionLink
from integrations import syncs
from integrations.models import AuditEvent, Integration, WebhookDelivery
from integrations.providers.base import (
    AuthResult,
    AuthType,
    Category,
    OAuthProvider,
    Outcome,
    Provider,
    ProviderAuthFailed,
)

from . import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    monkeypatch.setattr(syncs, "_enqueue", lambda ids, **kwargs: None)


@pytest.fixture
def integration(environment):
    return factories.IntegrationFactory(environment=environment, credentials={"api_key": "old"})


@pytest.mark.parametrize(
    ("link_type", "valid_at", "gone_at"),
    [
        ("EMBEDDED", timedelta(minutes=59), timedelta(minutes=61)),
        ("MAGIC_LINK", timedelta(days=364), timedelta(days=366)),
    ],
)
def test_links_are_valid_for_their_window(integration, link_type, valid_at, gone_at):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        created = links.create_relink_link(integration, link_type=link_type)
    with time_machine.travel(start + valid_at):
        assert links.find_link(created.token).status == "PENDING"
    with time_machine.travel(start + gone_at):
        assert links.find_link(created.token).status == "EXPIRED"
        with pytest.raises(links.LinkUnusable) as exc:
            links.complete(created.link.pk, credentials={"api_key": "new"}, opted_out_fields=[])
        assert exc.value.status == "EXPIRED"


def test_the_raw_token_is_stored_nowhere(integration):
    created = links.create_relink_link(integration, link_type="MAGIC_LINK")
    links.mark_opened(links.find_link(created.token))
    links.complete(created.link.pk, credentials={"api_key": "new"}, opted_out_fields=[])
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                assert created.token not in repr(row), table


def test_a_reconnect_applies_credentials_scope_and_clears_the_streak(integration, environment):
    new_scope = factories.ScopeConfigFactory(environment=environment)
    Integration.objects.filter(pk=integration.pk).update(
        state="INVALID", invalid_since=timezone.now(), auth_failing_since=timezone.now() - timedelta(days=3)
    )
    factories.WebhookEndpointFactory(environment=environment)
    created = links.create_relink_link(integration, scope_config=new_scope)
    done = links.complete(created.link.pk, credentials={"api_key": "new"}, opted_out_fields=["hris_employees.salary"])
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "ACTIVE" and fresh.invalid_since is None and fresh.auth_failing_since is None
    assert fresh.get_credentials() == {"api_key": "new"}
    assert fresh.scope_config == new_scope and fresh.data_expired_at is not None
    assert fresh.opted_out_fields == ["hris_employees.salary"]
    assert fresh.syncs.filter(status="QUEUED").count() == 1
    assert links.find_link(created.token).status == "COMPLETED"
    assert links.exchange_activation_token(environment, done.activation_token) == fresh
    states = [
        d.payload["data"]["state"] for d in WebhookDelivery.objects.filter(event_type="integration-state-changed")
    ]
    assert states == ["ACTIVE"]
    with pytest.raises(links.LinkUnusable):
        links.complete(created.link.pk, credentials={"api_key": "again"}, opted_out_fields=[])


def test_a_disabled_integration_stays_inactive_after_a_reconnect(integration):
    Integration.objects.filter(pk=integration.pk).update(enabled=False, state="INACTIVE")
    created = links.create_relink_link(integration)
    links.complete(created.link.pk, credentials={"api_key": "new"}, opted_out_fields=[])
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.state == "INACTIVE" and fresh.get_credentials() == {"api_key": "new"}


def test_until_completion_syncs_use_the_old_credentials_and_scope(integration, environment):
    old_scope = integration.scope_config
    new_scope = factories.ScopeConfigFactory(environment=environment)
    created = links.create_relink_link(integration, scope_config=new_scope)
    before, _ = syncs.queue_sync(integration.pk)
    assert before.scope_config == old_scope
    assert Integration.objects.get(pk=integration.pk).get_credentials() == {"api_key": "old"}
    before.status = "SUCCEEDED"
    before.save()
    links.complete(created.link.pk, credentials={"api_key": "new"}, opted_out_fields=[])
    after = Integration.objects.get(pk=integration.pk).syncs.get(status="QUEUED")
    assert after.scope_config == new_scope


def test_scope_config_of_another_environment_is_refused(integration, other_environment):
    with pytest.raises(links.LinkInputError):
        links.create_relink_link(integration, scope_config=factories.ScopeConfigFactory(environment=other_environment))
    with pytest.raises(links.LinkInputError):
        links.create_relink_link(integration, language="nl")


def test_revoke_and_open_are_audited_and_get_never_completes(integration):
    created = links.create_relink_link(integration)
    link = links.find_link(created.token)
    links.mark_opened(link)
    links.mark_opened(link)
    assert links.find_link(created.token).status == "OPENED"
    assert links.revoke(link) is True and links.revoke(link) is False
    actions = list(AuditEvent.objects.filter(details__link_id=link.pk).values_list("action", flat=True))
    assert sorted(actions) == ["link.created", "link.opened", "link.revoked"]


def test_unknown_tokens_find_nothing():
    assert links.find_link("nope") is None
    assert links.find_link("") is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_completions_apply_once(integration):
    created = links.create_relink_link(integration)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def submit(key: str) -> None:
        barrier.wait()
        try:
            links.complete(created.link.pk, credentials={"api_key": key}, opted_out_fields=[])
            outcomes.append("completed")
        except links.LinkUnusable as exc:
            outcomes.append(exc.status)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["COMPLETED", "completed"]
    assert AuditEvent.objects.filter(action="link.completed").count() == 1
    assert Integration.objects.get(pk=integration.pk).syncs.count() == 1
    assert ConnectionLink.objects.get(pk=created.link.pk).completed_at is not None


class _KeyProvider(Provider):
    """Accepts the key "good", refuses anything else; no models to probe."""

    id, label, category, auth_type = "keytool", "Key Tool", Category.HRIS, AuthType.API_KEY

    def check_auth(self, credentials):
        ok = credentials.get("api_key") == "good"
        return AuthResult(Outcome.OK if ok else Outcome.AUTH_FAILED, message="" if ok else "bad key")


class _CodeProvider(_KeyProvider, OAuthProvider):
    id = "codetool"

    @classmethod
    def exchange_code(cls, code, redirect_uri):
        if code != "valid-code":
            raise ProviderAuthFailed("invalid_grant")
        return {"api_key": "good"}


def test_a_refused_attempt_is_recorded_and_changes_nothing(integration):
    created = links.create_relink_link(integration)
    result = links.attempt(created.link, _KeyProvider(), {"api_key": "wrong"}, [], log_id="log-1")
    assert result.completion is None and result.verification.error_code == "AUTH_FAILED"
    integration.refresh_from_db()
    assert integration.get_credentials() == {"api_key": "old"}
    assert AuditEvent.objects.filter(action="link.attempt_failed", details__error_code="AUTH_FAILED").count() == 1
    assert links.find_link(created.token).status == "PENDING"  # the customer may try again


def test_an_accepted_attempt_completes_once_and_a_second_finds_the_link_used(integration):
    created = links.create_relink_link(integration)
    first = links.attempt(created.link, _KeyProvider(), {"api_key": "good"}, [], log_id="log-1")
    assert first.completion is not None and first.completion.activation_token
    second = links.attempt(created.link, _KeyProvider(), {"api_key": "good"}, [], log_id="log-1")
    assert second.completion is None and second.unusable == "COMPLETED"
    integration.refresh_from_db()
    assert integration.get_credentials() == {"api_key": "good"}


@pytest.mark.parametrize(
    ("code", "error", "expected"),
    [("", "access_denied", "ACCESS_DENIED"), ("", "server_error", "OAUTH_ERROR"), ("stale", "", "AUTH_FAILED")],
)
def test_a_refused_consent_or_code_is_a_failed_attempt(integration, code, error, expected):
    created = links.create_relink_link(integration)
    result = links.attempt_oauth(
        created.link,
        _CodeProvider(),
        code=code,
        error=error,
        redirect_uri="http://127.0.0.1/cb",
        opted_out=[],
        log_id="log-1",
    )
    assert result.completion is None and result.verification.error_code == expected
    assert WebhookDelivery.objects.filter(event_type="connection-flow-failed").count() == 0  # no endpoint
    assert AuditEvent.objects.filter(action="link.attempt_failed", details__error_code=expected).exists()


def test_an_exchanged_code_completes_the_link(integration):
    created = links.create_relink_link(integration)
    result = links.attempt_oauth(
        created.link,
        _CodeProvider(),
        code="valid-code",
        error="",
        redirect_uri="http://127.0.0.1/cb",
        opted_out=[],
        log_id="log-1",
        issue_activation_token=False,
    )
    assert result.completion is not None and result.completion.activation_token == ""
    assert links.find_link(created.token).status == "COMPLETED"


def test_an_activation_token_is_exchanged_once_and_only_within_ten_minutes(environment, integration):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        first = links.complete(
            links.create_relink_link(integration).link.pk, credentials={"api_key": "a"}, opted_out_fields=[]
        )
        second = links.complete(
            links.create_relink_link(integration).link.pk, credentials={"api_key": "b"}, opted_out_fields=[]
        )
    with time_machine.travel(start + timedelta(minutes=9, seconds=59)):
        assert links.exchange_activation_token(environment, first.activation_token).pk == integration.pk
        assert links.exchange_activation_token(environment, first.activation_token) is None  # spent
    with time_machine.travel(start + timedelta(minutes=10, seconds=1)):
        assert links.exchange_activation_token(environment, second.activation_token) is None  # expired
    other = factories.EnvironmentFactory()
    assert links.exchange_activation_token(other, second.activation_token) is None


def test_a_reconnect_queues_one_sync_and_no_scheduled_one_right_after(integration):
    """The completion's own sync moves the next scheduled one an interval away: the scheduler's
    next tick does not queue a second, redundant sync."""
    done = links.complete(
        links.create_relink_link(integration).link.pk, credentials={"api_key": "b"}, opted_out_fields=[]
    )
    fresh = Integration.objects.select_related("environment").get(pk=done.integration.pk)
    assert fresh.syncs.count() == 1
    assert fresh.next_sync_at > timezone.now() + fresh.environment.sync_interval * 0.8
    assert syncs.tick(enqueue=lambda ids: None) == 0
