"""The fake HR system: an admin page per company (API keys) and a small JSON API.

The admin pages need a signed-in Relink user; the JSON API authenticates with a company's
API key as a bearer token and answers 401 for an unknown or revoked key, like a real HR system.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from .models import ALL_PERMISSIONS, SandboxApiKey, SandboxCompany


@login_required
def companies(request: HttpRequest) -> HttpResponse:
    rows = SandboxCompany.objects.annotate(
        employee_count=Count("employees", distinct=True),
        active_key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
    ).order_by("name")
    return render(request, "sandbox/companies.html", {"companies": rows})


def _pop_new_key(request: HttpRequest, slug: str) -> str | None:
    """The key created a moment ago for this company, shown once; never on another company's page."""
    pending = request.session.get("sandbox_new_key")
    if not pending or pending.get("company") != slug:
        return None
    del request.session["sandbox_new_key"]
    return pending["key"]


@never_cache
@login_required
def company(request: HttpRequest, slug: str) -> HttpResponse:
    found = get_object_or_404(SandboxCompany, slug=slug)
    ctx = {
        "company": found,
        "keys": found.api_keys.all(),
        "employees": found.employees.all(),
        "all_permissions": ALL_PERMISSIONS,
        # A key created a moment ago is shown once, straight after the redirect.
        "new_key": _pop_new_key(request, found.slug),
    }
    return render(request, "sandbox/company.html", ctx)


@login_required
@require_POST
def create_key(request: HttpRequest, slug: str) -> HttpResponse:
    found = get_object_or_404(SandboxCompany, slug=slug)
    permissions = [p for p in request.POST.getlist("permissions") if p in ALL_PERMISSIONS]
    if not permissions:
        messages.error(request, "Choose at least one permission for the new key.")
        return redirect("sandbox:company", slug=found.slug)
    _, raw = found.create_key(label=request.POST.get("label", "")[:100], permissions=permissions)
    request.session["sandbox_new_key"] = {"company": found.slug, "key": raw}
    return redirect("sandbox:company", slug=found.slug)


@login_required
@require_POST
def revoke_key(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    key = get_object_or_404(SandboxApiKey, pk=key_id, company__slug=slug)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        messages.success(request, f"Key {key.prefix}… revoked.")
    return redirect("sandbox:company", slug=slug)


# --- JSON API ------------------------------------------------------------------------------


def _error(status: int, code: str, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, **extra}}, status=status)


def api_key_required(permission: str | None = None) -> Callable:
    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            auth = request.headers.get("Authorization", "")
            raw = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            key = SandboxApiKey.objects.find_active(raw) if raw else None
            if key is None:
                return _error(401, "INVALID_API_KEY", "The API key is unknown or has been revoked.")
            if permission and permission not in key.permissions:
                return _error(
                    403,
                    "PERMISSION_DENIED",
                    f"This API key lacks the permission {permission}.",
                    required_permission=permission,
                )
            return view(request, key, *args, **kwargs)

        return wrapper

    return decorator


@require_GET
@api_key_required()
def api_me(request: HttpRequest, key: SandboxApiKey) -> JsonResponse:
    return JsonResponse({"data": {"company": key.company.name, "permissions": key.permissions}})


@require_GET
@api_key_required("employees:read")
def api_employees(request: HttpRequest, key: SandboxApiKey) -> JsonResponse:
    with_salary = "compensation:read" in key.permissions
    data = []
    for e in key.company.employees.all():
        row = {
            "id": str(e.pk),
            "first_name": e.first_name,
            "last_name": e.last_name,
            "email": e.email,
            "department": e.department,
        }
        if with_salary:
            row["salary"] = e.salary
        data.append(row)
    return JsonResponse({"data": data})


@require_GET
@api_key_required("absences:read")
def api_absences(request: HttpRequest, key: SandboxApiKey) -> JsonResponse:
    # The sandbox keeps no absences yet; the endpoint exists so permission checks are real.
    return JsonResponse({"data": []})
