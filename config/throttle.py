"""Login throttling helpers for django-axes (settings: AXES_*)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def login_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The account an attempt is counted against: the email as typed, trimmed and lower-cased, so
    `Owner@Example.com ` and `owner@example.com` share one counter."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    return str(username).strip().lower()[:254]


def locked_out(request: HttpRequest, credentials: dict[str, Any] | None, *args: Any, **kwargs: Any) -> HttpResponse:
    """The page a locked-out sign-in gets: 429, how long, and who can unlock."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return render(request, "registration/locked_out.html", {"minutes": minutes}, status=429)
