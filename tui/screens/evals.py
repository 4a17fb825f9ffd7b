"""The evaluations tab: intact vs variants, with deltas and standard errors, and each eval's
samples by grading status (ok, no answer, truncated, timeout, error)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from sparkql.tui import data
from sparkql.tui.loader import LazyLoad, load
from sparkql.tui.messages import OpenDiff, OpenSamples
from sparkql.tui.widgets.tables import set_rows


def _delta(value: float | None) -> Text:
    if value is None:
        return Text("")
    style = "green" if value > 0 else "red" if value < 0 else "dim"
    return Text(f"{value:+.3f}", style=style)


def _controls(r, idx) -> Text:
    """A chosen intervention against its random controls: the share of controls its delta
    exceeds (in its own direction), of how many, and their mean delta: ``95% of 20 μ-0.120``."""
    n = r[idx["controls"]]
    if not n:
        return Text("")
    beats = r[idx["beats_controls"]] or 0.0
    style = "bold green" if beats >= 0.95 else "dim" if beats < 0.5 else ""
    return Text(f"{beats:.0%} of {n} μ{r[idx['control_mean']]:+.3f}", style=style)


def _statuses(r, idx) -> Text:
    """The eval's samples by grading status: answered, no answer, truncated, timeout, error.
    Timeouts and errors are counted wrong without saying anything about the model: red."""
    counts = [int(r[idx[s]] or 0) for s in data.STATUS_METRICS]
    text = Text("/".join(str(c) for c in counts[:3]) + "/")
    for j, c in enumerate(counts[3:]):
        text.append(str(c), style="bold red" if c else "")
        if j == 0:
            text.append("/")
    return text


class EvalsView(LazyLoad, Vertical):
    DEFAULT_CSS = """
    EvalsView #evals-table { height: 1fr; }
    EvalsView .caption { height: 1; color: $text-muted; }
    """

    BINDINGS = [
        Binding("enter", "samples", "Samples"),
        Binding("space", "mark", "Mark A"),
        Binding("d", "diff", "Diff A→row"),
    ]

    def __init__(self) -> None:
        super().__init__(id="evals-view")
        self.run_id = data.ALL_RUNS
        self.marked: str | None = None  # eval id marked as the "A" side of a diff
        self._row_evals: list[str] = []
        self._pending_focus: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("Enter: samples · Space: mark A · d: diff A (or intact) vs highlighted", classes="caption", id="evals-caption")
        yield DataTable(id="evals-table", cursor_type="row", zebra_stripes=True)

    def reload(self) -> None:
        run_id = self.run_id
        load(self, lambda con: data.eval_table(con, run_id), self._loaded, group="evals")

    def highlight(self, eval_id: str) -> None:
        """Put the cursor on the first row of ``eval_id`` (once loaded)."""
        self._pending_focus = eval_id
        self._apply_focus()

    def _apply_focus(self) -> None:
        if self._pending_focus in self._row_evals:
            self.query_one(DataTable).move_cursor(row=self._row_evals.index(self._pending_focus), animate=False)
            self._pending_focus = None

    def _loaded(self, t: data.Table) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        idx = {c: i for i, c in enumerate(t.columns)}
        with_controls = any(r[idx["controls"]] for r in t.rows)
        columns = ["", "dataset", "model", "variant", "metric", "value", "±stderr", "Δ vs intact",
                   *(["vs controls"] if with_controls else []), "ok/none/trunc/t-o/err"]
        self._row_evals = [r[idx["eval_id"]] for r in t.rows]
        rows = [
            (
                "A" if r[idx["eval_id"]] == self.marked else "",
                r[idx["dataset"]],
                r[idx["model"]],
                r[idx["variant"]],
                r[idx["metric"]],
                Text(f"{r[idx['value']]:.3f}") if r[idx["value"]] is not None else None,
                Text(f"±{r[idx['stderr']]:.3f}", style="dim") if r[idx["stderr"]] is not None else None,
                _delta(r[idx["delta"]]),
                *([_controls(r, idx)] if with_controls else []),
                _statuses(r, idx),
            )
            for r in t.rows
        ] or [("", "no evaluations in this store yet", *[""] * (len(columns) - 2))]
        set_rows(table, columns, rows, keys=[str(i) for i in range(len(rows))])
        if t.rows and keep < len(t.rows):
            table.move_cursor(row=keep, animate=False)
        self._apply_focus()

    def _current(self) -> str | None:
        row = self.query_one(DataTable).cursor_row
        return self._row_evals[row] if 0 <= row < len(self._row_evals) else None

    def action_samples(self) -> None:
        if (eval_id := self._current()) is not None:
            self.post_message(OpenSamples(eval_id))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_samples()

    def action_mark(self) -> None:
        eval_id = self._current()
        self.marked = None if eval_id == self.marked else eval_id
        self.reload()

    def action_diff(self) -> None:
        b = self._current()
        if b is None:
            return
        if self.marked is not None and self.marked != b:
            self.post_message(OpenDiff(self.marked, b))
            return
        # Without a mark: the highlighted variant against its intact model.
        load(self, lambda con: data.intact_counterpart(con, b), lambda a: self._diff_with(a, b), group="evals-diff")

    def _diff_with(self, a: str | None, b: str) -> None:
        if a is None:
            self.app.notify("no intact eval of this model and dataset: mark one with Space first", severity="warning")
        else:
            self.post_message(OpenDiff(a, b))
