"""Head map colors: what each mode says about a head (paper figures 2 A and 2 C)."""

from __future__ import annotations

import pytest

from sparkql.tui.data import HeadCell
from sparkql.tui.widgets.palette import (
    BACKGROUND,
    BASE_RED,
    BLUE_DARK,
    BLUE_LIGHT,
    cell_color,
    cohort_color,
    describe,
    hex_color,
    text_color,
)

STEPS = (100, 200, 300)


def color(cell: HeadCell, mode: str):
    return cell_color(cell, mode, max_score=1.0, cohort_steps=STEPS)


def brightness(rgb) -> float:
    return sum(rgb) / 3


def test_score_mode_shows_only_active_heads_brighter_for_larger_scores():
    assert color(HeadCell(score=0.9, active=False), "score") is None
    low, high = color(HeadCell(score=0.1, active=True), "score"), color(HeadCell(score=0.9, active=True), "score")
    assert brightness(high) > brightness(low)


def test_cohort_mode_base_red_emergent_by_first_step():
    assert color(HeadCell(active=True, base=True), "cohort") == BASE_RED
    a = color(HeadCell(active=True, emergent=True, cohort=100), "cohort")
    b = color(HeadCell(active=True, emergent=True, cohort=300), "cohort")
    assert a != b and BASE_RED not in (a, b)
    assert a == cohort_color(100, STEPS)
    assert color(HeadCell(active=False, emergent=False, cohort=100), "cohort") is None  # not active at this checkpoint


def test_frequency_mode_matches_figure_2c():
    # Base heads fade toward the background as they deactivate, but never vanish.
    kept = color(HeadCell(base=True, frequency=1.0), "frequency")
    fading = color(HeadCell(base=True, frequency=0.2), "frequency")
    gone = color(HeadCell(base=True, frequency=0.0), "frequency")
    assert kept == BASE_RED
    dist = lambda c: sum(abs(x - y) for x, y in zip(c, BACKGROUND))  # noqa: E731
    assert dist(kept) > dist(fading) > dist(gone) > 0
    # Emergent heads: darker blue = active at more checkpoints.
    rare = color(HeadCell(cohort=100, frequency=0.2), "frequency")
    often = color(HeadCell(cohort=100, frequency=1.0), "frequency")
    assert often == BLUE_DARK and brightness(rare) > brightness(often)
    assert color(HeadCell(cohort=100, frequency=0.0), "frequency") == BLUE_LIGHT
    assert color(HeadCell(), "frequency") is None


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError):
        color(HeadCell(active=True), "rainbow")


def test_helpers():
    assert hex_color((255, 0, 16)) == "#ff0010"
    assert text_color((250, 250, 250)) == (0, 0, 0) and text_color((10, 10, 10)) == (255, 255, 255)
    line = describe(HeadCell(score=0.5, active=True, emergent=True, cohort=200, frequency=0.8, survives=True))
    assert line == "score 0.5 · emergent here · cohort 200 · frequency 0.80 · survives to final"

