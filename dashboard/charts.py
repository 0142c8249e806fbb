"""The stacked SVG chart of authentication-check outcomes per day, for an environment (overview)
or one integration (its page). Server-rendered SVG: no JavaScript, readable by screen readers
through its title and description, each day's counts in a hover title.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from integrations.models import AuthCheck
from integrations.providers import Outcome

CHART_DAYS = 30

# Chart geometry (SVG user units).
BAR_WIDTH = 16
BAR_GAP = 4
PLOT_HEIGHT = 120
PLOT_TOP = 10
AXIS_LEFT = 32
LABEL_HEIGHT = 22
SERIES = [  # bottom to top
    (Outcome.OK.value, "OK", "bar-ok"),
    (Outcome.AUTH_FAILED.value, "Auth failed", "bar-auth_failed"),
    (Outcome.UNAVAILABLE.value, "Unavailable", "bar-unavailable"),
]


def _n(value: float) -> str:
    """A plain SVG number: a string, so template localization never turns 12.5 into 12,5."""
    return f"{value:g}"


def auth_check_chart(checks: QuerySet[AuthCheck], today: date) -> dict:
    """Outcomes per day of `checks` over the last CHART_DAYS days (today included), as SVG
    geometry for `dashboard/_auth_chart.html`.

    One aggregate query: the checks are grouped by day in the database.
    """
    first = today - timedelta(days=CHART_DAYS - 1)
    start = timezone.make_aware(datetime.combine(first, time.min))
    rows = (
        checks.filter(checked_at__gte=start)
        .annotate(day=TruncDate("checked_at"))
        .order_by()
        .values("day")
        .annotate(**{value: Count("id", filter=Q(outcome=value)) for value, _, _ in SERIES})
    )
    per_day: dict[date, dict[str, Any]] = {r["day"]: dict(r) for r in rows}
    days = [first + timedelta(days=i) for i in range(CHART_DAYS)]
    peak = max([sum(per_day.get(d, {}).get(v, 0) for v, _, _ in SERIES) for d in days] + [0])
    scale_max = max(peak, 1)
    bars = []
    for i, day in enumerate(days):
        counts = {v: per_day.get(day, {}).get(v, 0) for v, _, _ in SERIES}
        x = AXIS_LEFT + BAR_GAP + i * (BAR_WIDTH + BAR_GAP)
        y: float = PLOT_TOP + PLOT_HEIGHT
        segments = []
        for value, _label, css in SERIES:
            height = round(counts[value] * PLOT_HEIGHT / scale_max, 2)
            if counts[value]:
                y -= height
                segments.append({"y": _n(round(y, 2)), "height": _n(height), "css": css, "count": counts[value]})
        bars.append(
            {
                "day": day,
                "x": x,
                "cx": _n(x + BAR_WIDTH / 2),
                "segments": segments,
                "title": f"{day:%-d %b}: " + ", ".join(f"{counts[v]} {_in_sentence(label)}" for v, label, _ in SERIES),
                "label": day.day if i % 5 == 0 or i == CHART_DAYS - 1 else None,
                "total": sum(counts.values()),
            }
        )
    width = AXIS_LEFT + BAR_GAP + CHART_DAYS * (BAR_WIDTH + BAR_GAP)
    return {
        "bars": bars,
        "series": [{"value": v, "label": label, "css": css} for v, label, css in SERIES],
        "peak": peak,
        "total": sum(b["total"] for b in bars),
        "width": width,
        "height": PLOT_TOP + PLOT_HEIGHT + LABEL_HEIGHT,
        "plot_top": PLOT_TOP,
        "baseline": PLOT_TOP + PLOT_HEIGHT,
        "plot_height": PLOT_HEIGHT,
        "axis_label_x": AXIS_LEFT - 4,
        "peak_label_y": PLOT_TOP + 4,
        "axis_left": AXIS_LEFT,
        "bar_width": BAR_WIDTH,
        "label_y": PLOT_TOP + PLOT_HEIGHT + 15,
        "first": first,
        "last": today,
    }


def _in_sentence(label: str) -> str:
    """ "Auth failed" → "auth failed"; an acronym such as "OK" stays as it is."""
    return label if label.isupper() else label.lower()
