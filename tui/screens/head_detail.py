"""One head in depth: its score in every checkpoint's circuit, its cohort, its sets, its strongest edges."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Sparkline, Static

from sparkql.tui import data
from sparkql.tui.loader import load
from sparkql.tui.widgets.tables import fill


class HeadDetailScreen(Screen[None]):
    """Four panels; a 2x2 grid on a wide terminal, stacked (scrolling) on a narrow one."""

    DEFAULT_CSS = """
    HeadDetailScreen #detail-title { height: 1; text-style: bold; background: $panel; padding: 0 1; }
    HeadDetailScreen #detail-spark-row { height: 2; padding: 0 1; }
    HeadDetailScreen #detail-spark { height: 1; }
    HeadDetailScreen #detail-grid { grid-size: 1; grid-rows: auto; overflow-y: auto; height: 1fr; }
    HeadDetailScreen #detail-grid.wide { grid-size: 2 2; grid-rows: 1fr 1fr; }
    HeadDetailScreen .panel { height: auto; border: round $panel; }
    HeadDetailScreen .panel:focus-within { border: round $accent; }  /* where Tab has moved to */
    HeadDetailScreen #detail-grid.wide .panel { height: 1fr; }
    HeadDetailScreen .panel DataTable { height: auto; max-height: 12; }
    HeadDetailScreen #detail-grid.wide .panel DataTable { max-height: 100%; height: 1fr; }
    """

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("tab", "app.focus_next", "Next panel", show=False),
        Binding("shift+tab", "app.focus_previous", "Previous panel", show=False),
    ]

    def __init__(self, layer: int, head: int, circuit_id: str | None, dataset: str | None, context: str) -> None:
        super().__init__()
        self.head_layer, self.head_index = layer, head
        self.circuit_id, self.dataset, self.context = circuit_id, dataset, context

    def compose(self) -> ComposeResult:
        yield Static(Text(f"{data.head_name(self.head_layer, self.head_index)} · {self.context}"), id="detail-title")
        with Vertical(id="detail-spark-row"):
            yield Static(f"score across checkpoints ({self.dataset or 'all datasets'}):", classes="caption")
            yield Sparkline([], id="detail-spark")
        with Grid(id="detail-grid"):
            for key, title in (
                ("across", "score in every circuit"),
                ("cohorts", "cohort · activation frequency"),
                ("sets", "head sets it belongs to"),
                ("edges", "strongest edges in this circuit"),
            ):
                with Vertical(classes="panel") as panel:
                    panel.border_title = title
                    yield DataTable(id=f"detail-{key}", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        layer, head, circuit_id, dataset = self.head_layer, self.head_index, self.circuit_id, self.dataset
        load(self, lambda con: data.head_detail(con, layer, head, circuit_id, dataset), self._loaded, group="head-detail")

    def on_resize(self) -> None:
        self.query_one("#detail-grid").set_class(self.size.width >= 120 and self.size.height >= 30, "wide")

    def _loaded(self, d: data.HeadDetail) -> None:
        fill(self.query_one("#detail-across", DataTable), d.across)
        fill(self.query_one("#detail-cohorts", DataTable), d.cohorts if d.cohorts.rows else data.Table(["cohort"], [("not an emergent head of any series",)]))
        fill(self.query_one("#detail-sets", DataTable), d.sets if d.sets.rows else data.Table(["set"], [("in no head set",)]))
        fill(self.query_one("#detail-edges", DataTable), d.edges if d.edges.rows else data.Table(["edges"], [("no edges stored for this circuit",)]))
        score_col = d.across.columns.index("score")
        self.query_one("#detail-spark", Sparkline).data = [float(r[score_col] or 0.0) for r in d.across.rows]
        self.query_one("#detail-across", DataTable).focus()
