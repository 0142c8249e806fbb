"""The request logs page: filters, htmx table swaps, pagination that keeps the filters."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard.logs import PAGE_SIZE

from . import factories

HTMX = {"HX-Request": "true"}


def _url(query: str = "") -> str:
    return reverse("dashboard:logs", kwargs={"env": "acme"}) + query


def _paths(response) -> list[str]:
    assert response.status_code == 200
    return re.findall(r"<td><code>[A-Z]+ ([^<]+)</code></td>", response.content.decode())


@pytest.fixture
def sample(environment, other_environment):
    now = timezone.now()
    make = factories.RequestLogFactory
    return [
        make(environment=environment, path="/v1/check-api-key", status_code=200, created_at=now - timedelta(minutes=5)),
        make(
            environment=environment,
            method="POST",
            path="/v1/force-sync",
            status_code=400,
            error_code="PLATFORM.INPUT_INVALID",
            integration_id="sandbox:abc",
            created_at=now - timedelta(minutes=4),
        ),
        make(
            environment=environment,
            method="POST",
            path="/connect/tok/",
            source="CONNECT_FLOW",
            status_code=200,
            integration_id="sandbox:abc",
            created_at=now - timedelta(minutes=3),
        ),
        make(
            environment=environment,
            path="/v1/integrations/sandbox:xyz",
            status_code=500,
            error_code="PLATFORM.UNKNOWN_ERROR",
            integration_id="sandbox:xyz",
            created_at=now - timedelta(minutes=2),
        ),
        make(environment=other_environment, path="/v1/force-sync", status_code=400, integration_id="sandbox:abc"),
    ]


@pytest.fixture
def signed_in(client, viewer):
    client.force_login(viewer)
    return client


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", ["/v1/integrations/sandbox:xyz", "/connect/tok/", "/v1/force-sync", "/v1/check-api-key"]),
        ("?source=CONNECT_FLOW", ["/connect/tok/"]),
        ("?source=API&status=errors", ["/v1/integrations/sandbox:xyz", "/v1/force-sync"]),
        ("?status=4xx", ["/v1/force-sync"]),
        ("?status=5xx", ["/v1/integrations/sandbox:xyz"]),
        ("?status=ok", ["/connect/tok/", "/v1/check-api-key"]),
        ("?errors=1", ["/v1/integrations/sandbox:xyz", "/v1/force-sync"]),  # links from before the filters
        ("?integration=sandbox:abc", ["/connect/tok/", "/v1/force-sync"]),
        ("?q=FORCE", ["/v1/force-sync"]),
        ("?q=platform.unknown_error", ["/v1/integrations/sandbox:xyz"]),
        ("?q=unknown_error", ["/v1/integrations/sandbox:xyz"]),  # any part of the code, not only its start
        ("?q=input_inval", ["/v1/force-sync"]),
    ],
)
def test_filters(signed_in, sample, query, expected):
    assert _paths(signed_in.get(_url(query))) == expected


@pytest.mark.parametrize("query", ["?source=NOPE", "?status=teapot", "?status=", "?page=abc", "?page=999"])
def test_unknown_values_are_ignored(signed_in, sample, query):
    response = signed_in.get(_url(query))
    assert response.status_code == 200


def test_the_filter_form_swaps_the_table_with_htmx_and_works_without_js(signed_in, sample):
    page = signed_in.get(_url()).content.decode()
    assert 'id="log-filters"' in page and 'method="get"' in page and 'hx-target="#logs-table"' in page

    fragment = signed_in.get(_url("?status=errors"), headers=HTMX)
    body = fragment.content.decode()
    assert "<html" not in body and 'id="log-filters"' not in body and body.lstrip().startswith('<div id="logs-table">')
    assert "2 requests match the filters" in body
    assert fragment["Vary"].count("HX-Request") == 1


def test_pagination_keeps_the_filters(signed_in, environment):
    factories.RequestLogFactory.create_batch(PAGE_SIZE + 3, environment=environment, status_code=404, path="/v1/x")
    factories.RequestLogFactory(environment=environment, status_code=200)
    body = signed_in.get(_url("?status=4xx")).content.decode()
    next_href = html.unescape(re.search(r'<a href="([^"]+)"[^>]*>Next →', body).group(1))
    assert next_href == "?status=4xx&page=2"
    assert len(_paths(signed_in.get(_url(next_href), headers=HTMX))) == 3


def test_an_empty_result_says_so(signed_in, sample):
    assert "No requests match these filters." in signed_in.get(_url("?q=nothing-like-this")).content.decode()


def test_the_integration_page_links_to_its_logs(signed_in, environment, sample):
    integration = factories.IntegrationFactory(environment=environment)
    page = signed_in.get(reverse("dashboard:integration", kwargs={"env": "acme", "integration_id": integration.pk}))
    link = html.unescape(re.search(r'<a href="([^"]+)">request logs</a>', page.content.decode()).group(1))
    assert link == _url(f"?integration={integration.pk}".replace(":", "%3A"))


def test_another_environments_logs_never_show(signed_in, sample):
    # globex logged the same path, status and integration id: only acme's row shows.
    assert _paths(signed_in.get(_url("?integration=sandbox:abc&status=4xx"))) == ["/v1/force-sync"]


def test_an_outsider_gets_404(client, outsider, sample):
    client.force_login(outsider)
    assert client.get(_url("?status=errors")).status_code == 404


@pytest.mark.parametrize("query", ["", "?status=errors&source=API&q=v1"])
def test_the_list_runs_a_constant_number_of_queries(signed_in, environment, query):
    api_key = factories.ApiKeyFactory(environment=environment)

    def make(n: int) -> None:
        factories.RequestLogFactory.create_batch(n, environment=environment, api_key=api_key, status_code=400)

    make(2)
    signed_in.get(_url(query))
    cache.clear()
    with CaptureQueriesContext(connection) as with_2:
        assert len(_paths(signed_in.get(_url(query)))) == 2
    make(28)
    cache.clear()
    with CaptureQueriesContext(connection) as with_30:
        assert len(_paths(signed_in.get(_url(query)))) == 30
    assert len(with_30) == len(with_2), [q["sql"] for q in with_30.captured_queries]


def test_htmx_pushes_the_clean_url_not_the_raw_form(signed_in, sample):
    # What the filter form sends: every field, empty ones included.
    response = signed_in.get(_url("?q=&integration=&source=CONNECT_FLOW&status="), headers=HTMX)
    assert response["HX-Push-Url"] == _url("?source=CONNECT_FLOW")
    assert "HX-Push-Url" not in signed_in.get(_url("?q=&source=API")).headers  # plain requests: the URL is what it is
