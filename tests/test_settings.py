"""Production settings refuse to start without their secrets."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_FERNET = "dGVzdC1mZXJuZXQta2V5LTAwMDAwMDAwMDAwMDAwMDA="


def _run(argv: list[str], **env_vars: str) -> subprocess.CompletedProcess:
    """`argv` in a fresh process with the real settings and only the given secrets. Not the test
    process's DJANGO_* variables (the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "FERNET_KEYS", "DEBUG"} and not k.startswith("DJANGO_")
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", **env_vars)
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _start(**env_vars: str) -> subprocess.CompletedProcess:
    return _run(["-c", "import django; django.setup(); print('started')"], **env_vars)


@pytest.mark.parametrize(
    ("env_vars", "missing"),
    [
        ({"FERNET_KEYS": GOOD_FERNET}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "x" * 50}, "FERNET_KEYS is not set"),
    ],
)
def test_production_refuses_to_start_without_a_secret(env_vars, missing):
    result = _start(DEBUG="false", **env_vars)
    assert result.returncode != 0
    assert missing in result.stderr
    assert "started" not in result.stdout


def test_production_refuses_a_malformed_fernet_key():
    result = _start(DEBUG="false", SECRET_KEY="x" * 50, FERNET_KEYS="not-a-key")
    assert result.returncode != 0
    assert "FERNET_KEYS contains a value that is not a Fernet key" in result.stderr


def test_production_starts_with_both_secrets():
    result = _start(DEBUG="false", SECRET_KEY="x" * 50, FERNET_KEYS=GOOD_FERNET)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_debug_mode_starts_with_development_defaults():
    result = _start(DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_an_https_deployment_passes_check_deploy_without_warnings():
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        FERNET_KEYS=GOOD_FERNET,
        BASE_URL="https://relink.localhost",
        ALLOWED_HOSTS="relink.localhost",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
