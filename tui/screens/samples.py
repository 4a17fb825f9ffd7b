"""Reading an eval's samples: problems, then each sample's prompt and completion."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from sparkql.tui import data
from sparkql.tui.loader import load
from sparkql.tui.widgets.tables import fill, printable


def _q(value: str | None) -> str:
    return "—" if value is None else repr(value)


class SamplesScreen(Screen[None]):
    DEFAULT_CSS = """
    SamplesScreen #samples-title { height: 1; text-style: bold; background: $panel; padding: 0 1; }
    SamplesScreen #problems { height: 2fr; min-height: 5; }
    SamplesScreen #samples-row { height: 3fr; }
    SamplesScreen #samples { width: 34; }
    SamplesScreen #sample-text-box { width: 1fr; border-left: tall $panel; padding: 0 1; }
    """

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back"), Binding("tab", "app.focus_next", "Next pane", show=False),
                Binding("shift+tab", "app.focus_previous", "Previous pane", show=False)]

    def __init__(self, eval_id: str) -> None:
        super().__init__()
        self.eval_id = eval_id
        self.problem_id: str | None = None
        self._samples: list[data.Sample] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(self.eval_id), id="samples-title")
        yield DataTable(id="problems", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="samples-row"):
            yield DataTable(id="samples", cursor_type="row")
            with VerticalScroll(id="sample-text-box"):
                yield Static("", id="sample-text")
        yield Footer()

    def on_mount(self) -> None:
        eid = self.eval_id
        load(self, lambda con: (data.eval_label(con, eid), data.problems(con, eid)), self._problems_loaded, group="problems")

    def _problems_loaded(self, result: tuple[str, data.Table]) -> None:
        label, problems = result
        self.query_one("#samples-title", Static).update(Text(f"samples of {label}"))
        table = self.query_one("#problems", DataTable)
        fill(table, problems, keys=[str(r[0]) for r in problems.rows])
        table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "problems" and event.row_key.value is not None:
            self.problem_id = event.row_key.value
            eid, pid = self.eval_id, self.problem_id
            load(self, lambda con: data.samples(con, eid, pid), self._samples_loaded, group="samples")
        elif event.data_table.id == "samples":
            self._show_sample(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "problems":
            self.query_one("#samples", DataTable).focus()

    def _samples_loaded(self, samples: list[data.Sample]) -> None:
        self._samples = samples
        fill(
            self.query_one("#samples", DataTable),
            data.Table(["#", "ok", "answer", "finish"], [(s.sample_idx, s.correct, s.extracted, s.finish_reason) for s in samples]),
        )
        self._show_sample(0)

    def _show_sample(self, i: int) -> None:
        if not 0 <= i < len(self._samples):
            self.query_one("#sample-text", Static).update("")
            return
        s = self._samples[i]
        verdict = ("correct", "green") if s.correct else ("wrong", "red")
        text = Text.assemble(
            (f"problem {self.problem_id} · sample {s.sample_idx} · ", "bold"), verdict,
            printable(f" · answer {_q(s.extracted)} · gold {_q(s.gold)} · {s.status or '—'} · {s.finish_reason or '—'}\n\n"),
            ("prompt\n", "bold underline"), (printable(s.prompt or ""), "dim"), "\n\n",
            ("completion\n", "bold underline"), printable(s.completion or ""),
        )
        self.query_one("#sample-text", Static).update(text)
