"""The signed-in operator's time zone (their preference, else settings.TIME_ZONE) for the request,
so every time the dashboard shows is in it, labelled with its abbreviation."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.http import HttpRequest, HttpResponse
from django.utils import timezone


class UserTimeZoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = getattr(getattr(request, "user", None), "time_zone", "")
        if zone:
            try:
                timezone.activate(ZoneInfo(zone))
            except (ZoneInfoNotFoundError, ValueError):
                timezone.deactivate()  # a zone removed from the tz database: the default
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
