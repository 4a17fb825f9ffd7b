"""Filling DataTables from :class:`sparkql.tui.data.Table` results."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from rich.text import Text
from textual.render import measure
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


def set_rows(table: DataTable, columns: list[str], rows: list[tuple], *, keys: list[str] | None = None) -> None:
    """Replace a DataTable's columns and rows, each column as wide as its widest cell.

    The widths are fixed here, when the rows arrive. Left to itself, Textual's DataTable measures
    new rows on its next Idle event and keeps the rows it rendered before that in caches keyed
    without column widths, so a table painted in between could keep its header widths ("emerge"
    for "emergent") until the cursor moved; a CI snapshot caught it."""
    table.clear(columns=True)
    cells = [[fmt(v) for v in r] for r in rows]
    console = table.app.console
    for j, label in enumerate(columns):
        header = Text(label)  # a Text: a string label would be parsed as markup
        table.add_column(header, width=max([measure(console, header, 1), *(measure(console, r[j], 1) for r in cells)]))
    for i, r in enumerate(cells):
        table.add_row(*r, key=keys[i] if keys else None)


def fill(table: DataTable, result: Table, *, keys: list[str] | None = None) -> None:
    """Replace a DataTable's columns and rows with ``result``, keeping the cursor row if it still exists."""
    row = table.cursor_row
    set_rows(table, list(result.columns), list(result.rows), keys=keys)
    if result.rows:
        table.move_cursor(row=min(max(row, 0), len(result.rows) - 1), animate=False)
