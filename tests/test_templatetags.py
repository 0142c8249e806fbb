"""The dashboard's own template tags: `{% timestamp %}` and `{% state_badge %}`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.template import Context, Template
from django.test import override_settings

NOW = datetime(2026, 11, 22, 10, 2, 5, tzinfo=UTC)


def _render(value, style: str | None = None) -> str:
    tag = '{% timestamp value "' + style + '" %}' if style else "{% timestamp value %}"
    return Template("{% load timestamps %}" + tag).render(Context({"value": value}))


@pytest.mark.parametrize(
    "style, text",
    [
        ("minute", "22 Nov 10:02 UTC"),
        ("second", "22 Nov 10:02:05 UTC"),
        ("date", "22 Nov 2026"),
        ("full", "22 Nov 2026 10:02:05 UTC"),
    ],
)
def test_fixed_styles(style, text):
    assert _render(NOW, style) == f'<time datetime="2026-11-22T10:02:05+00:00">{text}</time>'


@time_machine.travel(NOW + timedelta(hours=3), tick=False)
def test_natural_style_shows_the_exact_time_on_hover():
    expected = '<time datetime="2026-11-22T10:02:05+00:00" title="22 Nov 2026 10:02:05 UTC">3\xa0hours ago</time>'
    assert _render(NOW) == expected


def test_none_is_an_em_dash():
    assert _render(None, "minute") == "—" and _render(None) == "—"


@override_settings(TIME_ZONE="Europe/Berlin")
def test_times_are_shown_in_the_configured_time_zone():
    assert _render(NOW, "minute") == '<time datetime="2026-11-22T11:02:05+01:00">22 Nov 11:02 CET</time>'


def test_times_are_shown_in_the_operators_own_time_zone(client, db):
    from tests import factories

    user = factories.UserFactory(time_zone="America/New_York")
    client.force_login(user)
    page = client.get("/preferences/").content.decode()
    assert " EST</time>" in page  # the page's "It is now …" in the operator's zone
    user.time_zone = ""
    user.save()
    assert " UTC</time>" in client.get("/preferences/").content.decode()


def _badge(state) -> str:
    return Template("{% load states %}{% state_badge state %}").render(Context({"state": state}))


def test_an_invalid_badge_carries_the_broken_chain_icon():
    badge = _badge("INVALID")
    assert badge.startswith('<span class="badge state-invalid"><svg') and 'aria-label="broken link"' in badge
    assert badge.endswith(" Invalid</span>")


@pytest.mark.parametrize(
    "state, html",
    [
        ("ACTIVE", '<span class="badge state-active">Active</span>'),
        ("INACTIVE", '<span class="badge state-inactive">Inactive</span>'),
        ("", '<span class="badge">?</span>'),
        (None, '<span class="badge">?</span>'),
        ("<b>odd</b>", '<span class="badge">&lt;b&gt;odd&lt;/b&gt;</span>'),
    ],
)
def test_other_states(state, html):
    assert _badge(state) == html


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        ("AUTH_FAILED", "outcome", "Authentication failed"),
        ("UNAVAILABLE", "outcome", "Provider unavailable"),
        ("PENDING", "link", "Sent, not opened"),
        ("OPTIONAL", "availability", "Optional"),
        ("SOMETHING_NEW", "link", "SOMETHING_NEW"),
    ],
)
def test_codes_read_as_plain_words(code, kind, words):
    assert Template("{% load states %}{{ code|label:kind }}").render(Context({"code": code, "kind": kind})) == words
