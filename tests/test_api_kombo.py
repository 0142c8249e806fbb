"""The official `kombo` Python SDK works against Relink's /v1 API unchanged.

Each call goes over real HTTP to pytest-django's live server; the SDK validates every response
against its own models, so a shape mistake on our side fails here.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.utils import timezone
from kombo import Kombo, errors

from connect_flow import links
from integrations.models import ApiKey, Integration, IntegrationState, Sync

from . import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _setup(monkeypatch, settings, live_server):
    cache.clear()
    monkeypatch.setattr("integrations.syncs._enqueue", lambda sync_ids, **kwargs: None)  # no worker in these tests
    settings.BASE_URL = live_server.url
    yield
    cache.clear()


@pytest.fixture
def environment():
    return factories.EnvironmentFactory(slug="acme", name="Acme production")


@pytest.fixture
def raw_key(environment) -> str:
    return ApiKey.create(environment, "SDK")[1]


@pytest.fixture
def kombo(raw_key, live_server):
    with Kombo(api_key=raw_key, server_url=live_server.url + "/v1") as client:
        yield client


@pytest.fixture
def scope_config(environment):
    return factories.ScopeConfigFactory(environment=environment, name="Employees")


@pytest.fixture
def integration(environment, scope_config):
    return factories.IntegrationFactory(environment=environment, scope_config=scope_config)


def _link(url: str):
    return links.find_link(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def test_check_api_key(kombo, environment):
    response = kombo.general.check_api_key()

    assert response.data.environment_id == str(environment.pk)


def test_create_connection_link(kombo, environment, scope_config):
    response = kombo.connect.create_connection_link(
        end_user_email="hr@customer.test",
        end_user_organization_name="Customer Ltd",
        end_user_origin_id="cust-7",
        integration_category="HRIS",
        integration_tool="sandbox",
        language="de",
        scope_config_id=scope_config.pk,
        link_type="MAGIC_LINK",
        enable_static_ips=True,
    )

    link = _link(response.data.link)
    assert link.environment == environment
    assert (link.end_user_origin_id, link.tool, link.language, link.link_type) == (
        "cust-7",
        "sandbox",
        "de",
        "MAGIC_LINK",
    )
    assert link.scope_config == scope_config


def test_get_integration_by_token(kombo, environment):
    created = links.create_connect_link(
        environment,
        end_user_email="hr@customer.test",
        end_user_organization_name="Customer Ltd",
        end_user_origin_id="cust-8",
    )
    completion = links.complete(created.link.pk, credentials={"api_key": "sbx"}, opted_out_fields=[], tool="sandbox")

    response = kombo.connect.get_integration_by_token(token=completion.activation_token)

    assert response.data.id == completion.integration.pk
    assert response.data.tool == "sandbox"
    assert response.data.end_user_origin_id == "cust-8"
    assert response.data.end_user_organization_name == "Customer Ltd"
    assert response.data.end_user_email == "hr@customer.test"
    assert response.data.setup_status == "COMPLETED"


def test_get_integration_details(kombo, integration, scope_config):
    response = kombo.general.get_integration_details(integration_id=integration.pk)

    data = response.data
    assert data.id == integration.pk
    assert data.tool.id == "sandbox"
    assert data.status == "ACTIVE"
    assert data.scope_config.id == scope_config.pk
    assert data.created_at is not None
    assert "hris_employees" in [m.id for m in data.read_models]


def test_get_details_of_an_integration_without_scope_config(kombo, environment):
    integration = factories.IntegrationFactory(
        environment=environment,
        scope_config=None,
        end_user_email="",
        end_user_origin_id="",
        data_expired_at=timezone.now(),
    )

    data = kombo.general.get_integration_details(integration_id=integration.pk).data

    assert data.scope_config.id == ""
    assert data.end_user.creator_email is None and data.end_user.origin_id is None
    assert data.data_expired_at is not None


def test_set_integration_enabled(kombo, integration):
    kombo.general.set_integration_enabled(integration_id=integration.pk, value=False)
    integration.refresh_from_db()
    assert integration.state == IntegrationState.INACTIVE

    kombo.general.set_integration_enabled(integration_id=integration.pk, value=True)
    integration.refresh_from_db()
    assert integration.state == IntegrationState.ACTIVE


def test_create_reconnection_links(kombo, environment, integration):
    new_scope = factories.ScopeConfigFactory(environment=environment, name="Absences too")

    embedded = kombo.general.create_reconnection_link(integration_id=integration.pk, scope_config_id=new_scope.pk)
    magic = kombo.general.create_reconnection_link(
        integration_id=integration.pk, link_type="MAGIC_LINK", scope_config_id=new_scope.pk, language="es"
    )

    embedded_link, magic_link = _link(embedded.data.link), _link(magic.data.link)
    assert embedded_link.integration_id == magic_link.integration_id == integration.pk
    assert embedded_link.scope_config_id == magic_link.scope_config_id == new_scope.pk
    assert (embedded_link.link_type, magic_link.link_type) == ("EMBEDDED", "MAGIC_LINK")
    assert magic_link.language == "es"
    now = timezone.now()
    assert embedded_link.expires_at - now <= timedelta(hours=1)
    assert magic_link.expires_at - now > timedelta(days=364)


def test_trigger_sync(raw_key, live_server, integration):
    with Kombo(api_key=raw_key, server_url=live_server.url + "/v1", integration_id=integration.pk) as kombo:
        first = kombo.general.trigger_sync(type_="FULL")
        second = kombo.general.trigger_sync()

    assert first.data.already_queued is False
    assert second.data.already_queued is True
    assert first.data.sync_id == second.data.sync_id == Sync.objects.get(integration=integration).pk
    assert first.data.type == "FULL"


def test_delete_integration(kombo, integration):
    kombo.general.delete_integration(integration_id=integration.pk, body={})

    assert not Integration.objects.filter(pk=integration.pk).exists()


def test_get_tools(kombo):
    response = kombo.general.get_tools(category="hris")

    assert "sandbox" in [tool.id for tool in response.data.tools]


def test_the_sdk_surfaces_our_error_for_a_missing_integration(kombo):
    with pytest.raises(errors.KomboGeneralError) as caught:
        kombo.general.get_integration_details(integration_id="sandbox:doesnotexist")

    error = caught.value.data.error
    assert caught.value.raw_response.status_code == 404
    assert error.code == "PLATFORM.INTEGRATION_NOT_FOUND"
    assert "sandbox:doesnotexist" in error.message
    assert error.log_url.startswith(f"{kombo.sdk_configuration.server_url.removesuffix('/v1')}/env/acme/logs/")


def test_the_sdk_surfaces_our_error_for_an_invalid_body(kombo, environment):
    with pytest.raises(errors.KomboGeneralError) as caught:
        kombo.connect.create_connection_link(end_user_email="not-an-email", end_user_organization_name="Customer")

    assert caught.value.raw_response.status_code == 400
    assert caught.value.data.error.code == "PLATFORM.INPUT_INVALID"
    assert "end_user_email" in caught.value.data.error.message


def test_the_sdk_surfaces_our_error_for_a_bad_key(live_server):
    with Kombo(api_key="rlk_wrong", server_url=live_server.url + "/v1") as kombo:
        with pytest.raises(errors.KomboGeneralError) as caught:
            kombo.general.check_api_key()

    assert caught.value.raw_response.status_code == 401
    assert caught.value.data.error.code == "PLATFORM.AUTHENTICATION_INVALID"
    assert caught.value.data.error.log_url is None
