"""The head map tab: one circuit's or head set's heads on a layer x head grid."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer, Vertical
from textual.widgets import Static

from sparkql.tui import data
from sparkql.tui.loader import LazyLoad, load
from sparkql.tui.messages import OpenHead
from sparkql.tui.widgets.head_grid import HeadGrid
from sparkql.tui.widgets.palette import BASE_RED, BLUE_DARK, BLUE_LIGHT, VIRIDIS, cohort_color, describe, hex_color, ramp


def default_head_map(con) -> data.HeadMap | None:
    """The map the tab opens on: the latest checkpoint's circuit."""
    circuit_id = data.default_circuit(con)
    return data.head_map(con, "circuit", circuit_id) if circuit_id else None


class HeadMapView(LazyLoad, Vertical):
    """Title line, the grid, a legend and a line about the head under the cursor."""

    DEFAULT_CSS = """
    HeadMapView #map-title { height: 1; text-style: bold; }
    HeadMapView #map-scroll { height: 1fr; }
    HeadMapView #map-legend { height: auto; max-height: 2; }
    HeadMapView #map-info { height: 1; color: $text-muted; }
    """

    BINDINGS = [
        Binding("c", "cycle_mode", "Color mode"),
        Binding("left_square_bracket", "sibling(-1)", "Prev ckpt"),
        Binding("right_square_bracket", "sibling(1)", "Next ckpt"),
    ]

    def __init__(self, prefetched: data.HeadMap | None = None) -> None:
        super().__init__(id="headmap-view")
        self.kind: str | None = None
        self.source_id: str | None = None
        self.head_map: data.HeadMap | None = None
        self._prefetched = prefetched

    def compose(self) -> ComposeResult:
        yield Static("no circuit yet: pick one in the runs tab", id="map-title")
        with ScrollableContainer(id="map-scroll"):
            yield HeadGrid(id="grid")
        yield Static("", id="map-legend")
        yield Static("", id="map-info")

    @property
    def grid(self) -> HeadGrid:
        return self.query_one(HeadGrid)

    def show(self, kind: str, source_id: str) -> None:
        self._stale = False
        self.kind, self.source_id = kind, source_id
        load(self, lambda con: data.head_map(con, kind, source_id), self._loaded, group="headmap")

    def reload(self) -> None:
        if self._prefetched is not None:
            head_map, self._prefetched = self._prefetched, None
            self._loaded(head_map)
        elif self.kind and self.source_id:
            self.show(self.kind, self.source_id)
        else:
            # Start on the latest checkpoint's circuit, in one connection, so the tab is never blank.
            load(self, default_head_map, self._loaded, group="headmap")

    def _loaded(self, head_map: data.HeadMap | None) -> None:
        if head_map is None:
            return
        if self.source_id is None:
            self.kind, self.source_id = head_map.kind, head_map.source_id
        if head_map.source_id != self.source_id:
            return
        self.head_map = head_map
        self.grid.set_map(head_map)
        self._update_title()
        self._update_legend()

    def _update_title(self) -> None:
        hm = self.head_map
        if hm is None:
            return
        pos = ""
        if hm.source_id in hm.siblings and len(hm.siblings) > 1:
            pos = f" · {hm.siblings.index(hm.source_id) + 1}/{len(hm.siblings)}"
        n_active = sum(1 for c in hm.cells.values() if c.active)
        self.query_one("#map-title", Static).update(
            Text.assemble((f" {self.grid.mode} ", "bold reverse"), " ", (hm.title, "bold"), f" · {n_active} heads{pos}")
        )

    def _update_legend(self) -> None:
        hm = self.head_map
        mode = self.grid.mode
        t = Text(no_wrap=False)

        def swatch(rgb: tuple[int, int, int], label: str) -> None:
            t.append("  ", style=f"on {hex_color(rgb)}")
            t.append(f" {label}  ")

        if mode == "score":
            for i in range(5):
                t.append(" ", style=f"on {hex_color(ramp(VIRIDIS, 0.15 + 0.85 * i / 4))}")
            t.append(f" score 0..{hm.max_score:.3g}  " if hm else " score  ")
            t.append("· not in circuit", style="dim")
        elif mode == "cohort":
            swatch(BASE_RED, "base")
            for step in hm.cohort_steps if hm else ():
                swatch(cohort_color(step, hm.cohort_steps), f"from {step}")
            if hm and not hm.cohort_steps:
                t.append("(not a checkpoint of a series: no cohorts)", style="dim")
        else:
            swatch(BASE_RED, "base, fading as it deactivates")
            t.append(" ", style=f"on {hex_color(BLUE_LIGHT)}")
            t.append(" ", style=f"on {hex_color(BLUE_DARK)}")
            t.append(" emergent, darker=more often  • survives")
        self.query_one("#map-legend", Static).update(t)

    def on_resize(self) -> None:
        # Cell sizes follow the space the grid has.
        self.grid.refresh(layout=True)

    def on_head_grid_moved(self, event: HeadGrid.Moved) -> None:
        if self.head_map is None:
            return
        cell = self.head_map.cell(event.layer, event.head)
        self.query_one("#map-info", Static).update(Text(f"{data.head_name(event.layer, event.head)}: {describe(cell)}"))

    def on_head_grid_chosen(self, event: HeadGrid.Chosen) -> None:
        hm = self.head_map
        if hm is None:
            return
        self.post_message(OpenHead(event.layer, event.head, hm.circuit_id, hm.dataset, hm.title))

    def action_cycle_mode(self) -> None:
        self.grid.action_cycle_mode()
        self._update_title()
        self._update_legend()

    def action_sibling(self, delta: int) -> None:
        hm = self.head_map
        if hm is None or hm.source_id not in hm.siblings:
            return
        i = hm.siblings.index(hm.source_id) + delta
        if 0 <= i < len(hm.siblings):
            self.show(hm.kind, hm.siblings[i])
