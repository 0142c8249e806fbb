"""Repair where the problem is: "Reconnect" on a broken integration's status card and in the
lists, each broken integration's reconnection-link status, and reconnection links for several
integrations at once with the results as CSV.

Every raw link is shown once, after a redirect, from the encrypted session slot of
integrations/lib/shown_once.py; nothing here writes a row except through `connect_flow.links`.
"""

from __future__ import annotations

import csv
import io
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from connect_flow.links import LANGUAGE_CODES, LinkInputError, create_relink_link, live_reconnect_link
from connect_flow.models import LinkType
from integrations.lib import shown_once
from integrations.models import Integration, Role

from .access import get_env_access
from .formats import local_minute
from .htmx import DashboardRequest, redirect_after_post
from .integration import get_integration
from .relink import NEW_LINK_SLOT

BULK_SLOT = "bulk_relink"  # the results page, shown once
BULK_CSV_SLOT = "bulk_relink_csv"  # then the same links, downloadable once as CSV
BULK_LIMIT = 200


@never_cache
@login_required
@require_POST
def reconnect(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """One click: a magic link in the language of the integration's last link, keeping its scope
    config, shown once in the Relink section. If a link is still valid, it is pointed out
    instead (its address was shown only when it was made) unless `new=1` asks for another."""
    access = get_env_access(request, env, Role.EDITOR)
    obj = get_integration(access, integration_id)
    section = reverse("dashboard:relink", kwargs={"env": env, "integration_id": obj.pk})
    live = live_reconnect_link(obj)
    if live is not None and request.POST.get("new") != "1":
        messages.info(
            request,
            f"A reconnection link made {local_minute(live.created_at)} is still valid until "
            f"{local_minute(live.expires_at)} ({'opened' if live.opened_at else 'not opened yet'}). Its address "
            "was shown only when it was made; if it was lost, create a new one below.",
        )
        return redirect_after_post(request, section + "#relink-links")
    last = obj.links.order_by("-created_at").only("language").first()
    try:
        created = create_relink_link(
            obj,
            link_type=LinkType.MAGIC_LINK,
            language=last.language if last else "en",
            user=request.user,
        )
    except LinkInputError as exc:  # defaults are valid; kept for a clear message if that changes
        messages.error(request, f"No link created: {exc}.")
        return redirect_after_post(request, section + "#relink")
    shown_once.keep(request.session, NEW_LINK_SLOT, obj.pk, created.link.pk, created.token)
    return redirect_after_post(request, section + "#relink")


@never_cache
@login_required
def bulk(request: DashboardRequest, env: str) -> HttpResponse:
    """POST (editor+): reconnection links for the selected integrations, then a redirect.
    GET: the links just created, once; afterwards the list with a message."""
    if request.method == "POST":
        return _bulk_create(request, env)
    access = get_env_access(request, env, Role.EDITOR)
    pending = shown_once.take(request.session, BULK_SLOT, access.environment.pk)
    if pending is None:
        messages.info(request, "Links are shown only once, right after they are created.")
        return redirect_after_post(request, reverse("dashboard:integrations", kwargs={"env": env}))
    count, raw = pending
    rows = json.loads(raw)
    shown_once.keep(request.session, BULK_CSV_SLOT, access.environment.pk, count, raw)
    response = render(
        request,
        "dashboard/relink_bulk.html",
        {"access": access, "env": access.environment, "rows": rows, "errors": [r for r in rows if r.get("error")]},
    )
    add_never_cache_headers(response)
    return response


def _bulk_create(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env, Role.EDITOR)
    list_url = reverse("dashboard:integrations", kwargs={"env": env}) + "?state=INVALID"
    ids = list(dict.fromkeys(request.POST.getlist("integration")))
    link_type = request.POST.get("link_type", LinkType.MAGIC_LINK)
    language = request.POST.get("language", "en")
    if not ids:
        messages.error(request, "Select at least one integration to create links for.")
        return redirect_after_post(request, list_url)
    if len(ids) > BULK_LIMIT:
        messages.error(request, f"Select at most {BULK_LIMIT} integrations at a time.")
        return redirect_after_post(request, list_url)
    if link_type not in LinkType.values or language not in LANGUAGE_CODES:
        messages.error(request, "Choose a link type and a language from the lists.")
        return redirect_after_post(request, list_url)
    found = Integration.objects.filter(environment=access.environment, pk__in=ids).select_related("environment")
    integrations = {i.pk: i for i in found.defer("credentials_encrypted")}
    rows = []
    for pk in ids:
        obj = integrations.get(pk)
        if obj is None:  # another environment's id reads as unknown
            continue
        row = {"organization": obj.end_user_organization_name, "email": obj.end_user_email, "id": obj.pk}
        try:
            created = create_relink_link(obj, link_type=link_type, language=language, user=request.user)
        except LinkInputError as exc:
            row.update(link="", expires_at="", error=str(exc))
        else:
            row.update(link=created.url, expires_at=created.link.expires_at.isoformat(), error="")
        rows.append(row)
    if not rows:
        messages.error(request, "None of the selected integrations belongs to this environment.")
        return redirect_after_post(request, list_url)
    shown_once.keep(request.session, BULK_SLOT, access.environment.pk, len(rows), json.dumps(rows))
    return redirect_after_post(request, reverse("dashboard:relink_bulk", kwargs={"env": env}))


@never_cache
@login_required
@require_GET
def bulk_csv(request: DashboardRequest, env: str) -> HttpResponse:
    """The links of the results page as CSV (organization, email, link, expires_at), once."""
    access = get_env_access(request, env, Role.EDITOR)
    pending = shown_once.take(request.session, BULK_CSV_SLOT, access.environment.pk)
    if pending is None:
        messages.info(request, "The CSV can be downloaded once, right after the links are created.")
        return redirect_after_post(request, reverse("dashboard:integrations", kwargs={"env": env}))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["organization", "email", "integration_id", "link", "expires_at", "error"])
    for row in json.loads(pending[1]):
        writer.writerow([_cell(row[k]) for k in ("organization", "email", "id", "link", "expires_at", "error")])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="relink-links-{access.environment.slug}-{stamp}.csv"'
    return response


def _cell(value: str) -> str:
    """A value a spreadsheet shows as text, never runs as a formula (CSV injection)."""
    value = str(value or "")
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
