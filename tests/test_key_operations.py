"""Key operations tolerate and report rows no key can decrypt: one bad row blocks nothing else.

Rows get fixed ids so the bad one sits in the middle of the pk order: with a batch size of 2 it is
neither in the first batch nor at either end, so a sample or a stop-at-first-error would miss it.
"""

import pytest
from cryptography.fernet import Fernet
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.test import override_settings

from integrations.models import Integration, WebhookEndpoint

from .factories import EnvironmentFactory, IntegrationFactory, WebhookEndpointFactory

FOREIGN_KEY = Fernet.generate_key().decode()  # never in FERNET_KEYS: stands for a key removed too early
BAD_ID = "itg-3-bad"
GOOD_IDS = ["itg-1", "itg-2", "itg-4", "itg-5", "itg-6"]


def _credentials(pk: str) -> dict[str, str]:
    return {"api_key": f"sbx_secret-of-{pk}-1234567890"}


@pytest.fixture
def fleet(db):
    """Five good integrations around one encrypted under FOREIGN_KEY, and three webhook endpoints."""
    env = EnvironmentFactory()
    good = [IntegrationFactory(id=pk, environment=env, credentials=_credentials(pk)) for pk in GOOD_IDS]
    IntegrationFactory(id="itg-0-none", environment=env)  # no credentials: no encrypted row
    with override_settings(FERNET_KEYS=[FOREIGN_KEY]):
        bad = IntegrationFactory(id=BAD_ID, environment=env, credentials=_credentials(BAD_ID))
    endpoints = WebhookEndpointFactory.create_batch(3, environment=env)
    return {
        "good": good,
        "bad": bad,
        "endpoints": endpoints,
        "endpoint_secrets": {e.pk: WebhookEndpoint.objects.get(pk=e.pk).get_secret() for e in endpoints},
    }


def _tokens() -> dict[str, str]:
    """Every stored token, by pk (to prove what changed and that none was printed)."""
    tokens = dict(Integration.objects.exclude(credentials_encrypted="").values_list("pk", "credentials_encrypted"))
    tokens.update(WebhookEndpoint.objects.values_list("pk", "secret_encrypted"))
    return tokens


def _run(command: str, capsys, **options) -> tuple[str, CommandError | None]:
    """Run a command; return everything it printed and the CommandError it ended with, if any."""
    error = None
    try:
        call_command(command, **options)
    except CommandError as exc:
        error = exc
    out, err = capsys.readouterr()
    return out + err + (str(error) if error else ""), error


def _assert_no_secret_printed(output: str) -> None:
    for token in _tokens().values():
        assert token not in output
    assert "sbx_secret" not in output and "whsec_" not in output


def test_scan_reports_exactly_the_bad_row_and_exits_non_zero(fleet, capsys):
    output, error = _run("check_encrypted_rows", capsys, batch_size=2)

    assert error is not None
    assert f"integrations.credentials: 6 rows, 1 undecryptable: {BAD_ID}\n" in output
    assert "webhook endpoints.secret: 3 rows, 0 undecryptable\n" in output
    _assert_no_secret_printed(output)


def test_scan_finds_garbage_ciphertext_in_every_column(fleet, capsys):
    endpoint = fleet["endpoints"][1]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret_encrypted="not-a-fernet-token")

    output, error = _run("check_encrypted_rows", capsys, batch_size=2)

    assert error is not None and "2 stored secret(s)" in str(error)
    assert f"webhook endpoints.secret: 3 rows, 1 undecryptable: {endpoint.pk}\n" in output


def test_scan_passes_when_every_row_decrypts(fleet, capsys):
    Integration.objects.filter(pk=BAD_ID).delete()

    output, error = _run("check_encrypted_rows", capsys, batch_size=2)

    assert error is None
    assert "integrations.credentials: 5 rows, 0 undecryptable\n" in output


def test_rotation_rotates_every_other_row_lists_the_bad_one_and_exits_non_zero(fleet, settings, capsys):
    bad_token = _tokens()[BAD_ID]
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, *settings.FERNET_KEYS]

    output, error = _run("rotate_fernet_keys", capsys, batch_size=2)

    assert error is not None
    assert "integrations: rotated=5 already_current=0 undecryptable=1" in output
    assert "webhook endpoints: rotated=3 already_current=0 undecryptable=0" in output
    assert f"integrations.Integration pk={BAD_ID} column=credentials_encrypted" in output
    assert output.count(" pk=") == 1
    _assert_no_secret_printed(output)
    # With only the new key, every good row decrypts: integrations and webhook endpoints alike.
    settings.FERNET_KEYS = [new_key]
    for pk in GOOD_IDS:
        assert Integration.objects.get(pk=pk).get_credentials() == _credentials(pk)
    for pk, secret in fleet["endpoint_secrets"].items():
        assert WebhookEndpoint.objects.get(pk=pk).get_secret() == secret
    assert _tokens()[BAD_ID] == bad_token  # left exactly as it was


def test_rotation_rerun_is_idempotent_and_rotates_the_rest_once_the_key_is_back(fleet, settings, capsys):
    old_keys = list(settings.FERNET_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, *old_keys]
    _run("rotate_fernet_keys", capsys, batch_size=2)
    after_first = _tokens()

    output, error = _run("rotate_fernet_keys", capsys, batch_size=2)

    assert error is not None
    assert "integrations: rotated=0 already_current=5 undecryptable=1" in output
    assert "webhook endpoints: rotated=0 already_current=3 undecryptable=0" in output
    assert f"pk={BAD_ID} column=credentials_encrypted" in output
    assert _tokens() == after_first

    # The missing key restored (after the first key): the rerun rotates the last row and succeeds.
    settings.FERNET_KEYS = [new_key, *old_keys, FOREIGN_KEY]
    output, error = _run("rotate_fernet_keys", capsys, batch_size=2)

    assert error is None
    assert "integrations: rotated=1 already_current=5 undecryptable=0" in output
    settings.FERNET_KEYS = [new_key]
    assert Integration.objects.get(pk=BAD_ID).get_credentials() == _credentials(BAD_ID)


def test_system_check_points_to_the_full_scan(fleet, settings):
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]

    errors = [e for e in run_checks(databases=["default"]) if e.id == "relink.E001"]

    assert errors and all("manage.py check_encrypted_rows" in e.msg for e in errors)
