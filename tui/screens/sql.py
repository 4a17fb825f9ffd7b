"""The SQL tab: a read-only query box over the store, results in a table."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from sparkql.tui import data
from sparkql.tui.loader import load
from sparkql.tui.widgets.tables import fill

ROW_LIMIT = 1000
EXAMPLE = "SELECT set_name, layer, head, cohort, activation_frequency FROM cohort_heads ORDER BY cohort"


class SqlView(Vertical):
    DEFAULT_CSS = """
    SqlView #sql-input { height: 3; }
    SqlView #sql-status { height: 1; color: $text-muted; }
    SqlView #sql-status.error { color: $error; }
    SqlView #sql-result { height: 1fr; }
    """

    BINDINGS = [Binding("escape", "leave_input", "To results")]

    def __init__(self) -> None:
        super().__init__(id="sql-view")
        self.show_timing = True  # snapshot tests turn it off: timings differ run to run

    def action_leave_input(self) -> None:
        # Keys typed in the box are text; Escape hands them back to the app (tabs, help, quit).
        if self.query_one(Input).has_focus:
            self.query_one("#sql-result", DataTable).focus()
        else:
            self.query_one(Input).focus()

    def compose(self) -> ComposeResult:
        yield Input(placeholder=f"SQL, Enter to run (read-only) e.g. {EXAMPLE}", id="sql-input")
        yield Static("tables: runs steps models circuits nodes edges head_sets cohort_checkpoints cohort_heads rewards variants evals samples metrics", id="sql-status")
        yield DataTable(id="sql-result", zebra_stripes=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.run_query(event.value)

    def run_query(self, sql: str) -> None:
        started = time.perf_counter()
        status = self.query_one("#sql-status", Static)
        status.remove_class("error")
        status.update("running…")

        def done(t: data.Table) -> None:
            fill(self.query_one("#sql-result", DataTable), t)
            more = f" (first {ROW_LIMIT} shown)" if t.truncated else ""
            timing = f" · {time.perf_counter() - started:.3f} s" if self.show_timing else ""
            status.update(f"{len(t.rows)} rows{more}{timing}")

        def failed(message: str) -> None:
            status.add_class("error")
            status.update(Text(message.splitlines()[0] if message else "error"))

        load(self, lambda con: data.run_sql(con, sql, ROW_LIMIT), done, group="sql", failed=failed)
