"""The "Relink integration" section of the integration page.

A scope selector that previews the permission changes a reconnection would ask for, a form that
creates a reconnection link (optionally allowing credentials of another upstream account than the
one connected, an operator's audited choice), and the list of the integration's links with a
revoke button.

Every view answers htmx with a named partial of `dashboard/integration.html` and a plain request
with the whole integration page, so the section works without JavaScript. The link lifecycle
itself (validation, token, expiry, audit) is `connect_flow.links`; nothing here writes a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from connect_flow.links import CreatedLink, LinkInputError, create_relink_link, revoke
from connect_flow.models import LINK_VALIDITY, LIVE_STATUSES, ConnectionLink, LinkType
from integrations.lib import shown_once
from integrations.models import Environment, Integration, Role, ScopeConfig
from integrations.scopes import ScopeDiff, effective_scope_config, find_scope_config, reads_a_model, scope_diff

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest, render_region
from .integration import get_integration, integration_page_context

TEMPLATE = "dashboard/integration.html"
LINKS_SHOWN = 50
# The event a link mutation sends; the links table listens with `linksChanged from:body`.
LINKS_CHANGED = "linksChanged"
NEW_LINK_SLOT = "relink_link"  # a link created without JavaScript, shown once after the redirect


def validity_label(link_type: str) -> str:
    """ "1 hour", "1 year": how long a new link of `link_type` stays valid."""
    validity: timedelta = LINK_VALIDITY[link_type]
    if validity.days and validity.days % 365 == 0:
        n, unit = validity.days // 365, "year"
    elif validity.days:
        n, unit = validity.days, "day"
    else:
        n, unit = validity.seconds // 3600, "hour"
    return f"{n} {unit}{'' if n == 1 else 's'}"


# --- What the section shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRow:
    link: ConnectionLink
    status: str
    revocable: bool


class RelinkSection:
    """The section's state for one request. Lists are queried only when a rendered partial uses
    them, so the diff fragment does not load the links and the links fragment no scope configs."""

    link_types = LinkType.choices
    languages = settings.LANGUAGES  # native names: Deutsch, Français, …

    def __init__(
        self,
        environment: Environment,
        integration: Integration,
        params: Mapping[str, str],
        *,
        created: CreatedLink | None = None,
        error: str = "",
    ):
        self.environment = environment
        self.integration = integration
        self.scope_config_id = params.get("scope_config", "")
        self.link_type = params.get("link_type", LinkType.EMBEDDED)
        self.language = params.get("language", "en")
        # Off by default, and again once a link was created: each link is an explicit choice.
        self.allow_account_change = allows_account_change(params) and created is None
        self.created = created
        self.error = error

    @cached_property
    def scope_configs(self) -> list[ScopeConfig]:
        """The choices: the environment's scope configs of the integration's category that enable a
        model (one that enables none would make it sync nothing; `create_relink_link` refuses it)."""
        configs = ScopeConfig.objects.filter(environment=self.environment, category=self.integration.category)
        return [sc for sc in configs if reads_a_model(sc)]

    @cached_property
    def target(self) -> ScopeConfig | None:
        return next((sc for sc in self.scope_configs if sc.pk == self.scope_config_id), None)

    @property
    def diff_error(self) -> str:
        if self.scope_config_id and self.target is None:
            return f"Choose one of this environment's {self.integration.category} scope configs."
        return ""

    @cached_property
    def diff(self) -> ScopeDiff | None:
        """None for "keep current"."""
        if self.target is None:
            return None
        # Compared with what it reads now: its own scope config, else its category's default.
        return scope_diff(effective_scope_config(self.integration), self.target, self.integration.provider)

    @property
    def validity(self) -> str:
        return validity_label(self.created.link.link_type) if self.created else ""

    @cached_property
    def _link_rows(self) -> list[LinkRow]:
        links = self.integration.links.select_related("scope_config", "created_by_user", "created_by_api_key").order_by(
            "-created_at"
        )[: LINKS_SHOWN + 1]
        now = timezone.now()
        rows = []
        for link in links:
            status = link.status_at(now)
            rows.append(LinkRow(link, status, status in LIVE_STATUSES))
        return rows

    @property
    def links(self) -> list[LinkRow]:
        return self._link_rows[:LINKS_SHOWN]

    @property
    def more_links(self) -> bool:
        return len(self._link_rows) > LINKS_SHOWN

    @property
    def links_shown(self) -> int:
        return LINKS_SHOWN


def allows_account_change(params: Mapping[str, str]) -> bool:
    """The "Allow a different company account" checkbox: off unless ticked."""
    return params.get("allow_account_change") == "1"


def _render(
    request: DashboardRequest, access: EnvAccess, integration: Integration, partial: str, section: RelinkSection
) -> HttpResponse:
    """`partial` of the integration page for htmx, else the whole page with the section filled in."""
    ctx = {
        "access": access,
        "env": access.environment,
        "integration": integration,
        "can_edit": access.can(Role.EDITOR),
        "relink": section,
    }
    return render_region(
        request, TEMPLATE, partial, ctx, page_ctx=lambda: integration_page_context(access, integration, relink=section)
    )


# --- Views --------------------------------------------------------------------------------------


@login_required
@require_GET
def section(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """The section as an htmx fragment, or (plain) the whole page with it."""
    access = get_env_access(request, env)
    obj = get_integration(access, integration_id)
    created = _just_created(request, obj)
    params = {"link_type": created.link.link_type, "language": created.link.language} if created else request.GET
    response = _render(request, access, obj, "relink", RelinkSection(access.environment, obj, params, created=created))
    if created:
        add_never_cache_headers(response)  # the raw link is in this response only
    return response


def _just_created(request: DashboardRequest, integration: Integration) -> CreatedLink | None:
    """The link created a moment ago for `integration` (no-JS Post/Redirect/Get), shown once."""
    pending = shown_once.take(request.session, NEW_LINK_SLOT, integration.pk)
    if pending is None:
        return None
    link_id, token = pending
    link = ConnectionLink.objects.filter(pk=link_id, integration=integration).select_related("scope_config").first()
    return CreatedLink(link, token) if link else None


@login_required
@require_GET
def scope_diff_view(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """The permission changes `?scope_config=` implies: the scope selector's htmx target, and
    the "Preview changes" submit without JavaScript."""
    access = get_env_access(request, env)
    obj = get_integration(access, integration_id)
    return _render(request, access, obj, "scope-diff", RelinkSection(access.environment, obj, request.GET))


@login_required
@require_GET
def links(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """The integration's links table, refreshed by htmx whenever `linksChanged` fires."""
    access = get_env_access(request, env)
    obj = get_integration(access, integration_id)
    return _render(request, access, obj, "relink-links", RelinkSection(access.environment, obj, {}))


