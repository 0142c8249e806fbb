"""Environment settings (owner): name, sync interval, allowed embed origins, default scope config
per category; and a new environment (staff), whose creator becomes its owner.

The rules (bounds, origin syntax, which scope configs may be defaults) are the domain's
(`integrations.environments`); this module only turns form fields into its values and back.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse

from integrations import audit, environments
from integrations.environments import EnvironmentSettings, SettingsError
from integrations.models import Environment, Role, ScopeConfig
from integrations.providers import Category, providers_of_category
from integrations.scopes import reads_a_model

from .access import EnvAccess, get_env_access
from .htmx import DashboardRequest, redirect_after_post

TEMPLATE = "dashboard/environment_settings.html"
NEW_TEMPLATE = "dashboard/environment_new.html"
NO_DEFAULT = ""
MINUTE = timedelta(minutes=1)


def _minutes(interval: timedelta) -> int:
    return int(interval / MINUTE)


NOTIFY_FIELDS = (
    "notify_customers",
    "notify_sender_name",
    "notify_reply_to",
    "notify_language",
    "notify_first_after",
    "notify_reminder_days",
)


class SettingsForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, help_text="Shown to your customers on the connect pages.")
    sync_interval = forms.IntegerField(
        label="Sync interval (minutes)",
        min_value=_minutes(environments.SYNC_INTERVAL_MIN),
        max_value=_minutes(environments.SYNC_INTERVAL_MAX),
        help_text="How often each integration syncs: between 15 and 1440 minutes (24 hours). Each "
        "integration's next sync is spread ±10 % around it, so a fleet does not sync at once.",
    )
    allowed_origins = forms.CharField(
        label="Allowed embed origins",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "https://app.example.com", "spellcheck": "false"}),
        help_text="One per line: the origins (scheme, host and port, no path) of your app's pages that show "
        "an embedded connection link in an iframe, e.g. https://app.example.com. Embedded links "
        "show a blank frame on any other page; magic links work without this.",
    )

    auth_failure_window = forms.IntegerField(
        label="Pause syncs after (hours)",
        min_value=environments.hours(environments.AUTH_WINDOW_MIN),
        max_value=environments.hours(environments.AUTH_WINDOW_MAX),
        help_text="How long an integration's credentials may be rejected before its syncs pause and it "
        "becomes Invalid: between 24 hours and 14 days (336 hours). The connect pages and emails quote it.",
    )
    transient_errors_count = forms.BooleanField(
        label="Count provider outages as failures",
        required=False,
        help_text="Off (recommended): timeouts, server errors and rate limits are the HR system's problem, "
        "not the credentials', and neither start nor extend a failure.",
    )
    notify_customers = forms.BooleanField(
        label="Ask customers to reconnect by email",
        required=False,
        help_text="Relink emails the customer's contact (the email given when they connected) a magic link "
        "when authentication starts failing, when syncs pause, and as reminders, until it works again.",
    )
    notify_sender_name = forms.CharField(
        label="Sender name", max_length=100, required=False, help_text="Shown as the sender; the name above if empty."
    )
    notify_reply_to = forms.EmailField(
        label="Reply-to address", required=False, help_text="Where the customer's replies go, e.g. your support desk."
    )
    notify_language = forms.ChoiceField(
        label="Email language when the customer's is not known",
        choices=settings.LANGUAGES,
        help_text="Otherwise the language of the last link the customer completed.",
    )
    notify_first_after = forms.IntegerField(
        label="First email after (hours of failing)",
        min_value=1,
        max_value=environments.hours(environments.AUTH_WINDOW_MAX) - 1,
        help_text="Before syncs pause, so the customer can fix it in time.",
    )
    notify_reminder_days = forms.CharField(
        label="Reminders (days after syncs paused)",
        max_length=100,
        required=False,
        help_text="Comma-separated, e.g. 1, 3, 7, 14. Empty: no reminders.",
    )
    volume_drop_percent = forms.IntegerField(
        label="Warn when a sync reads fewer records, by more than (%)",
        min_value=10,
        max_value=95,
        help_text="A sync that succeeds with far fewer records than usual often means a permission was "
        "removed upstream: it finishes with a volume-drop warning.",
    )
    volume_drop_min_records = forms.IntegerField(
        label="…for models with at least (records)", min_value=1, max_value=1_000_000
    )

    def __init__(self, *args, environment: Environment, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.environment = environment
        self.categories = [c.value for c in Category if providers_of_category(c.value)]
        configs = ScopeConfig.objects.filter(environment=environment, category__in=self.categories).order_by("name")
        self.configs = {c.pk: c for c in configs}
        for category in self.categories:
            choices = [(NO_DEFAULT, "None — integrations without a scope config of their own sync nothing")]
            choices += [(c.pk, c.name) for c in self.configs.values() if c.category == category and reads_a_model(c)]
            self.fields[f"default_{category}"] = forms.ChoiceField(
                label=f"Default scope config ({category})",
                choices=choices,
                required=False,
                help_text=f"What a {category} integration reads when it has no scope config of its own, "
                "and what a new connection link uses unless you choose another.",
            )

    def default_fields(self) -> list[forms.BoundField]:
        return [self[f"default_{category}"] for category in self.categories]

    def clean_allowed_origins(self) -> list[str]:
        try:
            return environments.parse_origin_lines(self.cleaned_data.get("allowed_origins") or "")
        except SettingsError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_notify_reminder_days(self) -> list[int]:
        try:
            return environments.parse_reminder_days(self.cleaned_data.get("notify_reminder_days") or "")
        except SettingsError as exc:
            raise forms.ValidationError(str(exc)) from None

    def fieldsets(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(id, legend, fields) in the order the page shows them."""
        return [
            ("health", "Failing authentication", [self[n] for n in ("auth_failure_window", "transient_errors_count")]),
            ("reconnect-requests", "Reconnect requests to customers", [self[n] for n in NOTIFY_FIELDS]),
            ("volume-drop", "Silent failures", [self["volume_drop_percent"], self["volume_drop_min_records"]]),
        ]

    def settings(self) -> EnvironmentSettings:
        data = self.cleaned_data
        policy = {name: data[name] for name in environments.POLICY_FIELDS}
        policy["auth_failure_window"] = timedelta(hours=data["auth_failure_window"])
        policy["notify_first_after"] = timedelta(hours=data["notify_first_after"])
        return EnvironmentSettings(
            name=data["name"],
            sync_interval=timedelta(minutes=data["sync_interval"]),
            allowed_origins=data["allowed_origins"],
            defaults={c: self.configs.get(data.get(f"default_{c}") or "") for c in self.categories},
            policy=policy,
        )


