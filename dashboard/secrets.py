"""The Secrets page: an environment's API keys. Owner-only.

A new key's raw value is shown in the response that creates it and never again: only its hash
and a short prefix are stored.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from integrations import audit
from integrations.lib import shown_once
from integrations.models import ApiKey, Role

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest, redirect_after_post

NEW_KEY_SLOT = "api_key"  # the key created a moment ago, shown once on the list

TEMPLATE = "dashboard/api_keys.html"


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True, help_text="What uses the key, e.g. “Production backend”.")


def _render(
    request: DashboardRequest,
    access: EnvAccess,
    form: ApiKeyForm,
    *,
    created=None,
    raw_key: str = "",
    status: int = 200,
) -> HttpResponse:
    newest_first = (
        ApiKey.objects.filter(environment=access.environment)
        .select_related("created_by")
        .defer("key_hash")
        .order_by("-created_at", "-pk")
    )
    # Active keys first, newest first within each group.
    keys = sorted(newest_first, key=lambda k: k.revoked_at is not None)
    ctx = {
        "access": access,
        "env": access.environment,
        "keys": keys,
        "form": form,
        "created": created,
        "raw_key": raw_key,
    }
    return render(request, TEMPLATE, ctx, status=status)


def _audit(request: DashboardRequest, access: EnvAccess, action: str, key: ApiKey) -> None:
    audit.record(
        access.environment.pk,
        action,
        audit.Actor(user=request.user),
        api_key_id=key.pk,
        name=key.name,
        prefix=key.prefix,
    )


@login_required
def api_keys(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    just_created = shown_once.take(request.session, NEW_KEY_SLOT, access.environment.pk)
    if just_created is None:
        return _render(request, access, ApiKeyForm())
    key_id, raw = just_created
    created = ApiKey.objects.filter(environment=access.environment, pk=key_id).defer("key_hash").first()
    response = _render(request, access, ApiKeyForm(), created=created, raw_key=raw if created else "")
    add_never_cache_headers(response)  # the raw key is in this response only: no cache may keep it
    return response


@login_required
@require_POST
def create_api_key(request: DashboardRequest, env: str) -> HttpResponse:
    """Create a key, then redirect to the list, which shows it once (integrations/lib/shown_once.py):
    a refresh or Back creates no second key."""
    access = get_env_access(request, env, Role.OWNER)
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _render(request, access, form)
    with transaction.atomic():
        key, raw = ApiKey.create(access.environment, form.cleaned_data["name"], created_by=request.user)
        _audit(request, access, "api_key.created", key)
    shown_once.keep(request.session, NEW_KEY_SLOT, access.environment.pk, key.pk, raw)
    return redirect("dashboard:api_keys", env=access.environment.slug)


@login_required
@require_POST
def revoke_api_key(request: DashboardRequest, env: str, key_id: int) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    with transaction.atomic():
        key = access.get_or_404(ApiKey.objects.select_for_update().defer("key_hash"), pk=key_id)
        if key.revoked_at is not None:
            messages.info(request, f"“{key.name}” was already revoked.")
        else:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            _audit(request, access, "api_key.revoked", key)
            messages.success(request, f"“{key.name}” revoked: requests with it are now refused.")
    # hx-post (for its hx-confirm): a full navigation, so the message shows.
    return redirect_after_post(request, reverse("dashboard:api_keys", kwargs={"env": access.environment.slug}))
