"""The integrations list: filters, search, sorting, pagination, and their plain + htmx branches."""

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

from dashboard.views import PAGE_SIZE
from integrations.models import IntegrationState

from . import factories

HTMX = {"HX-Request": "true"}


def _url(query: str = "") -> str:
    return reverse("dashboard:integrations", kwargs={"env": "acme"}) + query


def _orgs(response) -> list[str]:
    assert response.status_code == 200
    return re.findall(r'<td><a href="/env/acme/integrations/[^"]+">([^<]+)</a></td>', response.content.decode())


def _table_only(response) -> str:
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="integrations-table"' in body
    assert "<html" not in body and 'id="integration-filters"' not in body
    return body


@pytest.fixture
def sample(environment, other_environment):
    now = timezone.now()
    make = factories.IntegrationFactory
    objs = {
        "alpha": make(
            environment=environment,
            end_user_organization_name="Alpha GmbH",
            end_user_origin_id="cust-100",
            tool="personio",
            created_at=now - timedelta(days=5),
            last_sync_at=now - timedelta(hours=1),
        ),
        "beta": make(
            environment=environment,
            end_user_organization_name="Beta Ltd",
            end_user_origin_id="cust-200",
            tool="sandbox",
            state=IntegrationState.INVALID,
            created_at=now - timedelta(days=4),
            auth_failing_since=now - timedelta(days=4),
            invalid_since=now - timedelta(days=1),
            last_sync_at=now - timedelta(days=2),
        ),
        "gamma": make(
            environment=environment,
            end_user_organization_name="Gamma alpha Inc",
            end_user_origin_id="CUST-1001",
            tool="sandbox",
            created_at=now - timedelta(days=3),
            auth_failing_since=now - timedelta(hours=5),
            last_auth_check_at=now,
            last_auth_outcome="AUTH_FAILED",
        ),
        "delta": make(
            environment=environment,
            end_user_organization_name="Delta SA",
            end_user_origin_id="x-1",
            tool="personio",
            state=IntegrationState.INACTIVE,
            enabled=False,
            created_at=now - timedelta(days=2),
        ),
        "foreign": make(
            environment=other_environment,
            end_user_organization_name="Alpha Foreign",
            tool="personio",
            end_user_origin_id="cust-100",
        ),
    }
    return objs


@pytest.fixture
def signed_in(client, viewer):
    client.force_login(viewer)
    return client


def test_defaults_list_newest_first(signed_in, sample):
    assert _orgs(signed_in.get(_url())) == ["Delta SA", "Gamma alpha Inc", "Beta Ltd", "Alpha GmbH"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?state=INVALID", ["Beta Ltd"]),
        ("?state=ACTIVE", ["Gamma alpha Inc", "Alpha GmbH"]),
        ("?tool=personio", ["Delta SA", "Alpha GmbH"]),
        ("?tool=sandbox&state=ACTIVE", ["Gamma alpha Inc"]),
        ("?q=alpha", ["Gamma alpha Inc", "Alpha GmbH"]),  # organization, icontains
        ("?q=ALPHA+gmbh", ["Alpha GmbH"]),
        ("?q=cust-100", ["Gamma alpha Inc", "Alpha GmbH"]),  # origin id: exact or istartswith
        ("?q=cust-1001", ["Gamma alpha Inc"]),
        ("?q=x-1", ["Delta SA"]),
        ("?q=ust-100", []),  # origin ids match from the start only
        ("?q=alpha&tool=personio", ["Alpha GmbH"]),
        ("?q=alpha&state=ACTIVE&tool=sandbox&sort=organization", ["Gamma alpha Inc"]),
        ("?q=%20%20cust-200%20", ["Beta Ltd"]),  # surrounding spaces ignored
        ("?state=ACTIVE&sort=organization", ["Alpha GmbH", "Gamma alpha Inc"]),
        ("?state=ACTIVE&sort=-state", ["Gamma alpha Inc", "Alpha GmbH"]),
    ],
)
def test_filters_and_search(signed_in, sample, query, expected):
    assert _orgs(signed_in.get(_url(query))) == expected
    # The htmx branch renders the same rows, as the table fragment only.
    htmx = signed_in.get(_url(query), headers=HTMX)
    _table_only(htmx)
    assert _orgs(htmx) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("organization", ["Alpha GmbH", "Beta Ltd", "Delta SA", "Gamma alpha Inc"]),
        ("-organization", ["Gamma alpha Inc", "Delta SA", "Beta Ltd", "Alpha GmbH"]),
        (
            "state",
            ["Gamma alpha Inc", "Alpha GmbH", "Delta SA", "Beta Ltd"],
        ),  # ACTIVE < INACTIVE < INVALID, ties newest first
        ("created", ["Alpha GmbH", "Beta Ltd", "Gamma alpha Inc", "Delta SA"]),
        ("-created", ["Delta SA", "Gamma alpha Inc", "Beta Ltd", "Alpha GmbH"]),
        ("last_sync", ["Beta Ltd", "Alpha GmbH", "Delta SA", "Gamma alpha Inc"]),  # never synced last, newest first
        ("-last_sync", ["Alpha GmbH", "Beta Ltd", "Delta SA", "Gamma alpha Inc"]),
        ("failing_since", ["Beta Ltd", "Gamma alpha Inc", "Delta SA", "Alpha GmbH"]),
        ("-failing_since", ["Gamma alpha Inc", "Beta Ltd", "Delta SA", "Alpha GmbH"]),
        ("last_auth_check", ["Gamma alpha Inc", "Delta SA", "Beta Ltd", "Alpha GmbH"]),
    ],
)
def test_sorting(signed_in, sample, sort, expected):
    assert _orgs(signed_in.get(_url(f"?sort={sort}"))) == expected
    assert _orgs(signed_in.get(_url(f"?sort={sort}"), headers=HTMX)) == expected


