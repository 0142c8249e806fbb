"""Helpers for comparing rendered pages."""

from __future__ import annotations

import re

# Every page carries the CSRF token, masked anew on each render (hx-headers, the sign-out form).
_CSRF = re.compile(r'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]+"')


def without_csrf(response) -> str:
    """The page's HTML with its per-render CSRF tokens blanked, for comparing two pages."""
    return _CSRF.sub(r'\1"', response.content.decode())
