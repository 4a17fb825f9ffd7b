"""The head map: a layer x head grid with a cursor.

Layers run left to right and heads top to bottom, so a 28-layer x 12-head
model fits in 80x24 with two columns per cell; on a larger terminal the cells
grow (up to 10 columns and 5 rows) and a model too wide for the screen
scrolls.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from sparkql.tui.data import HeadMap
from sparkql.tui.widgets.palette import MODES, cell_color, hex_color, text_color

LABEL_W = 4  # "H11 "
MIN_CELL_W, MAX_CELL_W, MAX_CELL_H = 2, 10, 5


class HeadGrid(Widget, can_focus=True):
    """A focusable grid of heads colored by the current mode."""

    DEFAULT_CSS = """
    HeadGrid { width: auto; height: auto; }
    HeadGrid:focus { background: $boost; }
    """

    BINDINGS = [
        Binding("left,h", "move(-1, 0)", "layer-", show=False),
        Binding("right,l", "move(1, 0)", "layer+", show=False),
        Binding("up,k", "move(0, -1)", "head-", show=False),
        Binding("down,j", "move(0, 1)", "head+", show=False),
        Binding("home", "jump(0)", "first layer", show=False),
        Binding("end", "jump(-1)", "last layer", show=False),
        Binding("enter", "choose", "Head detail"),
    ]

    mode: reactive[str] = reactive("score")
    cursor: reactive[tuple[int, int]] = reactive((0, 0))

    @dataclass
    class Moved(Message):
        layer: int
        head: int

    @dataclass
    class Chosen(Message):
        layer: int
        head: int

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.head_map: HeadMap | None = None
        self._avail = Size(80, 24)

    # -- data ---------------------------------------------------------------

    def set_map(self, head_map: HeadMap) -> None:
        self.head_map = head_map
        layer, head = self.cursor
        self.cursor = (min(layer, head_map.n_layers - 1), min(head, head_map.n_heads - 1))
        self.refresh(layout=True)
        self.post_message(self.Moved(*self.cursor))

    # -- geometry -----------------------------------------------------------

    def _cell_size(self) -> tuple[int, int]:
        hm = self.head_map
        if hm is None:
            return MIN_CELL_W, 1
        avail = self._available()
        w = (avail.width - LABEL_W) // max(hm.n_layers, 1)
        h = (avail.height - 1) // max(hm.n_heads, 1)
        return min(max(w, MIN_CELL_W), MAX_CELL_W), min(max(h, 1), MAX_CELL_H)

    def _available(self) -> Size:
        """The visible area of the scrolling parent: cells grow to fill it, never past it."""
        parent = self.parent
        if isinstance(parent, Widget) and parent.size.area:
            return parent.scrollable_content_region.size
        return self._avail

    def get_content_width(self, container: Size, viewport: Size) -> int:
        self._avail = Size(container.width, self._avail.height)
        cw, _ = self._cell_size()
        return LABEL_W + cw * (self.head_map.n_layers if self.head_map else 1)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        self._avail = Size(self._avail.width, viewport.height)
        _, ch = self._cell_size()
        return 1 + ch * (self.head_map.n_heads if self.head_map else 1)

    # -- keys ---------------------------------------------------------------

    def action_move(self, dl: int, dh: int) -> None:
        if self.head_map is None:
            return
        layer, head = self.cursor
        self.cursor = (
            min(max(layer + dl, 0), self.head_map.n_layers - 1),
            min(max(head + dh, 0), self.head_map.n_heads - 1),
        )

    def action_jump(self, layer: int) -> None:
        if self.head_map is not None:
            self.cursor = (layer % self.head_map.n_layers, self.cursor[1])

    def action_choose(self) -> None:
        if self.head_map is not None:
            self.post_message(self.Chosen(*self.cursor))

    def action_cycle_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]

    def watch_cursor(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        self.refresh()
        if self.head_map is None:
            return
        cw, ch = self._cell_size()
        layer, head = new
        # Keep the cursor on screen when the model is wider than the terminal.
        if self.parent is not None and hasattr(self.parent, "scroll_to_region"):
            self.parent.scroll_to_region(Region(LABEL_W + layer * cw, 1 + head * ch, cw, ch), animate=False)
        if old != new:
            self.post_message(self.Moved(layer, head))

    def watch_mode(self) -> None:
        self.refresh()

    # -- drawing ------------------------------------------------------------

    def render(self) -> Text:
        hm = self.head_map
        if hm is None:
            return Text("no circuit or head set selected", style="dim")
        cw, ch = self._cell_size()
        out = Text(no_wrap=True, overflow="crop")
        out.append(self._layer_axis(hm.n_layers, cw), style="dim")
        cur_l, cur_h = self.cursor
        for head in range(hm.n_heads):
            for sub in range(ch):
                out.append("\n")
                out.append(f"H{head:<{LABEL_W - 1}}" if sub == 0 else " " * LABEL_W, style="dim")
                for layer in range(hm.n_layers):
                    cell = hm.cell(layer, head)
                    bg = cell_color(cell, self.mode, max_score=hm.max_score, cohort_steps=hm.cohort_steps)
                    is_cursor = (layer, head) == (cur_l, cur_h)
                    mark = "•" if (self.mode == "frequency" and cell.survives and sub == ch // 2) else ""
                    out.append(*self._cell(cw, bg, mark, is_cursor, sub == ch // 2))
        return out

    @staticmethod
    def _layer_axis(n_layers: int, cw: int) -> str:
        # A label every few layers, as many as fit without touching.
        every = max(1, -(-4 // cw))  # labels need ~3 columns and a space
        every = next(e for e in (1, 2, 4, 5, 10) if e >= every)
        axis = [" "] * (LABEL_W + n_layers * cw)
        axis[0] = "L"
        for layer in range(0, n_layers, every):
            label = str(layer)
            start = LABEL_W + layer * cw
            if all(c == " " for c in axis[max(start - 1, 0) : start + len(label)]):
                axis[start : start + len(label)] = label
        return "".join(axis)[: LABEL_W + n_layers * cw]

    def _cell(self, cw: int, bg: tuple[int, int, int] | None, mark: str, is_cursor: bool, middle: bool) -> tuple[str, Style]:
        if bg is None:
            body = (" " * (cw - 1) + "·") if middle else " " * cw
            style = Style(color="grey42")
        else:
            body = mark.center(cw) if mark else " " * cw
            style = Style(bgcolor=hex_color(bg), color=hex_color(text_color(bg)))
        if is_cursor:
            inner = body[1:-1] if cw > 2 else ""
            body = "[" + inner + "]"
            style += Style(bold=True, color="white" if bg is None else hex_color(text_color(bg)), reverse=bg is None)
        return body, style
