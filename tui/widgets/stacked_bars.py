"""Figure 2 A as terminal bars: per checkpoint, the newly activated heads stacked by cohort beside the maintained base heads.

Drawn with half blocks (two pixels per cell, top and bottom) so that small
counts still show at 80x24. Plotext's stacked bars misplace segments at such
small heights, hence this widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from sparkql.tui.widgets.palette import RGB, hex_color

Pixel = RGB | None


@dataclass
class Bars:
    labels: list[str] = field(default_factory=list)  # x labels (checkpoint steps)
    stacks: list[list[tuple[RGB, int]]] = field(default_factory=list)  # per checkpoint: (color, count) bottom-up
    side: list[int] = field(default_factory=list)  # per checkpoint: the maintained count
    side_color: RGB = (214, 39, 40)


class StackedBars(Widget):
    DEFAULT_CSS = "StackedBars { height: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.bars = Bars()

    def set_bars(self, bars: Bars) -> None:
        self.bars = bars
        self.refresh()

    def _pixels(self, width: int, height_px: int) -> list[list[Pixel]]:
        """Pixel rows, top first."""
        b = self.bars
        n = len(b.labels)
        grid: list[list[Pixel]] = [[None] * width for _ in range(height_px)]
        if n == 0 or height_px <= 0:
            return grid
        top = max([1, *(sum(c for _, c in s) for s in b.stacks), *b.side])
        unit = height_px / top
        group = width // n
        bar_w = max(1, (group - 1) * 2 // 3)
        side_w = max(1, group - 1 - bar_w)
        for i in range(n):
            x0 = i * group
            y = 0.0
            for color, count in b.stacks[i] if i < len(b.stacks) else []:
                lo, hi = round(y * unit), round((y + count) * unit)
                for py in range(lo, hi):
                    for px in range(x0, min(x0 + bar_w, width)):
                        grid[height_px - 1 - py][px] = color
                y += count
            if i < len(b.side):
                for py in range(round(b.side[i] * unit)):
                    for px in range(x0 + bar_w, min(x0 + bar_w + side_w, width)):
                        grid[height_px - 1 - py][px] = b.side_color
        return grid

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        b = self.bars
        n = len(b.labels)
        group = width // n if n else width
        if y == 0:  # totals above the bars: newly activated / maintained
            text = "".join(
                f"{sum(c for _, c in b.stacks[i])}/{b.side[i] if i < len(b.side) else ''}".ljust(group)[:group] for i in range(n)
            )
            return Strip([Segment(text.ljust(width)[:width], Style(dim=True))])
        if y == height - 1:  # x labels
            text = "".join(lbl.ljust(group)[:group] for lbl in b.labels)
            return Strip([Segment(text.ljust(width)[:width], Style(dim=True))])
        rows = height - 2
        grid = self._pixels(width, rows * 2)
        upper, lower = grid[(y - 1) * 2], grid[(y - 1) * 2 + 1]
        segments = []
        for top, bottom in zip(upper, lower):
            if top is None and bottom is None:
                segments.append(Segment(" "))
            elif top is None:
                segments.append(Segment("▄", Style(color=hex_color(bottom))))
            elif bottom is None:
                segments.append(Segment("▀", Style(color=hex_color(top))))
            else:
                segments.append(Segment("▀", Style(color=hex_color(top), bgcolor=hex_color(bottom))))
        return Strip(segments)
