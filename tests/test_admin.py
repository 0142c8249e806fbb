"""The Django admin: every model is registered and renders, history is view-only, and no secret
(raw, hashed or encrypted) ever appears on a page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connect_flow.models import ConnectionLink, ReconnectRequest, ReconnectStep
from integrations.lib.tokens import hash_secret, new_secret
from integrations.models import (
    ApiKey,
    AuditEvent,
    AuthCheck,
    Integration,
    Invitation,
    OutboxMessage,
    RequestLog,
    Sync,
    SyncedRecord,
    User,
    WebhookAttempt,
    WebhookDelivery,
)
from integrations.providers.sandbox_oauth import client_secret
from sandbox.models import (
    SandboxAuthorizationCode,
    SandboxOAuthClient,
    SandboxOAuthGrant,
)

from . import factories

RAW_CREDENTIAL = "sbx_TOPSECRET_VALUE_123"
REGISTERED_MODELS: list[type[Model]] = sorted(admin.site._registry, key=lambda m: m._meta.label)
VIEW_ONLY_MODELS = {
    AuthCheck,
    Sync,
    SyncedRecord,
    RequestLog,
    AuditEvent,
    WebhookAttempt,
    WebhookDelivery,
    OutboxMessage,
}


@dataclass
class Fixtures:
    objects: dict[type[Model], Model] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _sign_in_records() -> list[Model]:
    """django-axes' records of sign-in attempts (login throttling)."""
    seen = {
        "user_agent": "pytest",
        "ip_address": "203.0.113.7",
        "username": "ops@example.com",
        "http_accept": "text/html",
        "path_info": "/login/",
    }
    return [
        AccessAttempt.objects.create(**seen, get_data="", post_data="username=ops@example.com", failures_since_start=5),
        AccessLog.objects.create(**seen),
        AccessFailureLog.objects.create(**seen, locked_out=True),
    ]


@pytest.fixture
def data(environment, owner) -> Fixtures:
    """One object of every registered model, with every kind of secret in place."""
    integration = factories.IntegrationFactory(environment=environment, credentials={"api_key": RAW_CREDENTIAL})
    api_key, raw_api_key = ApiKey.create(environment, "k", created_by=owner)
    endpoint = factories.WebhookEndpointFactory(environment=environment)
    delivery = factories.WebhookDeliveryFactory(endpoint=endpoint)
    raw_link_token = new_secret("")
    link = factories.ConnectionLinkFactory(integration=integration, token_hash=hash_secret(raw_link_token))
    company = factories.SandboxCompanyFactory()
    group = Group.objects.create(name="Support")
    owner.groups.add(group)
    sandbox_key, raw_sandbox_key = company.create_key(label="demo")
    oauth_client = SandboxOAuthClient.ensure_default()
    grant, raw_refresh_token = SandboxOAuthGrant.create_with_refresh_token(company, oauth_client, ["employees:read"])
    access_token, raw_access_token = grant.issue_access_token()
    raw_code = SandboxAuthorizationCode.issue(oauth_client, company, "https://app.example.test/cb", ["employees:read"])
    code = SandboxAuthorizationCode.objects.get()
    raw_invite_token = new_secret("")
    invitation = Invitation.objects.create(
        environment=environment,
        email="new@acme.test",
        token_hash=hash_secret(raw_invite_token),
        invited_by=owner,
        expires_at=timezone.now() + timedelta(days=7),
    )

    made = [
        group,
        owner,
        environment,
        owner.memberships.get(),
        invitation,
        integration.scope_config,
        integration,
        factories.AuthCheckFactory(integration=integration),
        factories.SyncFactory(integration=integration, scope_config=integration.scope_config),
        factories.SyncedRecordFactory(integration=integration),
        endpoint,
        delivery,
        factories.WebhookAttemptFactory(delivery=delivery),
        OutboxMessage.objects.create(task="integrations.webhooks.attempt_delivery", args=[delivery.pk]),
        api_key,
        factories.RequestLogFactory(environment=environment, api_key=api_key, integration_id=integration.pk),
        factories.AuditEventFactory(environment=environment, integration_id=integration.pk, actor_api_key=api_key),
        link,
        ReconnectRequest.objects.create(
            integration=integration,
            streak_started_at=timezone.now(),
            step_key="failing",
            step=ReconnectStep.FAILING,
            link=link,
            recipient="hr@example.com",
        ),
        company,
        factories.SandboxEmployeeFactory(company=company),
        sandbox_key,
        oauth_client,
        grant,
        access_token,
        code,
        *_sign_in_records(),
    ]
    stored = Integration.objects.get(pk=integration.pk)
    return Fixtures(
        objects={type(obj): obj for obj in made},
        secrets={
            "raw credential": RAW_CREDENTIAL,
            "raw credential, partial": "TOPSECRET",
            "encrypted credentials": stored.credentials_encrypted,
            "raw API key": raw_api_key,
            "API key hash": api_key.key_hash,
            "raw webhook secret": endpoint.get_secret(),
            "encrypted webhook secret": endpoint.secret_encrypted,
            "raw link token": raw_link_token,
            "link token hash": link.token_hash,
            "raw invitation token": raw_invite_token,
            "invitation token hash": invitation.token_hash,
            "raw sandbox key": raw_sandbox_key,
            "sandbox key hash": sandbox_key.key_hash,
            "sandbox OAuth client secret": client_secret(),
            "sandbox OAuth client secret hash": oauth_client.secret_hash,
            "raw refresh token": raw_refresh_token,
            "refresh token hash": grant.refresh_token_hash,
            "raw access token": raw_access_token,
            "access token hash": access_token.token_hash,
            "raw authorization code": raw_code,
            "authorization code hash": code.code_hash,
        },
    )


