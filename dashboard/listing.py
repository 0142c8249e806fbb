"""Filters, search and sorting for the dashboard's lists, read from the query string.

Unknown or malformed values are ignored (never a 500), so any bookmarked URL still opens; links
built here carry only the cleaned, non-default values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from urllib.parse import urlencode

from django.db.models import F, OrderBy, Q, QuerySet
from django.http import HttpResponse, QueryDict
from django_htmx.http import push_url

from dashboard.htmx import DashboardRequest, render_region, wants_partial
from integrations.models import IntegrationState
from integrations.providers import tool_choices

MAX_QUERY = 200

# ?sort= key → model field. "-key" sorts descending; the id breaks ties so pages are stable.
SORTS = {
    "organization": ("end_user_organization_name", "Organization"),
    "state": ("state", "State"),
    "last_sync": ("last_sync_at", "Last sync"),
    "last_auth_check": ("last_auth_check_at", "Last auth check"),
    "failing_since": ("auth_failing_since", "Failing since"),
    "created": ("created_at", "Created"),
}
NULLABLE = {"last_sync_at", "last_auth_check_at", "auth_failing_since"}  # empty values sort last
DEFAULT_SORT = "-created"
TABLE_COLUMNS = [
    "state",
    "organization",
    "Tool",
    "Origin id",
    "last_sync",
    "last_auth_check",
    "failing_since",
    "created",
    "Reconnection link",
]


def render_list(request: DashboardRequest, template: str, ctx: dict, region: str = "table") -> HttpResponse:
    """A filtered, paginated list (`ctx["filters"]`, `ctx["page"]`) as a page or its table.

    Adds the previous/next links, and tells htmx which URL to push: the cleaned filters and page,
    not the raw form serialization with its empty fields, so the address bar holds the
    bookmarkable URL.
    """
    filters, page = ctx["filters"], ctx["page"]
    ctx["previous_url"] = filters.query(page=page.previous_page_number()) if page.has_previous() else ""
    ctx["next_url"] = filters.query(page=page.next_page_number()) if page.has_next() else ""
    response = render_region(request, template, region, ctx)
    if wants_partial(request):
        push_url(response, request.path + filters.query(page=page.number if page.number > 1 else None).rstrip("?"))
    return response


class QueryFilters:
    """Base for a frozen dataclass of query-string filters: links to pages and sorts of the same
    view carry the non-default values, in field order."""

    def params(self, **overrides: object) -> dict[str, str]:
        """The non-default values as query parameters, with `overrides` (None drops a key)."""
        values = {
            f.name: getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]  # subclasses are dataclasses
            if getattr(self, f.name) != f.default
        }
        values.update(overrides)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    def query(self, **overrides: object) -> str:
        """ "?state=INVALID&sort=organization" — or "?" when nothing is set (still a link to page 1)."""
        return "?" + urlencode(self.params(**overrides))


@dataclass(frozen=True)
class ListFilters(QueryFilters):
    state: str = ""
    tool: str = ""
    q: str = ""
    sort: str = DEFAULT_SORT

    @classmethod
    def from_query(cls, params: QueryDict) -> ListFilters:
        state = params.get("state", "")
        tool = params.get("tool", "")
        sort = params.get("sort", "")
        return cls(
            state=state if state in IntegrationState.values else "",
            tool=tool if tool in dict(tool_choices()) else "",
            q=params.get("q", "").strip()[:MAX_QUERY],
            sort=sort if sort.lstrip("-") in SORTS and sort.count("-") <= 1 else DEFAULT_SORT,
        )

    @property
    def active(self) -> bool:
        return bool(self.state or self.tool or self.q)

    def apply(self, qs: QuerySet) -> QuerySet:
        if self.state:
            qs = qs.filter(state=self.state)
        if self.tool:
            qs = qs.filter(tool=self.tool)
        if self.q:
            qs = qs.filter(
                Q(end_user_organization_name__icontains=self.q)
                | Q(end_user_origin_id=self.q)
                | Q(end_user_origin_id__istartswith=self.q)
            )
        field = SORTS[self.sort.lstrip("-")][0]
        descending = self.sort.startswith("-")
        primary: OrderBy | str
        if field in NULLABLE:
            primary = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
        else:
            # Plain ordering on NOT NULL fields, so PostgreSQL can use the (environment, -created_at) index.
            primary = f"-{field}" if descending else field
        # Ties (and the empty values) newest first; the id makes pages stable.
        tiebreak = ["id"] if field == "created_at" else ["-created_at", "id"]
        return qs.order_by(primary, *tiebreak)

    def sort_columns(self) -> list[dict]:
        """The table's header cells in order; sortable ones link to their sort (toggling the
        direction when already sorted by it)."""
        columns = []
        for key in TABLE_COLUMNS:
            if key not in SORTS:
                columns.append({"label": key, "url": "", "aria_sort": "", "arrow": ""})
                continue
            current = self.sort.lstrip("-") == key
            descending = self.sort.startswith("-")
            # First click sorts ascending; clicking the current column flips it.
            target = (key if descending else f"-{key}") if current else key
            columns.append(
                {
                    "label": SORTS[key][1],
                    "url": self.query(sort=target if target != DEFAULT_SORT else None),
                    "aria_sort": ("descending" if descending else "ascending") if current else "none",
                    "arrow": ("↓" if descending else "↑") if current else "",
                }
            )
        return columns


def tool_options() -> list[tuple[str, str]]:
    return sorted(tool_choices(), key=lambda c: c[1].lower())
