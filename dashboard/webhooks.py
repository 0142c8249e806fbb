"""Webhook endpoints: every member sees them and their deliveries; only owners change them.

A new endpoint's `whsec_` secret is shown once, on the create response itself (no redirect,
not cached), and never again.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.validators import URLValidator
from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import require_POST

from integrations import audit, webhooks
from integrations.lib import shown_once
from integrations.lib.targets import TargetRefused
from integrations.models import Role, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest

DELIVERIES_SHOWN = 50
ATTEMPTS_SHOWN = 20
NEW_SECRET_SLOT = "webhook_secret"  # the signing secret of an endpoint created a moment ago


class HttpUrlField(forms.URLField):
    """http(s) only, with one message for a bad URL (an extra validator would add a second)."""

    default_validators = [URLValidator(schemes=["http", "https"])]


class EndpointForm(forms.Form):
    url = HttpUrlField(label="URL", max_length=500, assume_scheme="https")
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, required=False, widget=forms.CheckboxSelectMultiple
    )


def _ctx(access: EnvAccess, **extra) -> dict:
    return {"access": access, "env": access.environment, "can_manage": access.can(Role.OWNER), **extra}


@login_required
def endpoints(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env)
    qs = WebhookEndpoint.objects.filter(environment=access.environment).annotate(delivery_count=Count("deliveries"))
    return render(request, "dashboard/webhooks.html", _ctx(access, endpoints=qs))


@login_required
def new_endpoint(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = webhooks.create_endpoint(
                access.environment.pk,
                form.cleaned_data["url"],
                audit.Actor(user=request.user),
                description=form.cleaned_data["description"],
                event_types=form.cleaned_data["event_types"],
            )
        except TargetRefused as exc:
            form.add_error("url", f"Relink cannot send webhooks there: {exc}.")
            return render(request, "dashboard/webhook_new.html", _ctx(access, form=form, events=WebhookEvent.choices))
        # Post/Redirect/Get: the endpoint's page shows the secret once (integrations/lib/shown_once.py).
        shown_once.keep(request.session, NEW_SECRET_SLOT, endpoint.pk, endpoint.pk, secret)
        return redirect("dashboard:webhook", env=access.environment.slug, endpoint_id=endpoint.pk)
    return render(request, "dashboard/webhook_new.html", _ctx(access, form=form, events=WebhookEvent.choices))


def _with_attempts(deliveries: QuerySet) -> QuerySet:
    """Deliveries with their attempts, newest first, in one extra query."""
    return deliveries.prefetch_related(
        Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("-attempted_at"))
    )


def _deliveries(endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    return list(_with_attempts(endpoint.deliveries.order_by("-created_at", "-pk"))[:DELIVERIES_SHOWN])


@login_required
def endpoint(request: DashboardRequest, env: str, endpoint_id: str) -> HttpResponse:
    access = get_env_access(request, env)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    just_created = shown_once.take(request.session, NEW_SECRET_SLOT, obj.pk)  # only on this endpoint's page
    if just_created is not None:
        response = render(request, "dashboard/webhook_created.html", _ctx(access, endpoint=obj, secret=just_created[1]))
        add_never_cache_headers(response)  # the secret is in this response only
        return response
    ctx = _ctx(access, endpoint=obj, deliveries=_deliveries(obj), deliveries_shown=DELIVERIES_SHOWN)
    return render(request, "dashboard/webhook.html", ctx)


@login_required
@require_POST
def toggle_endpoint(request: DashboardRequest, env: str, endpoint_id: str) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    want = request.POST.get("enabled") == "1"
    webhooks.set_endpoint_enabled(obj, want, audit.Actor(user=request.user))
    messages.success(request, f"Endpoint {'enabled' if want else 'disabled'}.")
    return redirect("dashboard:webhook", env=env, endpoint_id=obj.pk)


@login_required
def delete_endpoint(request: DashboardRequest, env: str, endpoint_id: str) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    if request.method != "POST":
        return render(request, "dashboard/webhook_delete.html", _ctx(access, endpoint=obj))
    url = obj.url
    webhooks.delete_endpoint(obj, audit.Actor(user=request.user))
    messages.success(request, f"Endpoint {url} deleted with its deliveries.")
    return redirect("dashboard:webhooks", env=env)


@login_required
@require_POST
def test_endpoint(request: DashboardRequest, env: str, endpoint_id: str) -> HttpResponse:
    """One delivery to this endpoint only, through the normal signed path."""
    access = get_env_access(request, env, Role.OWNER)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    if not obj.enabled:
        messages.error(request, "The endpoint is disabled: enable it to send a test event.")
        return redirect("dashboard:webhook", env=env, endpoint_id=obj.pk)
    webhooks.send_test_event(obj)
    messages.success(request, "Test event queued; refresh to see the attempt.")
    return redirect("dashboard:webhook", env=env, endpoint_id=obj.pk)


@login_required
@require_POST
def replay_delivery(request: DashboardRequest, env: str, endpoint_id: str, delivery_id: str) -> HttpResponse:
    access = get_env_access(request, env, Role.OWNER)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    delivery = get_object_or_404(WebhookDelivery, endpoint=obj, pk=delivery_id)
    webhooks.replay(delivery)
    if request.htmx:
        delivery = _deliveries_by_pk(obj, delivery.pk)
        response = render(request, "dashboard/webhook.html#delivery", _ctx(access, endpoint=obj, delivery=delivery))
        patch_vary_headers(response, ["HX-Request"])
        return response
    messages.success(request, f"Delivery {delivery.event_id} queued again with the same event id.")
    return redirect("dashboard:webhook", env=env, endpoint_id=obj.pk)


def _deliveries_by_pk(endpoint: WebhookEndpoint, pk: int) -> WebhookDelivery:
    return _with_attempts(endpoint.deliveries.all()).get(pk=pk)