@pytest.mark.parametrize(
    "query",
    [
        "?state=BOGUS",
        "?state=active",
        "?tool=nope",
        "?sort=password",
        "?sort=--organization",
        "?sort=-",
        "?sort=organization;DROP",
        "?page=abc",
        "?page=999",
        "?state=INVALID&state=",
        "?q=" + "x" * 1000,
        "?sort=__class__",
        "?state[]=x",
    ],
)
def test_invalid_values_are_ignored(signed_in, sample, query):
    for headers in ({}, HTMX):
        response = signed_in.get(_url(query), headers=headers)
        assert response.status_code == 200
    if "q=" not in query and "page=999" not in query and "state=INVALID" not in query:
        assert _orgs(signed_in.get(_url(query))) == ["Delta SA", "Gamma alpha Inc", "Beta Ltd", "Alpha GmbH"]


def test_the_filter_form_swaps_the_table_with_htmx_and_works_without_js(signed_in, sample):
    body = signed_in.get(_url("?state=ACTIVE&q=alpha&sort=organization")).content.decode()
    form = re.search(r'<form id="integration-filters"(.*?)</form>', body, re.S).group(0)

    assert 'method="get"' in form and f'action="{_url()}"' in form  # plain submit without JavaScript
    assert f'hx-get="{_url()}"' in form
    assert 'hx-target="#integrations-table"' in form
    assert 'hx-push-url="true"' in form
    assert 'hx-trigger="change, input changed delay:300ms from:input[type=search]"' in form
    assert '<button type="submit">' in form
    # The current values are filled in.
    assert 'name="q" value="alpha"' in form
    assert '<option value="ACTIVE" selected>' in form
    assert '<option value="personio">' in form and "selected" not in form.split('name="tool"')[1].split("</select>")[0]
    # The current sort rides along with the form (form= attribute), from inside the swapped table.
    assert '<input type="hidden" name="sort" value="organization" form="integration-filters">' in body


def test_the_pushed_filter_url_works_as_a_plain_get(signed_in, sample):
    """htmx pushes the form's GET URL; opening it later (bookmark, reload) renders the full page."""
    query = "?q=alpha&state=ACTIVE&tool=sandbox"
    fragment = signed_in.get(_url(query), headers=HTMX)
    full = signed_in.get(_url(query))

    assert _orgs(fragment) == _orgs(full) == ["Gamma alpha Inc"]
    assert "<html" in full.content.decode() and 'id="integration-filters"' in full.content.decode()
    assert "HX-Request" in fragment.get("Vary", "")


def _links(body: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'<a class="sort" href="([^"]+)"', body)]


