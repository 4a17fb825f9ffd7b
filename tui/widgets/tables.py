"""Filling DataTables from :class:`sparkql.tui.data.Table` results."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from sparkql.tui.data import Table


# C0 controls (but newline and tab), DEL and C1 controls -> their visible "control picture" or a
# replacement character: model completions (a tiny random model's above all) contain raw control
# bytes that would move the terminal's cursor or break an SVG screenshot.
_CONTROLS = {c: (0x2400 + c if c < 0x20 else 0x2421 if c == 0x7F else 0xFFFD) for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in (0x09, 0x0A)}


def printable(text: str) -> str:
    """``text`` with control characters made visible."""
    return text.translate(_CONTROLS)


def fmt(value: Any) -> Text:
    """A cell as users read it: short floats, a dash for NULL, a check for true.

    Always a Text: a plain string would be parsed as markup, and store values
    such as ``ckpt[step=100]`` would lose their brackets.
    """
    return value if isinstance(value, Text) else Text(_fmt(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✓" if value else "·"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"
        if abs(value) < 1e-3:
            return f"{value:.3g}"
        if abs(value) >= 1e4:
            return f"{value:.0f}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    # One line per cell: completions and prompts have newlines.
    text = printable(str(value)).replace("\n", " ⏎ ").replace("\t", " ")
    return text if len(text) <= 60 else text[:59] + "…"


def fill(table: DataTable, result: Table, *, keys: list[str] | None = None) -> None:
    """Replace a DataTable's columns and rows with ``result``, keeping the cursor row if it still exists."""
    row = table.cursor_row
    table.clear(columns=True)
    table.add_columns(*result.columns)
    for i, r in enumerate(result.rows):
        table.add_row(*(fmt(v) for v in r), key=keys[i] if keys else None)
    if result.rows:
        table.move_cursor(row=min(max(row, 0), len(result.rows) - 1), animate=False)
