"""Connect a new customer: a connection link created from the dashboard, and the list of the
environment's connection links with their status until each is completed.

The link lifecycle (validation, token, expiry, audit) is `connect_flow.links`; this module only
turns the form into one `create_connect_link` call. Post/Redirect/Get: the raw link waits in the
session, encrypted, for the one GET of the page that shows it (integrations/lib/shown_once.py).
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from connect_flow.links import CreatedLink, LinkInputError, create_connect_link, revoke
from connect_flow.models import LIVE_STATUSES, ConnectionLink, LinkKind, LinkType
from integrations.lib import shown_once
from integrations.models import Environment, Role, ScopeConfig
from integrations.providers import Category, providers_of_category
from integrations.scopes import reads_a_model

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest, redirect_after_post
from .relink import validity_label

TEMPLATE = "dashboard/connect.html"
NEW_LINK_SLOT = "connect_link"
LINKS_SHOWN = 50
PICKER = ""  # the tool choice that lets the customer pick their tool on the page


def embed_origins_warning(environment: Environment, link_type: str) -> str:
    """Why an embedded link would show a blank frame in the customer's app, or ""."""
    if link_type == LinkType.EMBEDDED and not environment.allowed_origins:
        return (
            "This environment allows no embed origins, so an embedded link's page refuses to be "
            "framed and your app shows a blank frame. Add your app's origin in the environment "
            "settings, or send a magic link."
        )
    return ""


class ConnectForm(forms.Form):
    end_user_organization_name = forms.CharField(label="Organization", max_length=200)
    end_user_email = forms.EmailField(label="Customer's email", help_text="Who connects; shown on the link's page.")
    end_user_origin_id = forms.CharField(
        label="Origin id", max_length=200, required=False, help_text="Your own id for this customer (optional)."
    )
    tool = forms.ChoiceField(label="Tool", required=False)
    scope_config = forms.ChoiceField(label="Scope config", required=False)
    language = forms.ChoiceField(label="Language of the page", choices=settings.LANGUAGES, initial="en")
    link_type = forms.ChoiceField(label="Link type", choices=LinkType.choices, initial=LinkType.MAGIC_LINK)

    def __init__(self, *args, environment: Environment, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.environment = environment
        tools = {c.value: providers_of_category(c.value) for c in Category}
        self.categories = [c for c, providers in tools.items() if providers]
        self.tool_category = {p.id: c for c, providers in tools.items() for p in providers}
        tool_field = self.fields["tool"]
        assert isinstance(tool_field, forms.ChoiceField)
        tool_field.choices = [(PICKER, "Let the customer choose")] + [
            (c, [(p.id, p.label) for p in tools[c]]) for c in self.categories
        ]
        # Only configs that read something can be a link's target (integrations.scopes.reads_a_model).
        configs = ScopeConfig.objects.filter(environment=environment, category__in=self.categories)
        self.configs = {sc.pk: sc for sc in configs.order_by("category", "name") if reads_a_model(sc)}
        scope_field = self.fields["scope_config"]
        assert isinstance(scope_field, forms.ChoiceField)
        several = len(self.categories) > 1
        scope_field.choices = [("", "The environment's default")] + [
            (sc.pk, f"{sc.name} ({sc.category})" if several else sc.name) for sc in self.configs.values()
        ]

    def clean(self) -> dict:
        data = super().clean() or {}
        tool = data.get("tool") or ""
        config = self.configs.get(data.get("scope_config") or "")
        if tool:
            category = self.tool_category[tool]  # the field's choices admit only these tools
        elif config is not None:
            category = config.category
        elif self.categories:
            category = self.categories[0]
        else:
            raise forms.ValidationError("No tool is available on this deployment: no customer can connect.")
        if config is not None and config.category != category:
            self.add_error("scope_config", f"{config.name} is for {config.category} tools, not {category}.")
        data["category"] = category
        data["scope_config_obj"] = config
        return data


def _link_rows(environment: Environment) -> list[dict]:
    links = (
        ConnectionLink.objects.filter(environment=environment, kind=LinkKind.CONNECT)
        .select_related("integration", "created_by_user")
        .order_by("-created_at")[:LINKS_SHOWN]
    )
    now = timezone.now()
    rows = []
    for link in links:
        status = link.status_at(now)
        rows.append({"link": link, "status": status, "revocable": status in LIVE_STATUSES})
    return rows


def _render(request: DashboardRequest, access: EnvAccess, form: ConnectForm, created: CreatedLink | None = None):
    link_type = form.data.get("link_type") if form.is_bound else form.fields["link_type"].initial
    ctx = {
        "access": access,
        "env": access.environment,
        "form": form,
        "can_edit": access.can(Role.EDITOR),
        "created": created,
        "created_validity": validity_label(created.link.link_type) if created else "",
        "created_warning": embed_origins_warning(access.environment, created.link.link_type) if created else "",
        "origins_warning": embed_origins_warning(access.environment, str(link_type or "")),
        "embedded_needs_origins": not access.environment.allowed_origins,
        "rows": _link_rows(access.environment),
    }
    response = render(request, TEMPLATE, ctx, status=400 if form.is_bound and form.errors else 200)
    if created:
        add_never_cache_headers(response)  # the raw link is in this response only
    return response


def _page_url(access: EnvAccess) -> str:
    return reverse("dashboard:connect", kwargs={"env": access.environment.slug})


@login_required
def connect(request: DashboardRequest, env: str) -> HttpResponse:
    """GET: the form, the links list, and the link created a moment ago (once).
    POST (editor+): create the link, then redirect to the page that shows it."""
    if request.method == "POST":
        return _create(request, env)
    access = get_env_access(request, env)
    created = None
    pending = shown_once.take(request.session, NEW_LINK_SLOT, access.environment.pk)
    if pending is not None:
        link_id, token = pending
        link = ConnectionLink.objects.filter(pk=link_id, environment=access.environment).first()
        created = CreatedLink(link, token) if link else None
    return _render(request, access, ConnectForm(environment=access.environment), created)


def _create(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env, Role.EDITOR)
    form = ConnectForm(request.POST, environment=access.environment)
    if not form.is_valid():
        return _render(request, access, form)
    data = form.cleaned_data
    try:
        created = create_connect_link(
            access.environment,
            end_user_email=data["end_user_email"],
            end_user_organization_name=data["end_user_organization_name"].strip(),
            end_user_origin_id=data["end_user_origin_id"].strip(),
            category=data["category"],
            tool=data["tool"],
            scope_config=data["scope_config_obj"],
            link_type=data["link_type"],
            language=data["language"],
            user=request.user,
        )
    except LinkInputError as exc:
        form.add_error(None, f"No link created: {exc}.")
        return _render(request, access, form)
    shown_once.keep(request.session, NEW_LINK_SLOT, access.environment.pk, created.link.pk, created.token)
    return redirect_after_post(request, _page_url(access) + "#new-link")


@login_required
@require_POST
def revoke_connect_link(request: DashboardRequest, env: str, link_id: str) -> HttpResponse:
    access = get_env_access(request, env, Role.EDITOR)
    link = get_object_or_404(ConnectionLink, pk=link_id, environment=access.environment)
    if revoke(link, user=request.user):
        messages.success(request, "Link revoked: it can no longer be used.")
    else:
        link.refresh_from_db()
        messages.info(request, f"That link was already {link.status.lower()}.")
    return redirect_after_post(request, _page_url(access) + "#links")
