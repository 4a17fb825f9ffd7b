"""The SQL tab: a read-only query box over the store, results in a table.

Ids (64-hex content addresses) are shown by their first 12 digits, as `sparkql sql` shows them
(sparkql.store.ids); Ctrl+T shows them whole (`sparkql sql --full-ids`) and back, without
running the query again."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from sparkql.store.ids import SHORT_ID, is_id, short_id
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

    # ctrl+t, not a letter: it works while the query box has focus (letters are text there)
    BINDINGS = [Binding("escape", "leave_input", "To results"), Binding("ctrl+t", "toggle_ids", "Full/short ids")]

    def __init__(self) -> None:
        super().__init__(id="sql-view")
        self.show_timing = True  # snapshot tests turn it off: timings differ run to run
        self.full_ids = False
        self._result: data.Table | None = None
        self._summary = ""

    def action_toggle_ids(self) -> None:
        self.full_ids = not self.full_ids
        status = self.query_one("#sql-status", Static)
        if self._result is not None:
            self._show(self._result)
        elif not status.has_class("error"):  # no result yet: say what the next one will show
            status.update(Text(f"ids will be shown {self._ids_mode()} (ctrl+t to switch)"))

    def _ids_mode(self) -> str:
        return "whole" if self.full_ids else f"by their first {SHORT_ID} digits"

    def _show(self, t: data.Table) -> None:
        """Fill the table from ``t`` with ids whole or shortened, and say which in the status line."""
        self._result = t
        has_ids = False
        rows = []
        for r in t.rows:
            row = []
            for v in r:
                if is_id(v):
                    has_ids = True
                    # a Text: the table's formatter would cut a string past 60 characters
                    v = Text(v) if self.full_ids else Text(short_id(v))
                row.append(v)
            rows.append(tuple(row))
        fill(self.query_one("#sql-result", DataTable), data.Table(t.columns, rows, t.truncated))
        ids = f" · ids {self._ids_mode()} (ctrl+t to switch)" if has_ids else ""
        self.query_one("#sql-status", Static).update(Text(self._summary + ids))

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
            more = f" (first {ROW_LIMIT} shown)" if t.truncated else ""
            timing = f" · {time.perf_counter() - started:.3f} s" if self.show_timing else ""
            self._summary = f"{len(t.rows)} rows{more}{timing}"
            self._show(t)

        def failed(message: str) -> None:
            self._result = None
            status.add_class("error")
            status.update(Text(message.splitlines()[0] if message else "error"))

        load(self, lambda con: data.run_sql(con, sql, ROW_LIMIT), done, group="sql", failed=failed)
