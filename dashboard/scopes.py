"""Scope configs: the list (with how many integrations use each), create and edit with a
models × fields picker built from the registry's tools of the config's category."""

from __future__ import annotations

from dataclasses import dataclass, field

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from connect_flow.scope_configs import delete_scope_config, usage
from integrations import audit
from integrations.models import Availability, Role, ScopeConfig
from integrations.providers import REGISTRY, Category
from integrations.scopes import (
    EMPTY_SCOPE_CONFIG,
    ScopeConfigEmpty,
    ScopeConfigInUse,
    ScopeConfigNameTaken,
    ScopeSpec,
    duplicate_scope_config,
    reads_a_model,
    save_scope_config,
)

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest, redirect_after_post

AVAILABILITIES = [a.value for a in Availability]
CATEGORIES = [c.value for c in Category]
NAME_TAKEN = "Another scope config in this environment already has this name."


@dataclass
class FieldChoice:
    name: str
    value: str
    input_name: str


@dataclass
class ModelChoice:
    name: str
    label: str
    value: str
    input_name: str
    fields: list[FieldChoice] = field(default_factory=list)


def category_models(category: str) -> list[tuple[str, str, list[str]]]:
    """(model, label, fields) for the union of every registered tool of `category`, in registry order."""
    models: dict[str, tuple[str, list[str]]] = {}
    for provider in REGISTRY.values():
        if provider.category.value != category:
            continue
        for data_model in provider.models:
            label, fields = models.setdefault(data_model.name, (data_model.label, []))
            fields.extend(f for f in data_model.fields if f not in fields)
    return [(name, label, fields) for name, (label, fields) in models.items()]


def _model_input(model: str) -> str:
    return f"model__{model}"


def _field_input(model: str, field_name: str) -> str:
    return f"field__{model}__{field_name}"


def build_picker(category: str, spec: dict, data: QueryDict | None = None) -> list[ModelChoice]:
    """The picker rows: posted values when re-rendering a form, else the stored spec (missing = DISABLED)."""
    parsed = ScopeSpec.parse(spec)
    rows = []
    for name, label, fields in category_models(category):
        scope = parsed.models.get(name)
        stored = scope.availability if scope else Availability.DISABLED
        row = ModelChoice(name, label, _pick(data, _model_input(name), stored), _model_input(name))
        for f in fields:
            stored_field = scope.fields.get(f, Availability.DISABLED) if scope else Availability.DISABLED
            row.fields.append(FieldChoice(f, _pick(data, _field_input(name, f), stored_field), _field_input(name, f)))
        rows.append(row)
    return rows


def _pick(data: QueryDict | None, key: str, default: str) -> str:
    if data is None:
        return str(default)
    return data.get(key, Availability.DISABLED)


def spec_from_picker(picker: list[ModelChoice], previous: dict) -> dict:
    """The spec JSON in the shape ScopeSpec.parse reads; models no tool offers (anymore) are kept as they were."""
    known = {row.name for row in picker}
    spec = {name: value for name, value in (previous or {}).items() if name not in known}
    for row in picker:
        spec[row.name] = {"availability": row.value, "fields": {f.name: f.value for f in row.fields}}
    return spec