def _url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _assert_no_secrets(content: bytes, secrets: dict[str, str], page: str) -> None:
    text = content.decode()
    for name, secret in secrets.items():
        assert secret, name
        assert secret not in text, f"{name} appears on {page}"


def test_every_model_of_the_apps_is_registered():
    expected = {
        model
        for label in ("integrations", "connect_flow", "sandbox")
        for model in apps.get_app_config(label).get_models()
    }
    assert expected <= set(admin.site._registry)


@pytest.mark.django_db
def test_fixture_covers_every_registered_model(data):
    missing = [m._meta.label for m in REGISTERED_MODELS if m not in data.objects and not m.objects.exists()]
    assert missing == []


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda m: m._meta.label)
def test_admin_pages_render_without_secrets(admin_client, data, model):
    obj = data.objects.get(model) or model.objects.first()
    assert obj is not None, f"no {model._meta.label} to show"

    changelist = admin_client.get(_url(model, "changelist"))
    assert changelist.status_code == 200
    _assert_no_secrets(changelist.content, data.secrets, f"{model._meta.label} changelist")

    change = admin_client.get(_url(model, "change", obj.pk))
    assert change.status_code == 200
    _assert_no_secrets(change.content, data.secrets, f"{model._meta.label} change page")

    add = admin_client.get(_url(model, "add"))
    model_admin = admin.site._registry[model]
    expected = 200 if model_admin.has_add_permission(add.wsgi_request) else 403
    assert add.status_code == expected
    if add.status_code == 200:
        _assert_no_secrets(add.content, data.secrets, f"{model._meta.label} add page")


@pytest.mark.django_db
@pytest.mark.parametrize("model", sorted(VIEW_ONLY_MODELS, key=lambda m: m._meta.label), ids=lambda m: m._meta.label)
def test_history_is_view_only(admin_client, data, model):
    obj = data.objects[model]
    assert admin_client.get(_url(model, "add")).status_code == 403

    change = admin_client.get(_url(model, "change", obj.pk))
    assert change.status_code == 200
    assert change.context["has_change_permission"] is False
    assert b'name="_save"' not in change.content

    assert admin_client.post(_url(model, "change", obj.pk), {}).status_code == 403


