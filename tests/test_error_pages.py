"""Styled error pages with the nav, never a stack trace; the nav marks where you are."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_missing_page_is_the_styled_404_with_the_nav(client, owner):
    client.force_login(owner)
    response = client.get("/env/acme/nothing-here/")
    body = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in body and 'class="mainnav"' in body and "relink.css" in body


def test_a_role_too_low_is_the_styled_403_saying_why(client, viewer, environment):
    client.force_login(viewer)
    response = client.get(reverse("dashboard:api_keys", kwargs={"env": environment.slug}))
    body = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in body and "owner" in body and 'class="mainnav"' in body


def test_a_server_error_is_the_styled_500_without_a_traceback(monkeypatch, owner, environment):
    from dashboard import overview

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(overview, "render", broken)
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    response = client.get(reverse("dashboard:overview", kwargs={"env": environment.slug}))
    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in body and "secret internals" not in body and "Traceback" not in body


def test_a_nul_byte_gets_the_styled_400(client):
    response = client.get("/env/acme/?q=%00")
    assert response.status_code == 400 and "<h1>Bad request</h1>" in response.content.decode()
    assert "style-src 'self'" in response["Content-Security-Policy"]  # its stylesheet may load


@pytest.mark.parametrize(
    ("page", "current"),
    [
        ("dashboard:overview", "Overview"),
        ("dashboard:integrations", "Integrations"),
        ("dashboard:scope_configs", "Scope configs"),
        ("dashboard:webhooks", "Webhooks"),
        ("dashboard:logs", "Logs"),
        ("dashboard:api_keys", "API keys"),
        ("dashboard:members", "Members"),
    ],
)
def test_the_nav_marks_the_current_page_and_offers_a_skip_link(client, owner, environment, page, current):
    client.force_login(owner)
    body = client.get(reverse(page, kwargs={"env": environment.slug})).content.decode()
    marked = re.findall(r'<a href="[^"]+" aria-current="page">([^<]+)</a>', body.split('class="mainnav"')[1])
    assert marked[:1] == [current]
    assert '<a class="skip-link" href="#main">Skip to content</a>' in body and 'id="main"' in body


def test_an_integration_page_is_under_integrations_in_the_nav(client, owner, environment):
    from . import factories

    integration = factories.IntegrationFactory(environment=environment)
    client.force_login(owner)
    url = reverse("dashboard:integration", kwargs={"env": environment.slug, "integration_id": integration.pk})
    body = client.get(url).content.decode()
    assert 'aria-current="page">Integrations</a>' in body
