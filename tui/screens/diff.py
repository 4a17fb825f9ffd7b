"""Newly correct and newly incorrect problems between two evals, completions side by side (paper A.4, A.5)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from sparkql.tui import data
from sparkql.tui.loader import load
from sparkql.tui.widgets.tables import printable, set_rows


class DiffScreen(Screen[None]):
    DEFAULT_CSS = """
    DiffScreen #diff-title { height: auto; max-height: 3; background: $panel; padding: 0 1; }
    DiffScreen #diff-table { height: 2fr; min-height: 4; }
    DiffScreen #diff-sides { height: 3fr; }
    DiffScreen .side { width: 1fr; border: round $panel; padding: 0 1; }
    """

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back"), Binding("tab", "app.focus_next", "Next pane", show=False),
                Binding("shift+tab", "app.focus_previous", "Previous pane", show=False)]

    def __init__(self, a: str, b: str) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.diff: data.EvalDiff | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"{self.a} → {self.b}"), id="diff-title")
        yield DataTable(id="diff-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="diff-sides"):
            with VerticalScroll(classes="side", id="side-a"):
                yield Static("", id="text-a")
            with VerticalScroll(classes="side", id="side-b"):
                yield Static("", id="text-b")
        yield Footer()

    def on_mount(self) -> None:
        a, b = self.a, self.b
        load(self, lambda con: data.eval_diff(con, a, b), self._loaded, group="diff")

    def _loaded(self, diff: data.EvalDiff) -> None:
        self.diff = diff
        self.query_one("#diff-title", Static).update(
            Text.assemble(
                ("A ", "bold"), diff.label_a, ("  →  B ", "bold"), diff.label_b, "\n",
                (f"{len(diff.newly_correct)} newly correct", "green"), " · ",
                (f"{len(diff.newly_incorrect)} newly incorrect", "red"),
                " (solved: a sample is right)",
            )
        )
        self.query_one("#side-a").border_title = "A"
        self.query_one("#side-b").border_title = "B"
        table = self.query_one("#diff-table", DataTable)
        rows = [
            (Text(r.change, style="green" if r.change == "newly correct" else "red"),
             r.problem_id, f"{r.acc_a:.2f}", f"{r.acc_b:.2f}", r.gold or "", r.extracted_a or "", r.extracted_b or "")
            for r in diff.rows
        ] or [("no change", "", "", "", "", "", "")]
        set_rows(table, ["change", "problem", "acc A", "acc B", "gold", "A says", "B says"], rows,
                 keys=[str(i) for i in range(len(rows))])
        if not diff.rows:
            self._show(None)
        table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.diff is not None and 0 <= event.cursor_row < len(self.diff.rows):
            self._show(self.diff.rows[event.cursor_row])

    def _show(self, row: data.DiffRow | None) -> None:
        if row is None:
            self.query_one("#text-a", Static).update("")
            self.query_one("#text-b", Static).update("")
            return
        a_ok = row.change == "newly incorrect"
        self.query_one("#text-a", Static).update(self._side(row.completion_a, row.extracted_a, a_ok))
        self.query_one("#text-b", Static).update(self._side(row.completion_b, row.extracted_b, not a_ok))

    @staticmethod
    def _side(completion: str | None, extracted: str | None, ok: bool) -> Text:
        return Text.assemble(
            ("correct" if ok else "wrong", "green bold" if ok else "red bold"),
            printable(f" · answer {'—' if extracted is None else repr(extracted)}\n\n"),
            printable(completion or ""),
        )
