"""With SANDBOX_ENABLED=false (as production may run), everything but the sandbox works: every
page an operator or an admin can reach answers, the navigation does not offer the sandbox, and
its tools are offered for no new connection."""

from __future__ import annotations

import importlib
import re
from collections import deque
from urllib.parse import urljoin, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.urls import clear_url_caches

from connect_flow import links
from integrations.models import ApiKey, Role

from . import factories


@pytest.fixture
def sandbox_off(settings):
    """The setting off and the URLconf rebuilt as a process started with it off would build it."""
    import config.urls

    settings.SANDBOX_ENABLED = False
    importlib.reload(config.urls)
    clear_url_caches()
    yield
    settings.SANDBOX_ENABLED = True
    importlib.reload(config.urls)
    clear_url_caches()


@pytest.fixture
def populated(environment, owner):
    """An environment with something on every page: integrations, syncs, links, logs, webhooks."""
    integration = factories.IntegrationFactory(environment=environment, tool="personio")
    factories.AuthCheckFactory(integration=integration)
    factories.SyncFactory(integration=integration, scope_config=integration.scope_config)
    endpoint = factories.WebhookEndpointFactory(environment=environment)
    factories.WebhookDeliveryFactory(endpoint=endpoint)
    factories.RequestLogFactory(environment=environment, integration_id=integration.pk)
    factories.AuditEventFactory(environment=environment, integration_id=integration.pk)
    links.create_relink_link(integration, user=owner)
    ApiKey.create(environment, "Backend", created_by=owner)
    return integration


HREF = re.compile(r'href="([^"#]+)"')


def _crawl(client, start: str, limit: int = 250) -> dict[str, int]:
    """Every same-site page reachable from `start` by links: {path: status}."""
    seen: dict[str, int] = {}
    queue = deque([start])
    while queue and len(seen) < limit:
        path = queue.popleft()
        if path in seen:
            continue
        response = client.get(path)
        seen[path] = response.status_code
        if response.status_code in (301, 302):
            hrefs = [response["Location"]]
        elif response.status_code == 200 and "text/html" in response.get("Content-Type", ""):
            hrefs = HREF.findall(response.content.decode())
        else:
            continue
        for href in hrefs:
            url = urlsplit(urljoin(path, href.replace("&amp;", "&")))
            if url.netloc and url.netloc != "testserver":
                continue
            target = url.path + (f"?{url.query}" if url.query else "")
            if url.path.startswith(("/static/", "/logout")) or target in seen:
                continue
            queue.append(target)
    return seen


def test_every_page_an_owner_reaches_answers_without_the_sandbox(client, owner, populated, sandbox_off):
    client.force_login(owner)
    pages = _crawl(client, "/")

    assert len(pages) > 20, pages  # the crawl really walked the dashboard
    errors = {path: status for path, status in pages.items() if status >= 500}
    assert errors == {}
    assert not [path for path in pages if path.startswith("/sandbox")]
    assert 'href="/sandbox/' not in client.get(f"/env/{populated.environment.slug}/").content.decode()


def test_admin_pages_answer_without_the_sandbox(client, superuser, populated, sandbox_off):
    client.force_login(superuser)
    pages = _crawl(client, "/admin/", limit=150)
    assert len(pages) > 20
    assert {path: status for path, status in pages.items() if status >= 500} == {}


def test_the_sandbox_itself_is_gone(client, owner, sandbox_off):
    client.force_login(owner)
    assert client.get("/sandbox/").status_code == 404
    with pytest.raises(CommandError, match="SANDBOX_ENABLED"):
        call_command("seed_demo")
    with pytest.raises(CommandError, match="SANDBOX_ENABLED"):
        call_command("sandbox_key", "--company", "Initech", "--create")


def test_sandbox_tools_are_offered_for_no_new_connection(client, environment, sandbox_off):
    key, raw = ApiKey.create(environment, "Backend")
    auth = {"Authorization": f"Bearer {raw}"}

    tools = client.get("/v1/tools/hris", headers=auth).json()["data"]["tools"]
    assert tools and not [t for t in tools if t["id"].startswith("sandbox")]
    response = client.post(
        "/v1/connect/create-link",
        {
            "end_user_email": "hr@initech.test",
            "end_user_organization_name": "Initech",
            "integration_category": "HRIS",
            "integration_tool": "sandbox",
        },
        content_type="application/json",
        headers=auth,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "PLATFORM.INPUT_INVALID"
    assert "not available" in response.json()["error"]["message"]


def test_the_connect_page_offers_no_sandbox_tool(client, environment, sandbox_off):
    created = links.create_connect_link(
        environment, end_user_email="hr@initech.test", end_user_organization_name="Initech", category="HRIS"
    )
    body = client.get(urlsplit(created.url).path).content.decode()
    assert "Personio" in body and "Sandbox HR" not in body


def test_viewers_and_editors_reach_their_pages_too(client, environment, populated, sandbox_off):
    for role in (Role.VIEWER, Role.EDITOR):
        user = factories.UserFactory(email=f"{role}@acme.test")
        factories.MembershipFactory(environment=environment, user=user, role=role)
        client.force_login(user)
        pages = _crawl(client, "/", limit=80)
        assert {path: status for path, status in pages.items() if status >= 500} == {}, role