def test_sort_links_keep_the_filters_and_toggle(signed_in, sample):
    body = _table_only(signed_in.get(_url("?state=ACTIVE&tool=sandbox&q=alpha&sort=organization"), headers=HTMX))
    links = _links(body)

    assert "?state=ACTIVE&tool=sandbox&q=alpha&sort=-organization" in links  # current column flips
    assert "?state=ACTIVE&tool=sandbox&q=alpha&sort=last_sync" in links
    assert "?state=ACTIVE&tool=sandbox&q=alpha&sort=created" in links
    assert 'aria-sort="ascending"' in body
    # Each sort link has the same htmx attributes as the href.
    for href in re.findall(r'<a class="sort" href="([^"]+)" hx-get="([^"]+)"', body):
        assert href[0] == href[1]
    # The default sort is not repeated in links.
    default = _links(signed_in.get(_url("?sort=-created")).content.decode())
    assert "?sort=created" in default and all("-created" not in link for link in default)


def test_pagination_links_keep_the_filters(signed_in, environment):
    now = timezone.now()
    scope_config = factories.ScopeConfigFactory(environment=environment)
    for i in range(PAGE_SIZE + 5):
        factories.IntegrationFactory(
            environment=environment,
            scope_config=scope_config,
            end_user_organization_name=f"Match {i:03d}",
            tool="personio",
            created_at=now - timedelta(minutes=i),
        )
    factories.IntegrationFactory(environment=environment, end_user_organization_name="Other", tool="sandbox")
    query = "?tool=personio&q=match&sort=organization"

    first = signed_in.get(_url(query)).content.decode()
    next_href = html.unescape(re.search(r'<a href="([^"]+)" hx-get="[^"]+"[^>]*>Next', first).group(1))
    assert next_href == "?tool=personio&q=match&sort=organization&page=2"
    second = signed_in.get(_url(next_href), headers=HTMX)
    assert _orgs(second) == [f"Match {i:03d}" for i in range(PAGE_SIZE, PAGE_SIZE + 5)]
    prev_href = html.unescape(re.search(r'<a href="([^"]+)"[^>]*>← Previous', second.content.decode()).group(1))
    assert prev_href == "?tool=personio&q=match&sort=organization&page=1"
    assert f"{PAGE_SIZE + 5} integrations match the filters" in first


def test_the_failing_badge_marks_active_integrations_failing_auth(signed_in, sample):
    body = signed_in.get(_url()).content.decode()
    rows = {m.group(2): m.group(1) for m in re.finditer(r"<tr>(.*?<a href=\"[^\"]+\">([^<]+)</a>.*?)</tr>", body, re.S)}

    assert "failing since" in rows["Gamma alpha Inc"] and 'class="badge warn-failing"' in rows["Gamma alpha Inc"]
    assert "warn-failing" not in rows["Beta Ltd"]  # INVALID already says so, with the broken chain
    assert '<span class="badge state-invalid"><svg' in rows["Beta Ltd"]
    assert "warn-failing" not in rows["Alpha GmbH"]


def test_an_empty_filter_result_says_so(signed_in, sample):
    body = signed_in.get(_url("?q=nobody-at-all")).content.decode()
    assert "No integrations match these filters." in body


def test_another_environments_integrations_never_match(signed_in, sample):
    assert "Alpha Foreign" not in signed_in.get(_url("?q=alpha")).content.decode()
    assert "Alpha Foreign" not in signed_in.get(_url("?q=cust-100&tool=personio")).content.decode()


def test_an_outsider_gets_404_with_filters(client, outsider, sample):
    client.force_login(outsider)
    assert client.get(_url("?state=ACTIVE&q=alpha")).status_code == 404


@pytest.mark.parametrize("query", ["", "?state=INVALID&q=org&sort=-failing_since&tool=sandbox"])
def test_the_list_runs_a_constant_number_of_queries(signed_in, environment, query):
    def make(n: int) -> None:
        for _ in range(n):
            integration = factories.IntegrationFactory(
                environment=environment,
                end_user_organization_name="Org",
                last_sync_at=timezone.now(),
                last_auth_check_at=timezone.now(),
                last_auth_outcome="AUTH_FAILED",
                auth_failing_since=timezone.now(),
                state="INVALID",
            )
            factories.AuthCheckFactory(integration=integration)
            factories.SyncFactory(integration=integration)

    make(3)
    signed_in.get(_url(query))  # warm-up: the first visit records the environment in the session
    cache.clear()  # measure with the list count computed, not served from the cache
    with CaptureQueriesContext(connection) as with_3:
        assert len(_orgs(signed_in.get(_url(query)))) == 3
    make(27)
    cache.clear()
    with CaptureQueriesContext(connection) as with_30:
        assert len(_orgs(signed_in.get(_url(query)))) == 30
    cache.clear()
    with CaptureQueriesContext(connection) as htmx_30:
        assert len(_orgs(signed_in.get(_url(query), headers=HTMX))) == 30

    assert len(with_30) == len(with_3), [q["sql"] for q in with_30.captured_queries]
    assert len(htmx_30) <= len(with_30)


