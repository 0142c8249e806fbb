"""WCAG AA contrast in the dashboard's stylesheet: every rule that sets both a text colour and a
background (badges, states, messages, warnings) reaches 4.5:1, and every chart colour reaches 3:1
against the card it is drawn on (WCAG 1.4.11, graphical objects)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = Path(__file__).resolve().parents[1] / "static" / "css" / "relink.css"
CARD = "#ffffff"


def _parse() -> tuple[dict[str, str], list[tuple[str, dict[str, str]]]]:
    text = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    variables = {name: _six(value) for name, value in re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})\b", text)}
    rules = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        declarations = dict(re.findall(r"([\w-]+)\s*:\s*([^;]+)", body))
        rules.append((" ".join(selector.split()), {k: v.strip() for k, v in declarations.items()}))
    return variables, rules


def _six(value: str) -> str:
    """#abc → #aabbcc."""
    value = value.lower()
    return "#" + "".join(c * 2 for c in value[1:]) if len(value) == 4 else value


def _colour(value: str, variables: dict[str, str]) -> str | None:
    value = value.replace("!important", "").strip()
    found = re.fullmatch(r"var\(--([\w-]+)\)", value)
    if found:
        return variables.get(found.group(1))
    return _six(value) if re.fullmatch(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}", value) else None


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


VARIABLES, RULES = _parse()
TEXT_ON_BACKGROUND = [
    (selector, _colour(d["color"], VARIABLES), _colour(d["background"], VARIABLES))
    for selector, d in RULES
    if "color" in d and "background" in d and _colour(d["color"], VARIABLES) and _colour(d["background"], VARIABLES)
]
CHART_FILLS = [
    (selector, _colour(d["fill"], VARIABLES))
    for selector, d in RULES
    if selector.startswith(".bar-") and "fill" in d and _colour(d["fill"], VARIABLES)
]


def test_the_stylesheet_was_read():
    assert len(TEXT_ON_BACKGROUND) >= 15 and len(CHART_FILLS) >= 3


@pytest.mark.parametrize(("selector", "fg", "bg"), TEXT_ON_BACKGROUND, ids=[s for s, _, _ in TEXT_ON_BACKGROUND])
def test_text_on_its_background_reaches_4_5_to_1(selector, fg, bg):
    assert contrast(fg, bg) >= 4.5, f"{selector}: {fg} on {bg} is {contrast(fg, bg):.2f}:1"


@pytest.mark.parametrize(("selector", "fill"), CHART_FILLS, ids=[s for s, _ in CHART_FILLS])
def test_chart_colours_reach_3_to_1_on_the_card(selector, fill):
    assert contrast(fill, CARD) >= 3, f"{selector}: {fill} on white is {contrast(fill, CARD):.2f}:1"


@pytest.mark.parametrize("name", ["fg", "muted", "accent", "ok", "warn", "bad"])
def test_text_colours_reach_4_5_to_1_on_the_page_and_cards(name):
    for background in (VARIABLES["bg"], VARIABLES["card"]):
        assert contrast(VARIABLES[name], background) >= 4.5, f"--{name} on {background}"
