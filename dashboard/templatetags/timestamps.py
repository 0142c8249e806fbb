"""`{% timestamp value "natural" %}`: a `<time>` element for a datetime, or an em dash for none.

List pages render several of these per row; one tag call with one `localtime()` and plain
`strftime` costs a fraction of the equivalent chain of `date`/`naturaltime` filters and keeps the
markup (machine-readable `datetime`, exact time on hover) identical everywhere.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

from dashboard import formats

register = template.Library()

EMPTY = "—"


STYLES = {"minute": formats.minute, "second": formats.second, "date": formats.day, "full": formats.full}


@register.simple_tag
def timestamp(value: datetime | None, style: str = "natural") -> str:
    """ "natural" (3 hours ago, exact time as the title), "minute" (22 Nov 10:02),
    "second" (22 Nov 10:02:05), "date" (22 Nov 2026) or "full" (22 Nov 2026 10:02:05)."""
    if value is None:
        return EMPTY
    local = timezone.localtime(value)
    # Dates, digits and English month names need no escaping; naturaltime's words are escaped.
    if style == "natural":
        text = conditional_escape(naturaltime(value))
        return mark_safe(f'<time datetime="{local.isoformat()}" title="{formats.full(local)}">{text}</time>')
    return mark_safe(f'<time datetime="{local.isoformat()}">{STYLES[style](local)}</time>')


@register.simple_tag
def now_stamp() -> str:
    """The current time in the active zone, with its abbreviation: "22 Nov 2026 10:02:05 CET"."""
    return timestamp(timezone.now(), "full")


@register.filter
def hours(value: timedelta | None) -> int:
    """A duration in whole hours (`{{ env.notify_first_after|hours }}`)."""
    return int(value.total_seconds() // 3600) if value else 0