@never_cache  # the response holds the raw link, which exists nowhere else: no cache may keep it
@login_required
@require_POST
def create_link(request: DashboardRequest, env: str, integration_id: str) -> HttpResponse:
    """Create a reconnection link and show it, once.

    htmx swaps the new link into the page (a refresh re-GETs the page, it does not repost).
    Without JavaScript: Post/Redirect/Get — the token waits in the session, encrypted, for the
    one GET of the section that shows it (integrations/lib/shown_once.py).
    """
    access = get_env_access(request, env, Role.EDITOR)
    obj = get_integration(access, integration_id)
    created, error = None, ""
    raw_scope = request.POST.get("scope_config", "")
    # Another environment's id reads as unknown; create_relink_link checks the category.
    scope_config = find_scope_config(access.environment.pk, raw_scope)
    if raw_scope and scope_config is None:
        error = f"No link created: choose one of this environment's {obj.category} scope configs."
    else:
        try:
            created = create_relink_link(
                obj,
                link_type=request.POST.get("link_type", LinkType.EMBEDDED),
                language=request.POST.get("language", "en"),
                scope_config=scope_config,
                user=request.user,
                allow_account_change=allows_account_change(request.POST),
            )
        except LinkInputError as exc:
            error = f"No link created: {exc}."
    if created and not request.htmx:
        shown_once.keep(request.session, NEW_LINK_SLOT, obj.pk, created.link.pk, created.token)
        section_url = reverse("dashboard:relink", kwargs={"env": access.environment.slug, "integration_id": obj.pk})
        return redirect(f"{section_url}#relink")
    section = RelinkSection(access.environment, obj, request.POST, created=created, error=error)
    response = _render(request, access, obj, "relink-create", section)
    if created:
        trigger_client_event(response, LINKS_CHANGED)
    return response


@login_required
@require_POST
def revoke_link(request: DashboardRequest, env: str, integration_id: str, link_id: str) -> HttpResponse:
    access = get_env_access(request, env, Role.EDITOR)
    obj = get_integration(access, integration_id)
    link = get_object_or_404(ConnectionLink, pk=link_id, integration=obj)
    revoked = revoke(link, user=request.user)  # audits; False if it was no longer usable
    if request.htmx:
        # The links table refreshes itself on the event; if the link was just created and its
        # address is still on the page, that box is replaced (out of band) so no dead URL stays.
        gone = format_html(
            '<div id="relink-result-{}" class="relink-result" hx-swap-oob="true" role="status">'
            "<p>This link was revoked: it can no longer be used.</p></div>",
            link.pk,
        )
        return trigger_client_event(HttpResponse(gone), LINKS_CHANGED)
    if revoked:
        messages.success(request, "Link revoked: it can no longer be used.")
    else:
        link.refresh_from_db()
        messages.info(request, f"That link was already {link.status.lower()}.")
    return redirect(reverse("dashboard:relink", kwargs={"env": env, "integration_id": obj.pk}) + "#relink-links")
