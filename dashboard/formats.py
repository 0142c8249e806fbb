"""The dashboard's date and time formats, for templates (`{% timestamp %}`) and for sentences
built in Python ("syncs paused since 22 Nov 10:02 UTC"). The dashboard is English-only; month
names come from `strftime`. Times carry the abbreviation of the zone they are shown in (the
operator's own, see dashboard/middleware.py), so "10:02" is never ambiguous."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def minute(dt: datetime) -> str:
    """22 Nov 10:02 UTC"""
    return f"{dt.day} {dt:%b %H:%M %Z}".rstrip()


def second(dt: datetime) -> str:
    """22 Nov 10:02:05 UTC"""
    return f"{dt.day} {dt:%b %H:%M:%S %Z}".rstrip()


def day(dt: datetime) -> str:
    """22 Nov 2026"""
    return f"{dt.day} {dt:%b %Y}"


def full(dt: datetime) -> str:
    """22 Nov 2026 10:02:05 UTC"""
    return f"{dt.day} {dt:%b %Y %H:%M:%S %Z}".rstrip()


def local_minute(value: datetime) -> str:
    """An aware datetime in the configured time zone, to the minute."""
    return minute(timezone.localtime(value))
