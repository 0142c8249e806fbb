"""Post/Redirect/Get for every form that creates something: the POST redirects (a plain form gets
a 302, htmx an HX-Redirect), the page it leads to shows a secret or link at most once, and
refreshing that page (or coming Back to it) creates nothing more.

One row per create form; a new create form gets a row here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse

from connect_flow.models import ConnectionLink
from integrations.models import (
    ApiKey,
    Environment,
    Integration,
    Invitation,
    Role,
    ScopeConfig,
    WebhookEndpoint,
)
from sandbox.models import SandboxApiKey, SandboxCompany

from . import factories
from .test_dashboard_scopes import _picker_post

SPEC = {"hris_employees": {"availability": "ENABLED", "fields": {"first_name": "ENABLED"}}}


@dataclass(frozen=True)
class CreateForm:
    name: str
    role: str
    post: Callable[[Environment, Integration], tuple[str, dict]]  # (url, data)
    count: Callable[[], int]
    secret: str = ""  # a regex for what must be shown once (a key, a link)
    staff: bool = False


def _env_url(name: str, env: Environment, **kwargs) -> str:
    return reverse(f"dashboard:{name}", kwargs={"env": env.slug, **kwargs})


FORMS = [
    CreateForm(
        "api key",
        Role.OWNER,
        lambda env, i: (_env_url("api_key_create", env), {"name": "Backend"}),
        lambda: ApiKey.objects.count(),
        secret=r"rlk_[\w-]{20,}",
    ),
    CreateForm(
        "webhook endpoint",
        Role.OWNER,
        lambda env, i: (_env_url("webhook_new", env), {"url": "https://hooks.example.com/relink"}),
        lambda: WebhookEndpoint.objects.count(),
        secret=r"whsec_[\w+/=]{20,}",
    ),
    CreateForm(
        "connection link",
        Role.EDITOR,
        lambda env, i: (
            _env_url("connect", env),
            {
                "end_user_organization_name": "Umbrella",
                "end_user_email": "hr@umbrella.test",
                "tool": "sandbox",
                "language": "en",
                "link_type": "MAGIC_LINK",
            },
        ),
        lambda: ConnectionLink.objects.count(),
        secret=r"/connect/[\w-]{30,}/",
    ),
    CreateForm(
        "reconnection link",
        Role.EDITOR,
        lambda env, i: (
            _env_url("relink_create", env, integration_id=i.pk),
            {"scope_config": "", "link_type": "MAGIC_LINK", "language": "de"},
        ),
        lambda: ConnectionLink.objects.count(),
        secret=r"/connect/[\w-]{30,}/",
    ),
    CreateForm(
        "reconnect (repair)",
        Role.EDITOR,
        lambda env, i: (_env_url("reconnect", env, integration_id=i.pk), {}),
        lambda: ConnectionLink.objects.count(),
        secret=r"/connect/[\w-]{30,}/",
    ),
    CreateForm(
        "bulk reconnection links",
        Role.EDITOR,
        lambda env, i: (_env_url("relink_bulk", env), {"integration": [i.pk], "link_type": "MAGIC_LINK"}),
        lambda: ConnectionLink.objects.count(),
        secret=r"/connect/[\w-]{30,}/",
    ),
    CreateForm(
        "scope config",
        Role.EDITOR,
        lambda env, i: (_env_url("scope_config_new", env), _picker_post("Payroll")),
        lambda: ScopeConfig.objects.count(),
    ),
    CreateForm(
        "scope config duplicate",
        Role.EDITOR,
        lambda env, i: (_env_url("scope_config_duplicate", env, scope_config_id=i.scope_config_id), {}),
        lambda: ScopeConfig.objects.count(),
    ),
    CreateForm(
        "invitation",
        Role.OWNER,
        lambda env, i: (_env_url("member_invite", env), {"email": "new@umbrella.test", "role": "viewer"}),
        lambda: Invitation.objects.count(),
    ),
    CreateForm(
        "environment",
        Role.VIEWER,
        lambda env, i: (reverse("dashboard:environment_new"), {"name": "Acme sandbox"}),
        lambda: Environment.objects.count(),
        staff=True,
    ),
    CreateForm(
        "sandbox company",
        Role.EDITOR,
        lambda env, i: (reverse("sandbox:create_company"), {"name": "Initech", "environment": env.slug}),
        lambda: SandboxCompany.objects.count(),
    ),
    CreateForm(
        "sandbox key",
        Role.EDITOR,
        lambda env, i: (
            reverse("sandbox:create_key", kwargs={"slug": "umbrella-corp"}),
            {"label": "new", "permissions": ["employees:read"]},
        ),
        lambda: SandboxApiKey.objects.count(),
        secret=r"sbx_[\w-]{20,}",
    ),
]


@pytest.fixture
def world(environment):
    config = factories.ScopeConfigFactory(environment=environment, name="Core", spec=SPEC)
    integration = factories.IntegrationFactory(environment=environment, scope_config=config, state="INVALID")
    SandboxCompany.objects.create(name="Umbrella Corp", environment=environment)
    return environment, integration


def _operator(environment, form: CreateForm):
    user = factories.member(environment, form.role)
    if form.staff:
        user.is_staff = True
        user.save()
    return user


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_a_plain_post_redirects_and_a_refresh_creates_nothing(client, world, form):
    environment, integration = world
    client.force_login(_operator(environment, form))
    url, data = form.post(environment, integration)
    before = form.count()

    response = client.post(url, data)

    assert response.status_code == 302, f"{form.name}: {response.status_code} (the POST rendered a page)"
    assert form.count() == before + 1
    first = client.get(response["Location"])
    assert first.status_code == 200
    refreshed = client.get(response["Location"])
    assert refreshed.status_code in (200, 302)  # 302: a results page with nothing left to show
    assert form.count() == before + 1, f"{form.name}: the refresh created something"
    if form.secret:
        assert re.search(form.secret, first.content.decode()), f"{form.name}: not shown after the redirect"
        assert "no-store" in first["Cache-Control"] or "max-age=0" in first["Cache-Control"]
        assert not re.search(form.secret, refreshed.content.decode()), f"{form.name}: shown twice"


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_an_htmx_post_redirects_or_swaps_a_fragment(client, world, form):
    """htmx: an HX-Redirect to the page (a full load, shown once as above), or a fragment swapped
    into the page; either way the address bar never holds a POST to repeat."""
    environment, integration = world
    client.force_login(_operator(environment, form))
    url, data = form.post(environment, integration)
    before = form.count()

    response = client.post(url, data, headers={"HX-Request": "true"})

    assert form.count() == before + 1
    if response.status_code == 302:  # a form without hx-post: the browser follows it as usual
        return
    assert response.status_code == 200, f"{form.name}: {response.status_code}"
    if response.has_header("HX-Redirect"):
        assert client.get(response["HX-Redirect"]).status_code == 200
    else:
        assert "<html" not in response.content.decode(), f"{form.name}: a whole page for an htmx swap"
        assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert form.count() == before + 1
