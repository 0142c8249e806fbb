"""factory-boy factories for every model."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from connect_flow.models import LINK_VALIDITY, ConnectionLink, LinkKind, LinkType
from integrations.lib.tokens import hash_secret, new_secret
from integrations.models import (
    ApiKey,
    AuditEvent,
    AuthCheck,
    Environment,
    Integration,
    Invitation,
    Membership,
    RequestLog,
    Role,
    ScopeConfig,
    Sync,
    SyncedRecord,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from sandbox.models import SandboxApiKey, SandboxCompany, SandboxEmployee


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"operator{n}@example.com")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "password")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class EnvironmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Environment

    slug = factory.Sequence(lambda n: f"env{n}")
    name = factory.Sequence(lambda n: f"Environment {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    environment = factory.SubFactory(EnvironmentFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.EDITOR


class InvitationFactory(factory.django.DjangoModelFactory):
    """A pending invitation; its raw token is lost (only the hash is kept): use
    integrations.invitations.invite() where a test needs the link."""

    class Meta:
        model = Invitation

    environment = factory.SubFactory(EnvironmentFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    role = Role.VIEWER
    token_hash = factory.LazyFunction(lambda: hash_secret(new_secret("inv_")))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))


class ScopeConfigFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScopeConfig

    environment = factory.SubFactory(EnvironmentFactory)
    name = factory.Sequence(lambda n: f"Scope config {n}")
    category = "HRIS"
    spec = factory.LazyFunction(
        lambda: {
            "hris_employees": {
                "availability": "ENABLED",
                "fields": {"first_name": "ENABLED", "last_name": "ENABLED", "email": "ENABLED", "salary": "OPTIONAL"},
            }
        }
    )


class IntegrationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Integration
        skip_postgeneration_save = True

    environment = factory.SubFactory(EnvironmentFactory)
    tool = "sandbox"
    category = "HRIS"
    end_user_organization_name = factory.Faker("company")
    end_user_email = factory.Faker("email")
    end_user_origin_id = factory.Sequence(lambda n: f"origin-{n}")
    scope_config = factory.SubFactory(ScopeConfigFactory, environment=factory.SelfAttribute("..environment"))
    credentials_encrypted = ""

    @factory.post_generation
    def credentials(obj, create, extracted, **kwargs):
        if extracted is not None:
            obj.set_credentials(extracted)
            if create:
                obj.save(update_fields=["credentials_encrypted"])


class AuthCheckFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuthCheck

    integration = factory.SubFactory(IntegrationFactory)
    outcome = "OK"
    http_status = 200


class SyncFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sync

    integration = factory.SubFactory(IntegrationFactory)
    status = "SUCCEEDED"
    started_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=2))
    ended_at = factory.LazyFunction(timezone.now)
    models_total = 1
    models_done = 1
    records_per_model = factory.LazyFunction(lambda: {"hris_employees": 12})


class SyncedRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SyncedRecord

    integration = factory.SubFactory(IntegrationFactory)
    model = "hris_employees"
    remote_id = factory.Sequence(str)
    data = factory.LazyFunction(lambda: {"first_name": "Ada"})


class ConnectionLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConnectionLink

    integration = factory.SubFactory(IntegrationFactory)
    environment = factory.SelfAttribute("integration.environment")
    kind = LinkKind.RECONNECT
    link_type = LinkType.EMBEDDED
    token_hash = factory.LazyFunction(lambda: hash_secret(new_secret("")))
    expires_at = factory.LazyAttribute(lambda o: timezone.now() + LINK_VALIDITY[o.link_type])


class WebhookEndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEndpoint
        skip_postgeneration_save = True

    environment = factory.SubFactory(EnvironmentFactory)
    url = "https://example.com/webhooks/relink"

    @factory.post_generation
    def secret(obj, create, extracted, **kwargs):
        obj.set_new_secret()
        if create:
            obj.save(update_fields=["secret_encrypted"])


class WebhookDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookDelivery

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    event_type = "integration-state-changed"
    payload = factory.LazyFunction(lambda: {"type": "integration-state-changed", "data": {}})


class WebhookAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookAttempt

    delivery = factory.SubFactory(WebhookDeliveryFactory)
    response_status = 500


class ApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiKey

    environment = factory.SubFactory(EnvironmentFactory)
    name = "Test key"
    prefix = "rlk_test"
    key_hash = factory.LazyFunction(lambda: hash_secret(new_secret("rlk_")))


class RequestLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RequestLog

    environment = factory.SubFactory(EnvironmentFactory)
    method = "GET"
    path = "/v1/check-api-key"
    status_code = 200


class AuditEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditEvent

    environment = factory.SubFactory(EnvironmentFactory)
    action = "integration.disabled"
    actor_label = "system"


class SandboxCompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SandboxCompany

    name = factory.Sequence(lambda n: f"Sandbox Company {n}")
    environment = factory.SubFactory(EnvironmentFactory)


class SandboxEmployeeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SandboxEmployee

    company = factory.SubFactory(SandboxCompanyFactory)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.Faker("email")
    department = "Engineering"
    salary = 60000


class SandboxApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SandboxApiKey

    company = factory.SubFactory(SandboxCompanyFactory)
    prefix = "sbx_test"
    key_hash = factory.LazyFunction(lambda: hash_secret(new_secret("sbx_")))


def member(environment, role: str, email: str | None = None):
    """A user who is a member of `environment` with `role`."""
    user = UserFactory(**({"email": email} if email else {}))
    MembershipFactory(environment=environment, user=user, role=role)
    return user
