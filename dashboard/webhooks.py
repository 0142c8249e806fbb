"""Webhook endpoints: every member sees them and their deliveries; only owners change them
(create, edit, pause, delete, test, replay, rotate the signing secret).

A `whsec_` signing secret — a new endpoint's, or the one a rotation made — is shown once, on the
endpoint's page after the redirect (integrations/lib/shown_once.py; not cached), and never again.
The deliveries region of that page refreshes itself (htmx, every 2 s) while a delivery shown is
due to be sent soon, e.g. right after "Send test event"; without JavaScript a reload shows it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.validators import URLValidator
from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from integrations import audit, webhooks
from integrations.lib import shown_once
from integrations.lib.targets import TargetRefused
from integrations.models import (
    DeliveryStatus,
    Role,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest, redirect_after_post, render_region, wants_partial

DELIVERIES_SHOWN = 50
ATTEMPTS_SHOWN = 20
NEW_SECRET_SLOT = "webhook_secret"  # the signing secret of an endpoint created a moment ago
ROTATED_SECRET_SLOT = "webhook_rotated_secret"  # the new signing secret of an endpoint rotated a moment ago
PAGE = "dashboard/webhook.html"
DELIVERIES_REGION = "deliveries"
# The deliveries region polls while a delivery shown is pending and due within this: a delivery
# being sent is claimed for CLAIM_LEASE, and the first retry comes 5 s after a failed attempt. One
# overdue by more than LOST_DELIVERY_AFTER waits for the sweep, so an open tab stops polling.
REFRESH_WHILE_DUE_WITHIN = webhooks.CLAIM_LEASE + timedelta(seconds=5)
DELIVERIES_CHANGED = "deliveriesChanged"  # client event: a replay asks the region to refresh
# Seconds the replaced secret keeps signing after a rotation; the default gives receivers a day.
OVERLAPS = [
    (0, "None — the current secret stops signing at once"),
    (3600, "1 hour"),
    (86400, "24 hours"),
    (604800, "7 days"),
]
DEFAULT_OVERLAP = 86400


class HttpUrlField(forms.URLField):
    """http(s) only, with one message for a bad URL (an extra validator would add a second)."""

    default_validators = [URLValidator(schemes=["http", "https"])]


class EndpointForm(forms.Form):
    url = HttpUrlField(label="URL", max_length=500, assume_scheme="https")
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, required=False, widget=forms.CheckboxSelectMultiple
    )


class RotateSecretForm(forms.Form):
    overlap = forms.TypedChoiceField(choices=OVERLAPS, coerce=int, initial=DEFAULT_OVERLAP)
    # Sent by the confirmation page and by htmx after hx-confirm; a form posted without
    # JavaScript lacks it and gets the confirmation page first.
    confirmed = forms.BooleanField(required=False)


def _ctx(access: EnvAccess, **extra) -> dict:
    return {"access": access, "env": access.environment, "can_manage": access.can(Role.OWNER), **extra}


def _endpoint_url(access: EnvAccess, endpoint: WebhookEndpoint) -> str:
    return reverse("dashboard:webhook", kwargs={"env": access.environment.slug, "endpoint_id": endpoint.pk})


def _refused(form: EndpointForm, exc: TargetRefused) -> None:
    form.add_error("url", f"Relink cannot send webhooks there: {exc}.")


def _form_page(
    request: DashboardRequest, access: EnvAccess, form: EndpointForm, endpoint: WebhookEndpoint | None = None
) -> HttpResponse:
    """The endpoint form, for adding one or (with `endpoint`) editing it; re-shown with what was typed."""
    return render(
        request, "dashboard/webhook_new.html", _ctx(access, form=form, events=WebhookEvent.choices, endpoint=endpoint)
    )


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
            _refused(form, exc)
            return _form_page(request, access, form)
        # Post/Redirect/Get: the endpoint's page shows the secret once (integrations/lib/shown_once.py).
        shown_once.keep(request.session, NEW_SECRET_SLOT, endpoint.pk, endpoint.pk, secret)
        return redirect("dashboard:webhook", env=access.environment.slug, endpoint_id=endpoint.pk)
    return _form_page(request, access, form)


@login_required
def edit_endpoint(request: DashboardRequest, env: str, endpoint_id: str) -> HttpResponse:
    """URL, description and event filter, with the create form's validation and SSRF guard."""
    access = get_env_access(request, env, Role.OWNER)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    if request.method != "POST":
        initial = {"url": obj.url, "description": obj.description, "event_types": obj.event_types}
        return _form_page(request, access, EndpointForm(initial=initial), obj)
    form = EndpointForm(request.POST)
    if not form.is_valid():
        return _form_page(request, access, form, obj)
    try:
        changes = webhooks.update_endpoint(
            obj,
            audit.Actor(user=request.user),
            url=form.cleaned_data["url"],
            description=form.cleaned_data["description"],
            event_types=form.cleaned_data["event_types"],
        )
    except TargetRefused as exc:
        _refused(form, exc)
        return _form_page(request, access, form, obj)
    if changes:
        messages.success(request, "Endpoint saved.")
    else:
        messages.info(request, "Nothing to save: the endpoint was already so.")
    return redirect_after_post(request, _endpoint_url(access, obj))


