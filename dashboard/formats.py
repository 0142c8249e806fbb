"""The dashboard's date and time formats, for templates (`{% timestamp %}`) and for sentences
built in Python ("syncs paused since 22 Nov 10:02"). The dashboard is English-only; month names
come from `strftime`."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def minute(dt: datetime) -> str:
    """22 Nov 10:02"""
    return f"{dt.day} {dt:%b %H:%M}"


def second(dt: datetime) -> str:
    """22 Nov 10:02:05"""
    return f"{dt.day} {dt:%b %H:%M:%S}"


def day(dt: datetime) -> str:
    """22 Nov 2026"""
    return f"{dt.day} {dt:%b %Y}"


def full(dt: datetime) -> str:
    """22 Nov 2026 10:02:05"""
    return f"{dt.day} {dt:%b %Y %H:%M:%S}"


def local_minute(value: datetime) -> str:
    """An aware datetime in the configured time zone, to the minute."""
    return minute(timezone.localtime(value))