def _initial(environment: Environment) -> dict:
    current = environments.current_settings(environment)
    initial = {
        "name": current.name,
        "sync_interval": _minutes(current.sync_interval),
        "allowed_origins": "\n".join(current.allowed_origins),
    }
    initial |= {f"default_{c}": config.pk for c, config in current.defaults.items() if config is not None}
    initial |= dict(current.policy)
    initial["auth_failure_window"] = environments.hours(current.policy["auth_failure_window"])
    initial["notify_first_after"] = environments.hours(current.policy["notify_first_after"])
    initial["notify_reminder_days"] = ", ".join(str(d) for d in current.policy["notify_reminder_days"])
    return initial


def _render(request: DashboardRequest, access: EnvAccess, form: SettingsForm) -> HttpResponse:
    ctx = {"access": access, "env": access.environment, "form": form}
    return render(request, TEMPLATE, ctx, status=400 if form.is_bound and form.errors else 200)


@login_required
def environment_settings(request: DashboardRequest, env: str) -> HttpResponse:
    """GET: the settings form. POST: save, then redirect back (Post/Redirect/Get)."""
    access = get_env_access(request, env, Role.OWNER)
    if request.method != "POST":
        return _render(
            request, access, SettingsForm(initial=_initial(access.environment), environment=access.environment)
        )
    form = SettingsForm(request.POST, environment=access.environment)
    if not form.is_valid():
        return _render(request, access, form)
    try:
        changed = environments.update_settings(access.environment, form.settings(), audit.Actor(user=request.user))
    except SettingsError as exc:
        form.add_error(None, str(exc))
        return _render(request, access, form)
    if changed:
        messages.success(request, "Settings saved.")
    else:
        messages.info(request, "Nothing changed.")
    return redirect_after_post(request, reverse("dashboard:environment_settings", kwargs={"env": env}))


class NewEnvironmentForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, help_text='e.g. "Acme production" or "Acme sandbox".')
    slug = forms.SlugField(
        label="URL name",
        max_length=45,
        required=False,
        help_text="Letters, digits and hyphens, used in the dashboard's addresses; made from the name if empty.",
    )


@login_required
def new_environment(request: DashboardRequest) -> HttpResponse:
    """Staff only: create an environment; its creator becomes its owner and lands on its settings."""
    if not request.user.is_staff:
        raise PermissionDenied("Only staff users create environments.")
    form = NewEnvironmentForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            environment = environments.create_environment(
                form.cleaned_data["name"],
                audit.Actor(user=request.user),
                slug=form.cleaned_data["slug"],
                owner=request.user,
            )
        except SettingsError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{environment.name} created; you are its owner.")
            url = reverse("dashboard:environment_settings", kwargs={"env": environment.slug})
            return redirect_after_post(request, url)
    status = 400 if form.is_bound else 200
    return render(request, NEW_TEMPLATE, {"form": form}, status=status)
