"""Colors of the head map, as pure functions (testable without a terminal).

Three modes, after the paper's figures:
- ``score``: a head's circuit score on a viridis ramp (brighter = larger).
- ``cohort``: base heads red, emergent heads colored by the checkpoint at
  which they first emerged (the stacked cohorts of figure 2 A).
- ``frequency``: figure 2 C / 3 B: base heads red, fading as they deactivate
  across the series; emergent heads blue, darker = active at more
  checkpoints; heads emergent at the final checkpoint carry a dot (the
  figure's black outline).
"""

from __future__ import annotations

from sparkql.tui.data import HeadCell

RGB = tuple[int, int, int]
MODES = ("score", "cohort", "frequency")

BACKGROUND: RGB = (38, 38, 38)
BASE_RED: RGB = (214, 39, 40)
VIRIDIS: tuple[RGB, ...] = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
BLUE_LIGHT: RGB = (158, 202, 225)
BLUE_DARK: RGB = (8, 69, 148)
# tab10 without its red, which means "base" here.
COHORT_COLORS: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127),
)


def hex_color(rgb: RGB) -> str:
    """``#rrggbb``, the form Rich styles parse."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend: t=0 gives a, t=1 gives b."""
    t = min(max(t, 0.0), 1.0)
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def ramp(stops: tuple[RGB, ...], t: float) -> RGB:
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    return mix(stops[i], stops[i + 1], t - i)


def cohort_color(cohort: int, cohort_steps: tuple[int, ...]) -> RGB:
    i = cohort_steps.index(cohort) if cohort in cohort_steps else len(cohort_steps)
    return COHORT_COLORS[i % len(COHORT_COLORS)]


def cell_color(cell: HeadCell, mode: str, *, max_score: float, cohort_steps: tuple[int, ...]) -> RGB | None:
    """The fill of one head, or None for an empty (inactive) cell."""
    if mode == "score":
        if not cell.active:
            return None
        t = abs(cell.score or 0.0) / max_score if max_score > 0 else 1.0
        return ramp(VIRIDIS, 0.15 + 0.85 * t)
    if mode == "cohort":
        if cell.active and cell.emergent and cell.cohort is not None:
            return cohort_color(cell.cohort, cohort_steps)
        if cell.active and cell.emergent:
            return COHORT_COLORS[0]
        if cell.active:
            return BASE_RED
        return None
    if mode == "frequency":
        freq = cell.frequency
        if cell.cohort is not None and freq is not None:
            return mix(BLUE_LIGHT, BLUE_DARK, freq)
        if cell.base:
            # Never fully vanish: a base head no checkpoint kept stays faintly visible.
            return mix(BACKGROUND, BASE_RED, 0.25 + 0.75 * (freq if freq is not None else 1.0))
        if cell.active:
            return BASE_RED if not cell.emergent else BLUE_DARK
        return None
    raise ValueError(f"unknown color mode {mode!r}")


def text_color(bg: RGB) -> RGB:
    """Black or white, whichever reads on ``bg``."""
    r, g, b = bg
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def describe(cell: HeadCell) -> str:
    """One line about a head for the map's status line."""
    parts = []
    parts.append(f"score {cell.score:.4g}" if cell.score is not None else "no score")
    if cell.active and cell.emergent:
        parts.append("emergent here")
    elif cell.active:
        parts.append("active (base)" if cell.base else "active")
    else:
        parts.append("not active here")
    if cell.cohort is not None:
        parts.append(f"cohort {cell.cohort}")
    if cell.frequency is not None:
        parts.append(f"frequency {cell.frequency:.2f}")
    if cell.survives:
        parts.append("survives to final")
    return " · ".join(parts)
