"""Tenancy on the dashboard: operators see their own environments' data and nothing else.

Another environment's pages are a 404 (never a 403), so their existence is not even confirmed.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone

import dashboard.urls
from dashboard.views import PAGE_SIZE

from . import factories
from .pages import without_csrf

ACME_ORG = "Acme Customer Wile E. Ltd"
GLOBEX_ORG = "Globex Customer Scorpio Inc"


@pytest.fixture
def acme_integration(environment):
    return factories.IntegrationFactory(environment=environment, end_user_organization_name=ACME_ORG)


@pytest.fixture
def globex_integration(other_environment):
    return factories.IntegrationFactory(environment=other_environment, end_user_organization_name=GLOBEX_ORG)


def _integrations_url(env) -> str:
    return reverse("dashboard:integrations", kwargs={"env": getattr(env, "slug", env)})


def _overview_url(env) -> str:
    return reverse("dashboard:overview", kwargs={"env": getattr(env, "slug", env)})


# --- Every dashboard URL that takes an environment ------------------------------------------


def _env_patterns(patterns, namespace: str) -> list[tuple[str, URLPattern]]:
    """(view name, pattern) for every pattern under `patterns` whose URL has an `env` kwarg."""
    found = []
    for p in patterns:
        if isinstance(p, URLResolver):
            inner = f"{namespace}:{p.namespace}" if p.namespace else namespace
            found += [(name, pat) for name, pat in _env_patterns(p.url_patterns, inner)]
        elif isinstance(p, URLPattern) and "env" in p.pattern.regex.groupindex:
            found.append((f"{namespace}:{p.name}" if p.name else "", p))
    return found


ENV_PATTERNS = _env_patterns(dashboard.urls.urlpatterns, dashboard.urls.app_name)


def _samples(environment) -> dict[str, str]:
    """Real objects of `environment` for every kwarg name a dashboard URL may take besides `env`.

    The objects exist, so a 404 for an outsider means "not yours", not "no such object".
    Add a name here when a new dashboard URL takes a new kwarg.
    """
    integration = factories.IntegrationFactory(environment=environment)
    endpoint = factories.WebhookEndpointFactory(environment=environment)
    delivery = factories.WebhookDeliveryFactory(endpoint=endpoint)
    sync = factories.SyncFactory(integration=integration)
    api_key = factories.ApiKeyFactory(environment=environment)
    log = factories.RequestLogFactory(environment=environment)
    audit = factories.AuditEventFactory(environment=environment, integration_id=integration.id)
    link = factories.ConnectionLinkFactory(integration=integration)
    member = factories.MembershipFactory(environment=environment)
    invitation = factories.InvitationFactory(environment=environment)
    values = {
        ("integration", "integration_id", "integration_pk"): integration.pk,
        ("scope_config", "scope_config_id", "scope_config_pk", "config", "config_id"): integration.scope_config_id,
        ("endpoint", "endpoint_id", "webhook", "webhook_id", "webhook_endpoint_id"): endpoint.pk,
        ("delivery", "delivery_id", "webhook_delivery_id"): delivery.pk,
        ("sync", "sync_id", "sync_pk"): sync.pk,
        ("key", "key_id", "api_key", "api_key_id"): api_key.pk,
        ("log", "log_id", "request_log", "request_log_id"): log.pk,
        ("audit", "audit_id", "event", "event_id", "audit_event_id"): audit.pk,
        ("link", "link_id", "connection_link_id"): link.pk,
        ("member", "member_id", "membership", "membership_id"): member.pk,
        ("invitation", "invitation_id"): invitation.pk,
    }
    return {name: value for names, value in values.items() for name in names}


def _url_for(name: str, pattern: URLPattern, env_slug: str, samples: dict) -> str:
    if not name:
        pytest.skip(f"pattern {pattern.pattern} has no name: cannot reverse it")
    kwargs = {"env": env_slug}
    for kwarg in pattern.pattern.regex.groupindex:
        if kwarg == "env":
            continue
        if kwarg not in samples:
            pytest.skip(f"{name} takes kwarg {kwarg!r}: teach _samples() in {__name__} a sample object for it")
        kwargs[kwarg] = samples[kwarg]
    return reverse(name, kwargs=kwargs)


def test_the_generic_tenancy_tests_cover_the_integrations_page():
    assert "dashboard:integrations" in [name for name, _ in ENV_PATTERNS]


@pytest.mark.parametrize(("name", "pattern"), ENV_PATTERNS, ids=[n or str(p.pattern) for n, p in ENV_PATTERNS])
def test_every_environment_page_is_a_404_for_an_outsider(client, environment, owner, outsider, name, pattern):
    url = _url_for(name, pattern, environment.slug, _samples(environment))

    # The URL is real: a member of the environment reaches it.
    client.force_login(owner)
    assert client.get(url).status_code != 404, f"{url} is a 404 even for a member: the sample kwargs are wrong"

    client.force_login(outsider)
    response = client.get(url)
    if response.status_code == 405:  # a POST-only view
        response = client.post(url)
    assert response.status_code == 404, f"{url} answered {response.status_code} to an outsider"
    assert environment.name not in response.content.decode()


@pytest.mark.parametrize(("name", "pattern"), ENV_PATTERNS, ids=[n or str(p.pattern) for n, p in ENV_PATTERNS])
def test_every_environment_page_redirects_anonymous_users_to_login(client, environment, name, pattern):
    url = _url_for(name, pattern, environment.slug, _samples(environment))

    response = client.get(url)
    if response.status_code == 405:
        response = client.post(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_the_outsider_never_sees_the_other_environments_name(client, environment, other_environment, owner, outsider):
    """Crawl every page the outsider can open: their own environment's, the home page, the
    sandbox, and the 404s for the other environment."""
    acme_samples = _samples(environment)
    factories.IntegrationFactory(environment=environment, end_user_organization_name=ACME_ORG)
    globex_samples = _samples(other_environment)
    client.force_login(outsider)

    urls = ["/", "/sandbox/"]
    for name, pattern in ENV_PATTERNS:
        if not name or set(pattern.pattern.regex.groupindex) - {"env"} - set(globex_samples):
            continue
        urls.append(_url_for(name, pattern, "globex", globex_samples))
        urls.append(_url_for(name, pattern, environment.slug, acme_samples))
    urls += [_integrations_url("globex") + "?page=2", _integrations_url(environment) + "?page=2"]

    for url in urls:
        for headers in ({}, {"HX-Request": "true"}):
            response = client.get(url, headers=headers, follow=True)
            body = response.content.decode()
            assert "Acme production" not in body, url
            assert ACME_ORG not in body, url
            assert 'href="/env/acme/' not in body, url


# --- The integrations list ------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["owner", "editor", "viewer"])
def test_a_member_sees_their_environments_integrations_only(
    client, request, persona, acme_integration, globex_integration
):
    client.force_login(request.getfixturevalue(persona))

    response = client.get(_integrations_url("acme"))

    assert response.status_code == 200
    body = response.content.decode()
    assert ACME_ORG in body
    assert acme_integration.end_user_origin_id in body
    assert GLOBEX_ORG not in body
    assert globex_integration.end_user_origin_id not in body


def test_the_outsider_sees_their_own_integrations_and_gets_404_for_acme(
    client, owner, outsider, acme_integration, globex_integration
):
    client.force_login(outsider)

    own = client.get(_integrations_url("globex"))
    assert own.status_code == 200
    assert GLOBEX_ORG in own.content.decode()
    assert ACME_ORG not in own.content.decode()

    other = client.get(_integrations_url("acme"))
    assert other.status_code == 404
    assert ACME_ORG not in other.content.decode()


def test_an_unknown_environment_and_a_foreign_one_look_the_same(client, owner, outsider, environment):
    client.force_login(outsider)

    foreign = client.get(_integrations_url("acme"))
    unknown = client.get(_integrations_url("no-such-env"))

    assert foreign.status_code == unknown.status_code == 404
    assert without_csrf(foreign) == without_csrf(unknown)


def test_anonymous_users_are_sent_to_login(client, environment):
    for url in ["/", _integrations_url(environment)]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('login')}?next={url}"


def test_the_htmx_branch_returns_only_the_table(client, viewer, acme_integration):
    client.force_login(viewer)

    response = client.get(_integrations_url("acme"), headers={"HX-Request": "true"})

    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="integrations-table"' in body
    assert ACME_ORG in body
    assert "<html" not in body
    assert "<h1>Integrations</h1>" not in body
    # The same URL answers differently depending on HX-Request: caches must know.
    assert "HX-Request" in response.get("Vary", "")


def test_the_full_page_wraps_the_table(client, viewer, acme_integration):
    client.force_login(viewer)

    body = client.get(_integrations_url("acme")).content.decode()

    assert "<html" in body
    assert 'id="integrations-table"' in body


def test_an_htmx_history_restore_gets_the_full_page(client, viewer, acme_integration):
    """After hx-push-url, going back on a history-cache miss asks for the URL with
    HX-History-Restore-Request: htmx swaps the whole body, so the answer must be the full page."""
    client.force_login(viewer)

    response = client.get(
        _integrations_url("acme") + "?page=1",
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )

    body = response.content.decode()
    assert "<html" in body
    assert 'id="integrations-table"' in body


def _org_cells(body: str) -> list[str]:
    return re.findall(r"<td><a href=\"[^\"]+\">(Org-\d{3})</a></td>", body)


def test_the_integrations_list_is_paginated(client, viewer, environment):
    scope_config = factories.ScopeConfigFactory(environment=environment)
    now = timezone.now()
    for i in range(PAGE_SIZE + 3):
        factories.IntegrationFactory(
            environment=environment,
            scope_config=scope_config,
            end_user_organization_name=f"Org-{i:03d}",
            created_at=now - timedelta(minutes=i),
        )
    client.force_login(viewer)
    url = _integrations_url(environment)

    first = client.get(url).content.decode()
    second = client.get(url + "?page=2").content.decode()
    second_htmx = client.get(url + "?page=2", headers={"HX-Request": "true"}).content.decode()

    assert _org_cells(first) == [f"Org-{i:03d}" for i in range(PAGE_SIZE)]  # newest first
    assert _org_cells(second) == [f"Org-{i:03d}" for i in range(PAGE_SIZE, PAGE_SIZE + 3)]
    assert _org_cells(second_htmx) == _org_cells(second)
    assert "Page 2 of 2" in second
    assert "?page=1" in second and "?page=3" not in second


def _table_rows(response) -> list[str]:
    """One state badge per rendered integration row."""
    return re.findall(r'<span class="badge state-', response.content.decode())


# --- Home page and the environment switcher ---------------------------------------------------


def test_home_sends_a_member_to_their_environment(client, viewer, environment):
    client.force_login(viewer)

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == _overview_url(environment)


def test_home_prefers_the_last_used_environment(client, viewer, environment, other_environment):
    factories.MembershipFactory(user=viewer, environment=other_environment)
    client.force_login(viewer)

    assert client.get("/")["Location"] == _overview_url("acme")  # first by slug
    client.get(_integrations_url("globex"))
    assert client.get("/")["Location"] == _overview_url("globex")


def test_home_forgets_a_last_used_environment_the_user_left(client, viewer, environment, other_environment):
    membership = factories.MembershipFactory(user=viewer, environment=other_environment)
    client.force_login(viewer)
    client.get(_integrations_url("globex"))
    membership.delete()

    assert client.get("/")["Location"] == _overview_url("acme")


def test_home_without_memberships_says_no_environment_yet(client, owner, outsider):
    client.force_login(factories.UserFactory())

    response = client.get("/")

    assert response.status_code == 200
    body = response.content.decode()
    assert "No environment yet" in body
    assert "Acme production" not in body
    assert "Globex production" not in body


def test_the_switcher_lists_only_the_users_environments(client, viewer, outsider, environment, other_environment):
    third = factories.EnvironmentFactory(slug="initech", name="Initech staging")
    factories.MembershipFactory(user=viewer, environment=third)
    client.force_login(viewer)

    body = client.get(_integrations_url("acme")).content.decode()
    switcher = re.search(r'<details class="switcher">(.*?)</details>', body, re.S).group(1)

    assert "Acme production" in switcher
    assert "Initech staging" in switcher
    assert _integrations_url("initech") in switcher
    assert "Globex production" not in body
    assert _integrations_url("globex") not in body
