"""Styled error pages with the nav, never a stack trace."""

from __future__ import annotations

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
