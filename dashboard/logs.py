"""Request logs: every /v1 request and connect-flow attempt of an environment (bodies are redacted
when written). The API's error answers link here through `log_url`."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from .paginator import CachedCountPaginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from integrations.models import Integration, RequestLog

from .access import get_env_access

PAGE_SIZE = 50


@login_required
def logs(request: HttpRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env)
    qs = (
        RequestLog.objects.filter(environment=access.environment)
        .select_related("api_key")
        .defer("request_body", "response_body")
        .order_by("-created_at", "id")
    )
    errors_only = request.GET.get("errors") == "1"
    if errors_only:
        qs = qs.filter(status_code__gte=400)
    page = CachedCountPaginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    ctx = {"access": access, "env": access.environment, "page": page, "errors_only": errors_only}
    return render(request, "dashboard/logs.html", ctx)


def _pretty(value) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@login_required
def log(request: HttpRequest, env: str, log_id: str) -> HttpResponse:
    access = get_env_access(request, env)
    entry = get_object_or_404(
        RequestLog.objects.select_related("api_key"), environment=access.environment, pk=log_id
    )
    integration_exists = bool(entry.integration_id) and Integration.objects.filter(
        environment=access.environment, pk=entry.integration_id
    ).exists()
    ctx = {
        "access": access,
        "env": access.environment,
        "entry": entry,
        "integration_exists": integration_exists,
        "request_body": _pretty(entry.request_body),
        "response_body": _pretty(entry.response_body),
    }
    return render(request, "dashboard/log.html", ctx)
