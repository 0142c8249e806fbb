"""Request logs: every /v1 request and connect-flow attempt of an environment (bodies are redacted
when written), filterable by source, status, integration and path or error code. The API's error
answers and `connection-flow-failed` webhooks link to one entry through `log_url` (`log_path`); an
integration's page links to its entries."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse

from integrations.models import Integration, RequestLog

from .access import get_env_access
from .htmx import DashboardRequest
from .listing import MAX_QUERY, QueryFilters, render_list
from .paginator import CachedCountPaginator

PAGE_SIZE = 50

# ?status= value → (label, condition).
STATUS_FILTERS = {
    "ok": ("Succeeded (below 400)", Q(status_code__lt=400)),
    "errors": ("Errors (4xx and 5xx)", Q(status_code__gte=400)),
    "4xx": ("Rejected requests (4xx)", Q(status_code__gte=400, status_code__lt=500)),
    "5xx": ("Server errors (5xx)", Q(status_code__gte=500)),
}


@dataclass(frozen=True)
class LogFilters(QueryFilters):
    source: str = ""
    status: str = ""
    integration: str = ""
    q: str = ""

    @classmethod
    def from_query(cls, params: QueryDict) -> LogFilters:
        source = params.get("source", "")
        status = params.get("status", "") or ("errors" if params.get("errors") == "1" else "")  # older links
        return cls(
            source=source if source in RequestLog.Source.values else "",
            status=status if status in STATUS_FILTERS else "",
            integration=params.get("integration", "").strip()[:80],
            q=params.get("q", "").strip()[:MAX_QUERY],
        )

    @property
    def active(self) -> bool:
        return bool(self.source or self.status or self.integration or self.q)

    def apply(self, qs: QuerySet) -> QuerySet:
        if self.source:
            qs = qs.filter(source=self.source)
        if self.status:
            qs = qs.filter(STATUS_FILTERS[self.status][1])
        if self.integration:
            qs = qs.filter(integration_id=self.integration)
        if self.q:
            qs = qs.filter(Q(path__icontains=self.q) | Q(error_code__icontains=self.q))
        return qs


@login_required
def logs(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env)
    filters = LogFilters.from_query(request.GET)
    qs = filters.apply(
        RequestLog.objects.filter(environment=access.environment)
        .select_related("api_key")
        .defer("request_body", "response_body")
        .order_by("-created_at", "id")
    )
    page = CachedCountPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    ctx = {
        "access": access,
        "env": access.environment,
        "page": page,
        "filters": filters,
        "sources": RequestLog.Source.choices,
        "statuses": [(value, label) for value, (label, _) in STATUS_FILTERS.items()],
    }
    return render_list(request, "dashboard/logs.html", ctx)


def _pretty(value) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def log_path(environment_slug: str, log_id: str) -> str:
    """One entry's page; registered with the domain for the links it sends (a webhook's `log_url`)."""
    return reverse("dashboard:log", kwargs={"env": environment_slug, "log_id": log_id})


@login_required
def log(request: DashboardRequest, env: str, log_id: str) -> HttpResponse:
    access = get_env_access(request, env)
    entry = access.get_or_404(RequestLog.objects.select_related("api_key"), pk=log_id)
    integration_exists = (
        bool(entry.integration_id)
        and Integration.objects.filter(environment=access.environment, pk=entry.integration_id).exists()
    )
    ctx = {
        "access": access,
        "env": access.environment,
        "entry": entry,
        "integration_exists": integration_exists,
        "request_body": _pretty(entry.request_body),
        "response_body": _pretty(entry.response_body),
    }
    return render(request, "dashboard/log.html", ctx)
