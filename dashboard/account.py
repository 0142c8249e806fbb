"""The operator's own preferences: display name, the time zone the dashboard shows times in, and
per environment the email digest of integrations that started failing, paused or recovered
(integrations/digest.py)."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from integrations.models import DigestFrequency, Membership

from .access import user_memberships
from .htmx import DashboardRequest, redirect_after_post


@cache
def zone_choices() -> list[tuple[str, str]]:
    zones = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))
    return [("", f"Server default ({settings.TIME_ZONE})"), ("UTC", "UTC"), *((z, z.replace("_", " ")) for z in zones)]


class PreferencesForm(forms.Form):
    name = forms.CharField(label="Your name", max_length=150, required=False)
    time_zone = forms.ChoiceField(
        label="Time zone", required=False, help_text="Every time in the dashboard is shown in this zone."
    )

    def __init__(self, *args, memberships: list[Membership], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["time_zone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = zone_choices()
        self.memberships = memberships
        for m in memberships:
            self.fields[f"digest_{m.pk}"] = forms.ChoiceField(
                label=f"Email digest for {m.environment.name}",
                choices=DigestFrequency.choices,
                initial=m.digest,
                required=False,
                help_text="Integrations that started failing, had their syncs paused, or recovered: "
                "in one email as they happen, or once a day.",
            )


@login_required
def preferences(request: DashboardRequest) -> HttpResponse:
    user = request.user
    memberships = list(user_memberships(request))
    if request.method == "POST":
        form = PreferencesForm(request.POST, memberships=memberships)
        if form.is_valid():
            user.name = form.cleaned_data["name"].strip()
            user.time_zone = form.cleaned_data["time_zone"]
            user.save(update_fields=["name", "time_zone"])
            for m in memberships:
                digest = form.cleaned_data[f"digest_{m.pk}"] or m.digest  # not sent: unchanged
                if digest != m.digest:
                    # From now on: a digest turned on does not report the past.
                    Membership.objects.filter(pk=m.pk).update(digest=digest, digest_sent_until=timezone.now())
            messages.success(request, "Preferences saved.")
            return redirect_after_post(request, reverse("dashboard:preferences"))
    else:
        form = PreferencesForm(initial={"name": user.name, "time_zone": user.time_zone}, memberships=memberships)
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "dashboard/preferences.html", {"form": form}, status=status)