def _with_attempts(deliveries: QuerySet) -> QuerySet:
    """Deliveries with their attempts, newest first, in one extra query."""
    return deliveries.prefetch_related(
        Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("-attempted_at"))
    )


def _deliveries(endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    return list(_with_attempts(endpoint.deliveries.order_by("-created_at", "-pk"))[:DELIVERIES_SHOWN])


def refreshing(deliveries: Iterable[WebhookDelivery], now: datetime | None = None) -> bool:
    """Whether the deliveries region should poll: some delivery shown is pending and due soon
    (about to be sent, being sent, or retried within seconds), not hours from now."""
    now = now or timezone.now()
    earliest, latest = now - webhooks.LOST_DELIVERY_AFTER, now + REFRESH_WHILE_DUE_WITHIN
    return any(
        d.status == DeliveryStatus.PENDING and d.next_attempt_at is not None and earliest <= d.next_attempt_at <= latest
        for d in deliveries
    )


def _deliveries_ctx(access: EnvAccess, endpoint: WebhookEndpoint) -> dict:
    deliveries = _deliveries(endpoint)
    return _ctx(
        access,
        endpoint=endpoint,
        deliveries=deliveries,
        deliveries_shown=DELIVERIES_SHOWN,
        refreshing=refreshing(deliveries),
    )


@login_required
def endpoint(request: DashboardRequest, env: str, endpoint_id: str) -> HttpResponse:
    """The endpoint's page; for htmx (the deliveries region polling) only that region."""
    access = get_env_access(request, env)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    signs_until = webhooks.previous_secret_signs_until(obj)
    if not wants_partial(request):  # a poll never takes the secret shown once
        # Only on this endpoint's page; after a create and a rotation, only the newest secret counts.
        created = shown_once.take(request.session, NEW_SECRET_SLOT, obj.pk)
        rotated = shown_once.take(request.session, ROTATED_SECRET_SLOT, obj.pk)
        kept = rotated or created
        if kept is not None:
            ctx = _ctx(access, endpoint=obj, secret=kept[1], rotated=rotated is not None, signs_until=signs_until)
            response = render(request, "dashboard/webhook_created.html", ctx)
            add_never_cache_headers(response)  # the secret is in this response only
            return response
    ctx = _deliveries_ctx(access, obj)
    ctx.update(signs_until=signs_until, overlaps=OVERLAPS, default_overlap=DEFAULT_OVERLAP)
    return render_region(request, PAGE, DELIVERIES_REGION, ctx)


@login_required
def rotate_secret(request: DashboardRequest, env: str, endpoint_id: str) -> HttpResponse:
    """A new signing secret, the current one signing too during the chosen overlap; the new one is
    shown once on the endpoint's page after the redirect. GET, or a POST not yet confirmed (the
    endpoint page's form without JavaScript): the confirmation page."""
    access = get_env_access(request, env, Role.OWNER)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    form = RotateSecretForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and form.cleaned_data["confirmed"]:
        overlap = timedelta(seconds=form.cleaned_data["overlap"])
        secret = webhooks.rotate_secret(obj, audit.Actor(user=request.user), overlap)
        shown_once.keep(request.session, ROTATED_SECRET_SLOT, obj.pk, obj.pk, secret)
        return redirect_after_post(request, _endpoint_url(access, obj))
    chosen = form["overlap"].value() if form.is_bound and "overlap" not in form.errors else DEFAULT_OVERLAP
    ctx = _ctx(
        access,
        endpoint=obj,
        form=form,
        overlaps=OVERLAPS,
        chosen=str(chosen),
        signs_until=webhooks.previous_secret_signs_until(obj),
    )
    return render(request, "dashboard/webhook_rotate.html", ctx, status=400 if form.errors else 200)


@login_required
@require_POST
def end_secret_overlap(request: DashboardRequest, env: str, endpoint_id: str) -> HttpResponse:
    """Stop signing with the secret a rotation replaced, before its overlap window ends."""
    access = get_env_access(request, env, Role.OWNER)
    obj = access.get_or_404(WebhookEndpoint, pk=endpoint_id)
    if webhooks.end_secret_overlap(obj, audit.Actor(user=request.user)):
        messages.success(request, "The previous secret no longer signs deliveries; only the current one does.")
    else:
        messages.info(request, "The previous secret had already stopped signing.")
    return redirect_after_post(request, _endpoint_url(access, obj))


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
    messages.success(request, "Test event queued: its delivery is at the top of the list below.")
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
        # After the row is swapped in, the region refreshes itself until the replay is sent.
        return trigger_client_event(response, DELIVERIES_CHANGED, after="settle")
    messages.success(request, f"Delivery {delivery.event_id} queued again with the same event id.")
    return redirect("dashboard:webhook", env=env, endpoint_id=obj.pk)


def _deliveries_by_pk(endpoint: WebhookEndpoint, pk: int) -> WebhookDelivery:
    return _with_attempts(endpoint.deliveries.all()).get(pk=pk)
