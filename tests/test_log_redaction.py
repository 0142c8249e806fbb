"""No secret in any log: every 4xx/5xx path of the hosted pages and the API, driven with known
tokens, and everything the logging system captured is searched for them; then the same through a
real gunicorn's access log."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.test import Client

from config import logsafe
from connect_flow import links
from integrations import syncs
from integrations.models import ApiKey

from . import factories
from .test_broker_outage import _free_port, _service_env, _wait_for

ROOT = Path(__file__).resolve().parent.parent
FORM_TOKEN_RE = re.compile(r'name="form_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    monkeypatch.setattr(syncs, "_enqueue", lambda ids, **kwargs: None)


def _everything_logged(caplog) -> str:
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.mark.django_db
def test_no_token_or_key_reaches_the_logs_on_any_error_path(caplog, environment, monkeypatch):
    caplog.set_level(logging.DEBUG)
    api_key, raw_key = ApiKey.create(environment, "Backend")
    integration = factories.IntegrationFactory(environment=environment)
    live = links.create_relink_link(integration)
    used = links.create_relink_link(integration)
    activation = links.complete(used.link.pk, credentials={"api_key": "sbx_a"}, opted_out_fields=[]).activation_token
    unknown = "u" * 43
    wrong_key = "rlk_" + "w" * 40
    secrets = [live.token, used.token, activation, unknown, raw_key, wrong_key, "oauth-code-123456", "state-abcdef12"]

    customer = Client(enforce_csrf_checks=True, raise_request_exception=False)
    page = customer.get(f"/connect/{live.token}/")
    form_token = FORM_TOKEN_RE.search(page.content.decode()).group(1)
    statuses = [
        customer.get(f"/connect/{unknown}/").status_code,  # 404
        customer.post(f"/connect/{live.token}/", {}).status_code,  # 403: no form token
        customer.post(f"/connect/{live.token}/", {"form_token": form_token}).status_code,  # 400: no tool
        customer.post(f"/connect/{live.token}/handoff/", {}).status_code,  # 403
        customer.post(f"/connect/{unknown}/handoff/", {}).status_code,  # 404
        customer.get(f"/connect/{used.token}/").status_code,  # used: its status page
        customer.get("/connect/oauth/callback/?code=oauth-code-123456&state=state-abcdef12").status_code,  # 403
    ]
    api = Client(raise_request_exception=False)
    bearer = {"Authorization": f"Bearer {raw_key}"}
    statuses += [
        api.get(f"/v1/connect/integration-by-token/{activation}").status_code,  # 401: no key
        api.get(f"/v1/connect/integration-by-token/{unknown}", headers=bearer).status_code,  # 404
        api.post(f"/v1/connect/integration-by-token/{activation}", headers=bearer).status_code,  # 405
        api.get("/v1/check-api-key", headers={"Authorization": f"Bearer {wrong_key}"}).status_code,  # 401
    ]
    # A 500 whose exception message carries the link's URL (the traceback is logged too).
    from connect_flow import views

    def explode(*args, **kwargs):
        raise RuntimeError(f"failed to render http://testserver/connect/{live.token}/ for {raw_key}")

    monkeypatch.setattr(views, "_page", explode)
    statuses.append(customer.get(f"/connect/{live.token}/").status_code)

    assert statuses == [404, 403, 400, 403, 404, 200, 403, 401, 404, 405, 401, 500]
    logged = _everything_logged(caplog)
    assert "Not Found: /connect/[REDACTED]/" in logged  # Django's request logger did log each path
    assert "Internal Server Error: /connect/[REDACTED]/" in logged and "RuntimeError" in logged
    leaked = [secret for secret in secrets if secret in logged]
    assert leaked == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"GET /connect/abcDEF123-_xyz/handoff/ HTTP/1.1" 404', '"GET /connect/[REDACTED]/handoff/ HTTP/1.1" 404'),
        (
            "/connect/oauth/callback/?code=abc123&state=s.t-1",
            "/connect/oauth/callback/?code=[REDACTED]&state=[REDACTED]",
        ),
        ("/v1/connect/integration-by-token/tok123 401", "/v1/connect/integration-by-token/[REDACTED] 401"),
        ("Authorization: Bearer rlk_abcdef123456", "Authorization: Bearer [REDACTED]"),
        ("key sbx_0123456789abcdef revoked", "key sbx_[REDACTED] revoked"),
        ("secret whsec_QUJDREVGR0g= set", "secret whsec_[REDACTED] set"),
        ("sync ABC finished in 3 s", "sync ABC finished in 3 s"),
    ],
)
def test_redact_text(line, expected):
    assert logsafe.redact_text(line) == expected


def test_a_celery_task_failure_is_redacted_like_any_record(caplog):
    caplog.set_level(logging.ERROR)
    try:
        raise ValueError("no link at /connect/TOKEN12345678901234567890/")
    except ValueError:
        logging.getLogger("celery.app.trace").exception("Task %s raised unexpected", "integrations.syncs.run_sync")
    logged = _everything_logged(caplog)
    assert "TOKEN1234567890" not in logged and "/connect/[REDACTED]/" in logged


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorns_access_log_is_redacted(tmp_path):
    """gunicorn started as the README says (with config/gunicorn.conf.py) writes no token to its
    access log — the request line, path and query."""
    port = _free_port()
    env = _service_env(_free_port(), port)
    access_log = tmp_path / "access.log"
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-c",
            "config/gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-logfile",
            str(access_log),
            "--error-logfile",
            str(tmp_path / "error.log"),
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=env,
    )
    token, code = "T" * 43, "oauthcode987654321"
    try:
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return httpx.get(f"{base}/login/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert _wait_for(answers, 60), (tmp_path / "error.log").read_text()
        assert httpx.get(f"{base}/connect/{token}/").status_code == 404
        assert httpx.get(f"{base}/connect/oauth/callback/?code={code}&state=x").status_code == 403
        assert httpx.get(f"{base}/v1/connect/integration-by-token/{token}").status_code == 401
    finally:
        web.terminate()
        web.wait(timeout=30)
    logged = access_log.read_text() + (tmp_path / "error.log").read_text()
    assert "/connect/[REDACTED]/" in logged and "code=[REDACTED]" in logged
    assert token not in logged and code not in logged


def test_django_error_reports_are_redacted(rf, settings):
    """The report mailed to ADMINS (and the DEBUG page) names the request URL: redacted too."""
    from django.views.debug import get_exception_reporter_class

    token, code = "R" * 43, "oauth" + "c0de" * 3  # the HTML report quotes this source: no literal values
    request = rf.get(f"/connect/{token}/?code={code}")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = get_exception_reporter_class(request)(request, *sys.exc_info())
    assert reporter.__class__ is logsafe.SafeExceptionReporter
    for report in (reporter.get_traceback_text(), reporter.get_traceback_html()):
        assert token not in report and code not in report and "/connect/[REDACTED]/" in report