@pytest.mark.django_db
def test_integration_pages_never_decrypt_credentials(admin_client, data, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the admin decrypted a secret")

    monkeypatch.setattr("integrations.lib.crypto.decrypt_str", refuse)
    integration = data.objects[Integration]
    without = factories.IntegrationFactory(environment=integration.environment)

    assert admin_client.get(_url(Integration, "changelist")).status_code == 200
    assert admin_client.get(_url(Integration, "changelist"), {"q": "origin"}).status_code == 200
    stored = admin_client.get(_url(Integration, "change", integration.pk))
    assert stored.status_code == 200
    assert b"stored (encrypted)" in stored.content
    empty = admin_client.get(_url(Integration, "change", without.pk))
    assert empty.status_code == 200
    assert b"stored (encrypted)" not in empty.content


@pytest.mark.django_db
def test_editing_an_integration_keeps_its_credentials_and_derives_its_state(admin_client, data):
    integration = Integration.objects.get(pk=data.objects[Integration].pk)
    page = admin_client.get(_url(Integration, "change", integration.pk))
    form = page.context["adminform"].form
    post = {name: form[name].value() for name in form.fields}
    post.update({"enabled": "", "scope_config": integration.scope_config_id, "opted_out_fields": "[]"})
    post = {k: ("" if v is None else v) for k, v in post.items()}

    response = admin_client.post(_url(Integration, "change", integration.pk), post)

    assert response.status_code == 302, response.context["adminform"].form.errors
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.enabled is False
    assert fresh.state == "INACTIVE"
    assert fresh.credentials_encrypted == integration.credentials_encrypted
    assert fresh.get_credentials() == {"api_key": RAW_CREDENTIAL}
    # The switch went through the domain function: audited, and the state change is emitted.
    from integrations.models import AuditEvent, User  # noqa: PLC0415

    admin_user = User.objects.get(email="admin@relink.test")
    assert (
        AuditEvent.objects.filter(
            integration_id=integration.pk, action="integration.disabled", actor_user=admin_user
        ).count()
        == 1
    )
    assert AuditEvent.objects.filter(integration_id=integration.pk, action="integration.state_changed").count() == 1


@pytest.mark.django_db
def test_integration_scope_config_choices_stay_in_its_environment(admin_client, data, other_environment):
    integration = data.objects[Integration]
    foreign = factories.ScopeConfigFactory(environment=other_environment, name="Foreign config")

    page = admin_client.get(_url(Integration, "change", integration.pk))

    choices = page.context["adminform"].form.fields["scope_config"].queryset
    assert integration.scope_config in choices
    assert foreign not in choices


@pytest.mark.django_db
def test_connection_link_shows_its_status(admin_client, data):
    response = admin_client.get(_url(ConnectionLink, "changelist"))
    assert b"Pending" in response.content
    filtered = admin_client.get(_url(ConnectionLink, "changelist"), {"status": "PENDING"})
    assert data.objects[ConnectionLink].pk in filtered.content.decode()
    expired = admin_client.get(_url(ConnectionLink, "changelist"), {"status": "EXPIRED"})
    assert data.objects[ConnectionLink].pk not in expired.content.decode()


@pytest.mark.django_db
def test_user_can_be_added_with_email_only(admin_client):
    response = admin_client.post(
        _url(User, "add"), {"email": "New.Operator@Example.com", "name": "New", "usable_password": "false"}
    )
    assert response.status_code == 302
    user = User.objects.get(email="new.operator@example.com")
    assert not user.has_usable_password()


@pytest.mark.django_db
def test_integration_changelist_query_count_does_not_grow_with_rows(
    admin_client, environment, django_assert_max_num_queries
):
    url = _url(Integration, "changelist")
    factories.IntegrationFactory.create_batch(5, environment=environment, credentials={"api_key": RAW_CREDENTIAL})
    admin_client.get(url)  # warm per-process caches before counting

    with CaptureQueriesContext(connection) as five:
        assert admin_client.get(url).status_code == 200

    factories.IntegrationFactory.create_batch(25, environment=environment, credentials={"api_key": RAW_CREDENTIAL})
    with django_assert_max_num_queries(15):
        with CaptureQueriesContext(connection) as thirty:
            response = admin_client.get(url)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 30
    assert len(thirty) == len(five)
    assert all("credentials_encrypted" in row.get_deferred_fields() for row in response.context["cl"].result_list)
