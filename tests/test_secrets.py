"""Credentials are encrypted at rest, rotate under a new key, and never fall back silently."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from integrations.lib import crypto
from integrations.models import Integration, WebhookEndpoint

from .factories import IntegrationFactory, WebhookEndpointFactory

SECRET = {"api_key": "sbx_SUPER-secret-value-1234567890"}


def _raw_row(integration_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM integrations_integration WHERE id = %s", [integration_id])
        return repr(cursor.fetchone())


@pytest.mark.django_db
def test_credentials_round_trip_and_are_not_stored_in_clear():
    integration = IntegrationFactory(credentials=SECRET)
    fresh = Integration.objects.get(pk=integration.pk)
    assert fresh.get_credentials() == SECRET
    row = _raw_row(integration.pk)
    assert "SUPER-secret" not in row
    assert "sbx_" not in row
    assert fresh.credentials_encrypted.startswith("gAAAA")  # a Fernet token


@pytest.mark.django_db
def test_rotation_reencrypts_under_the_new_first_key(settings):
    old_key = settings.FERNET_KEYS[0]
    integration = IntegrationFactory(credentials=SECRET)
    endpoint = WebhookEndpointFactory()
    endpoint_secret = WebhookEndpoint.objects.get(pk=endpoint.pk).get_secret()
    token_before = Integration.objects.get(pk=integration.pk).credentials_encrypted

    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, old_key]
    # Before the command runs, old rows still decrypt (the old key is still listed).
    assert Integration.objects.get(pk=integration.pk).get_credentials() == SECRET

    call_command("rotate_fernet_keys", batch_size=1)

    token_after = Integration.objects.get(pk=integration.pk).credentials_encrypted
    assert token_after != token_before
    assert Fernet(new_key).decrypt(token_after.encode())  # under the new key alone
    settings.FERNET_KEYS = [new_key]
    assert Integration.objects.get(pk=integration.pk).get_credentials() == SECRET
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).get_secret() == endpoint_secret


@pytest.mark.django_db
def test_rotation_is_resumable_and_skips_current_rows(settings, capsys):
    IntegrationFactory.create_batch(3, credentials=SECRET)
    settings.FERNET_KEYS = [Fernet.generate_key().decode(), *settings.FERNET_KEYS]
    call_command("rotate_fernet_keys", batch_size=2)
    assert "rotated=3 already_current=0" in capsys.readouterr().out
    call_command("rotate_fernet_keys", batch_size=2)
    assert "rotated=0 already_current=3" in capsys.readouterr().out


@pytest.mark.django_db
def test_a_key_that_cannot_decrypt_is_an_error_not_a_fallback(settings):
    integration = IntegrationFactory(credentials=SECRET)
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.UndecryptableSecret):
        Integration.objects.get(pk=integration.pk).get_credentials()


@pytest.mark.django_db
def test_startup_check_reports_undecryptable_secrets(settings):
    from django.core.checks import run_checks

    IntegrationFactory(credentials=SECRET)
    assert not [e for e in run_checks(databases=["default"]) if e.id == "relink.E001"]
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    errors = [e for e in run_checks(databases=["default"]) if e.id == "relink.E001"]
    assert errors and "cannot be decrypted" in errors[0].msg
