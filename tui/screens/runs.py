"""The runs tab: runs and studies, and per study its models, series, circuits, head sets and evals."""

from __future__ import annotations

import os

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static, Tree

from sparkql.tui import data
from sparkql.tui.loader import LazyLoad, load
from sparkql.tui.messages import OpenCohort, OpenEvals, OpenHeadMap, RunSelected
from sparkql.tui.widgets.tables import set_rows


class RunsView(LazyLoad, Vertical):
    """Left: runs (first row: every result in the store). Right: what the selected study holds."""

    DEFAULT_CSS = """
    RunsView #runs-row { height: 1fr; }
    RunsView #runs-table { width: 46; max-width: 55%; }
    RunsView #contents { width: 1fr; border-left: tall $panel; }
    RunsView .caption { height: 1; color: $text-muted; }
    """


    def __init__(self) -> None:
        super().__init__(id="runs-view")
        self.run_id = data.ALL_RUNS
        self._runs: list[data.RunRow] = []

    def compose(self) -> ComposeResult:
        yield Static("Runs · Enter opens what is highlighted on the right", classes="caption")
        with Horizontal(id="runs-row"):
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Tree("study", id="contents")

    def reload(self) -> None:
        load(self, data.list_runs, self._show_runs, group="runs")
        self._load_contents()

    def _show_runs(self, runs: list[data.RunRow]) -> None:
        self._runs = runs
        table = self.query_one("#runs-table", DataTable)
        keep = table.cursor_row
        rows, keys = [("(all results)", "", "", "")], [data.ALL_RUNS]
        for r in runs:
            started = r.started_at.strftime("%m-%d %H:%M") if hasattr(r.started_at, "strftime") else r.started_at
            study = os.path.basename(r.study_path) if r.study_path else r.run_id
            rows.append((study, r.status, started, r.n_steps))
            keys.append(r.run_id)
        set_rows(table, ["study", "status", "started", "steps"], rows, keys=keys)
        table.move_cursor(row=min(keep, len(runs)), animate=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "runs-table" or event.row_key.value is None:
            return
        if event.row_key.value != self.run_id:
            self.run_id = event.row_key.value
            self.post_message(RunSelected(self.run_id))
            self._load_contents()

    def _load_contents(self) -> None:
        run_id = self.run_id
        load(self, lambda con: data.study_contents(con, run_id), self._show_contents, group="contents")

    def _show_contents(self, c: data.StudyContents) -> None:
        tree = self.query_one("#contents", Tree)
        title = "all results" if self.run_id == data.ALL_RUNS else next(
            (r.study_path or r.run_id for r in self._runs if r.run_id == self.run_id), self.run_id
        )
        tree.clear()
        tree.root.set_label(Text(title))
        tree.root.expand()

        models = tree.root.add(f"models ({len(c.models)})", expand=len(c.models) <= 8)
        for m in c.models:
            dims = f" {m.n_layers}x{m.n_heads}" if m.n_layers else ""
            models.add_leaf(Text(f"{m.label}{dims}"))
        series = tree.root.add(f"checkpoint series ({len(c.series)})", expand=True)
        for s in c.series:
            series.add_leaf(Text(f"{s.series or '?'} · {s.set_name} · {s.n_checkpoints} ckpts {s.first_step}..{s.last_step}"), data=("cohort", s.cohort_key))
        circuits = tree.root.add(f"circuits ({len(c.circuits)})", expand=True)
        for ci in c.circuits:
            circuits.add_leaf(Text(f"{ci.dataset} on {ci.model_label} · {ci.n_heads_in_circuit or 0} heads"), data=("circuit", ci.circuit_id))
        sets = tree.root.add(f"head sets ({len(c.head_sets)})", expand=len(c.head_sets) <= 12)
        for h in c.head_sets:
            sets.add_leaf(Text(f"{h.set_name} on {h.model_label} · {h.n_heads} heads"), data=("set", f"{h.set_key}|{h.model_id}"))
        evals = tree.root.add(f"evals ({len(c.evals)})", expand=True)
        for e in c.evals:
            evals.add_leaf(Text(f"{e.dataset} · {e.model_label} · {e.variant} · n={e.n}"), data=("eval", e.eval_id))

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        target = event.node.data
        if not target:
            return
        kind, ident = target
        if kind in ("circuit", "set"):
            self.post_message(OpenHeadMap(kind, ident))
        elif kind == "cohort":
            self.post_message(OpenCohort(ident))
        elif kind == "eval":
            self.post_message(OpenEvals(ident))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # Enter on a run moves to its contents.
        if event.data_table.id == "runs-table":
            self.query_one("#contents", Tree).focus()