class ScopeConfigForm(forms.Form):
    name = forms.CharField(max_length=100)
    category = forms.ChoiceField(choices=[(c, c) for c in CATEGORIES])

    def __init__(self, *args, environment, instance: ScopeConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.environment = environment
        self.instance = instance
        if instance is not None:
            # Integrations of one category use it: the category stays what it was.
            del self.fields["category"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("This field is required.")
        return name


@login_required
def scope_configs(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env)
    configs = ScopeConfig.objects.filter(environment=access.environment).annotate(
        integration_count=Count("integrations")
    )
    ctx = {"access": access, "env": access.environment, "configs": configs, "can_edit": access.can(Role.EDITOR)}
    return render(request, "dashboard/scope_configs.html", ctx)


@login_required
def new_scope_config(request: DashboardRequest, env: str) -> HttpResponse:
    access = get_env_access(request, env, Role.EDITOR)
    return _form_view(request, access, None)


@login_required
def scope_config(request: DashboardRequest, env: str, scope_config_id: str) -> HttpResponse:
    access = get_env_access(request, env)
    obj = access.get_or_404(ScopeConfig, pk=scope_config_id)
    if request.method == "POST":
        access.require(Role.EDITOR)
    return _form_view(request, access, obj)


def _form_view(request: DashboardRequest, access: EnvAccess, obj: ScopeConfig | None) -> HttpResponse:
    environment = access.environment
    if request.method == "POST":
        form = ScopeConfigForm(request.POST, environment=environment, instance=obj)
        category = obj.category if obj else request.POST.get("category", "")
        if category not in CATEGORIES:
            category = CATEGORIES[0]
        picker = build_picker(category, obj.spec if obj else {}, request.POST)
        picker_error = _picker_error(picker)
        spec = spec_from_picker(picker, obj.spec if obj else {})
        if not picker_error and not ScopeSpec.parse(spec).reads_a_model:
            picker_error = EMPTY_SCOPE_CONFIG  # the form comes back as posted, nothing lost
        if form.is_valid() and not picker_error:
            verb = "saved" if obj else "created"
            try:
                obj = save_scope_config(
                    environment.pk,
                    audit.Actor(user=request.user),
                    name=form.cleaned_data["name"],
                    spec=spec,
                    category=category,
                    instance=obj,
                )
            except ScopeConfigNameTaken:
                form.add_error("name", NAME_TAKEN)
            except ScopeConfigEmpty as exc:
                picker_error = str(exc)
            else:
                messages.success(request, f"Scope config {obj.name} {verb}.")
                return redirect("dashboard:scope_config", env=environment.slug, scope_config_id=obj.pk)
    else:
        form = ScopeConfigForm(
            initial={"name": obj.name} if obj else {"category": request.GET.get("category", CATEGORIES[0])},
            environment=environment,
            instance=obj,
        )
        category = obj.category if obj else request.GET.get("category", "")
        if category not in CATEGORIES:
            category = CATEGORIES[0]
        picker = build_picker(category, obj.spec if obj else {})
        picker_error = ""
    in_use = usage(obj) if obj else None
    used_by = in_use.integrations if in_use else []
    ctx = {
        "in_use": in_use,
        "empty": obj is not None and not reads_a_model(obj),
        "access": access,
        "env": environment,
        "config": obj,
        "form": form,
        "category": category,
        "categories": CATEGORIES,
        "availabilities": AVAILABILITIES,
        "picker": picker,
        "picker_error": picker_error,
        "used_by": used_by,
        "can_edit": access.can(Role.EDITOR),
    }
    return render(request, "dashboard/scope_config.html", ctx)


def _picker_error(picker: list[ModelChoice]) -> str:
    for row in picker:
        if row.value not in AVAILABILITIES or any(f.value not in AVAILABILITIES for f in row.fields):
            return f"{row.label}: choose Enabled, Optional or Disabled for the model and each field."
    return ""


# --- Delete and duplicate -----------------------------------------------------------------------


@login_required
def delete_scope_config_view(request: DashboardRequest, env: str, scope_config_id: str) -> HttpResponse:
    """GET asks for confirmation, or says why it cannot be deleted (the integrations that use it,
    the pending links that target it); POST deletes (editor+) and redirects to the list, or back
    here when it is in use by then. htmx's hx-post (after its hx-confirm) gets the same redirects."""
    access = get_env_access(request, env, Role.EDITOR)
    obj = access.get_or_404(ScopeConfig, pk=scope_config_id)
    if request.method == "POST":
        try:
            delete_scope_config(obj, audit.Actor(user=request.user))
        except ScopeConfigInUse:
            messages.error(request, f"Scope config {obj.name} is in use and was not deleted.")
            return redirect_after_post(request, reverse("dashboard:scope_config_delete", args=[env, scope_config_id]))
        note = f" {obj.category} has no default scope config now." if obj.is_default else ""
        messages.success(request, f"Scope config {obj.name} deleted.{note}")
        return redirect_after_post(request, reverse("dashboard:scope_configs", args=[env]))
    ctx = {"access": access, "env": access.environment, "config": obj, "usage": usage(obj)}
    return render(request, "dashboard/scope_config_delete.html", ctx)


@login_required
@require_POST
def duplicate_scope_config_view(request: DashboardRequest, env: str, scope_config_id: str) -> HttpResponse:
    """A copy named "<name> (copy)" (then "(copy 2)"…), not the default; opens its edit page."""
    access = get_env_access(request, env, Role.EDITOR)
    obj = access.get_or_404(ScopeConfig, pk=scope_config_id)
    try:
        copy = duplicate_scope_config(obj, audit.Actor(user=request.user))
    except ScopeConfigEmpty as exc:
        messages.error(request, f"Not duplicated: {exc}")
        return redirect_after_post(request, reverse("dashboard:scope_config", args=[env, obj.pk]))
    except ScopeConfigNameTaken:
        messages.error(request, "Not duplicated: every copy name was taken meanwhile; try again.")
        return redirect_after_post(request, reverse("dashboard:scope_config", args=[env, obj.pk]))
    messages.success(request, f"Scope config {obj.name} duplicated as {copy.name}.")
    return redirect_after_post(request, reverse("dashboard:scope_config", args=[env, copy.pk]))