def test_rows_added_after_the_count_was_cached_still_show(signed_in, environment):
    factories.IntegrationFactory.create_batch(2, environment=environment, end_user_organization_name="Org")
    assert len(_orgs(signed_in.get(_url("")))) == 2
    factories.IntegrationFactory(environment=environment, end_user_organization_name="Org")
    assert len(_orgs(signed_in.get(_url("")))) == 3  # the stale count never hides rows


def _count_queries(captured) -> int:
    return sum(1 for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("SELECT COUNT(*)"))


def test_deleting_an_integration_shows_the_new_total_at_once(
    client, editor, environment, django_capture_on_commit_callbacks
):
    doomed, *_ = factories.IntegrationFactory.create_batch(3, environment=environment, end_user_organization_name="Org")
    client.force_login(editor)
    assert "3 integrations" in client.get(_url()).content.decode()  # count now cached
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("dashboard:delete", kwargs={"env": "acme", "integration_id": doomed.pk}))
    assert "2 integrations" in client.get(_url()).content.decode()


def test_a_sync_touching_no_filtered_field_keeps_the_cached_count(
    signed_in, environment, django_capture_on_commit_callbacks
):
    integration = factories.IntegrationFactory(environment=environment)
    signed_in.get(_url())
    with django_capture_on_commit_callbacks(execute=True):
        integration.last_sync_at = timezone.now()
        integration.save(update_fields=["last_sync_at"])
    with CaptureQueriesContext(connection) as after_sync:
        signed_in.get(_url())
    assert _count_queries(after_sync) == 0
    with django_capture_on_commit_callbacks(execute=True):
        integration.state = IntegrationState.INVALID
        integration.save(update_fields=["state"])
    with CaptureQueriesContext(connection) as after_state_change:
        body = signed_in.get(_url("?state=INVALID")).content.decode()
    assert _count_queries(after_state_change) == 1 and "1 integration match" in body


def test_another_environments_writes_keep_this_lists_cached_count(
    signed_in, environment, other_environment, django_capture_on_commit_callbacks
):
    factories.IntegrationFactory(environment=environment)
    signed_in.get(_url())
    with django_capture_on_commit_callbacks(execute=True):
        factories.IntegrationFactory(environment=other_environment)
    with CaptureQueriesContext(connection) as captured:
        signed_in.get(_url())
    assert _count_queries(captured) == 0


@pytest.mark.postgres
@pytest.mark.parametrize(
    "lookup",
    [{"end_user_organization_name__icontains": "Organization 4711"}, {"end_user_origin_id__istartswith": "cust-47"}],
)
def test_the_search_lookups_are_served_by_the_trigram_index(environment, lookup):
    """Migration 0002's GIN index must match the exact SQL of the search's lookups (see
    ListFilters.apply), or PostgreSQL walks the whole environment for every keystroke."""
    from integrations.models import Integration

    factories.IntegrationFactory.create_batch(30, environment=environment)
    with connection.cursor() as cursor:
        # A 30-row table is cheapest to read whole; forbid the plain scans so the plan shows
        # whether the index can serve the expression at all (at 100k rows the planner picks it).
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = Integration.objects.filter(**lookup).explain()
    assert "Bitmap Index Scan on integration_search_trgm_idx" in plan, plan


def test_htmx_pushes_the_clean_url_not_the_raw_form(signed_in, environment):
    factories.IntegrationFactory.create_batch(PAGE_SIZE + 1, environment=environment, state=IntegrationState.INVALID)
    response = signed_in.get(_url("?q=&state=INVALID&tool=&page=2"), headers=HTMX)
    assert response["HX-Push-Url"] == _url("?state=INVALID&page=2")
    assert signed_in.get(_url("?q=&state=&tool="), headers=HTMX)["HX-Push-Url"] == _url()
