"""The evals tab's grading statuses and its lenient regradings (issue 13), data layer and screen."""

from __future__ import annotations

import duckdb
import pytest
from textual.widgets import DataTable

from sparkql.runtime.steps.grade import derived_eval_id
from sparkql.tui import data

from . import fixtures as fx
from .pilot import make_app, settle


def _add_lenient_regrade(db) -> str:
    """What `sparkql regrade --extract lenient` writes for the intact eval: a copy with new grades
    (here: one timeout and one error), its own metrics."""
    new = derived_eval_id(fx.EVAL_INTACT, "lenient")
    con = duckdb.connect(str(db))
    try:
        con.execute("INSERT INTO evals BY NAME SELECT * REPLACE (? AS eval_id, 'lenient' AS extract, "
                    "eval_id AS regraded_from) FROM evals WHERE eval_id = ?", [new, fx.EVAL_INTACT])
        con.execute("INSERT INTO samples BY NAME SELECT * REPLACE (? AS eval_id) FROM samples WHERE eval_id = ?",
                    [new, fx.EVAL_INTACT])
        con.execute("UPDATE samples SET status = 'timeout', correct = false WHERE eval_id = ? AND sample_idx = 3 "
                    "AND problem_id = (SELECT min(problem_id) FROM samples)", [new])
        con.execute("UPDATE samples SET status = 'error', correct = false WHERE eval_id = ? AND sample_idx = 2 "
                    "AND problem_id = (SELECT min(problem_id) FROM samples)", [new])
        con.execute("INSERT INTO metrics SELECT ? AS eval_id, metric, k, value + 0.1, stderr FROM metrics "
                    "WHERE eval_id = ?", [new, fx.EVAL_INTACT])
        con.execute("INSERT INTO metrics VALUES (?, 'timeout', NULL, 0.0625, NULL)", [new])
    finally:
        con.close()
    return new


def test_eval_table_counts_statuses_and_keeps_rules_apart(store_copy):
    new = _add_lenient_regrade(store_copy)
    con = duckdb.connect(str(store_copy), read_only=True)
    try:
        t = data.eval_table(con)
    finally:
        con.close()
    rows = [dict(zip(t.columns, r)) for r in t.rows]
    assert {r["metric"] for r in rows} == {"accuracy", "pass@1", "pass@4"}  # status shares are a column, not rows
    n = 4 * len(fx.PROBLEMS)
    intact = next(r for r in rows if r["eval_id"] == fx.EVAL_INTACT)
    assert (intact["ok"], intact["no_answer"], intact["truncated"], intact["timeout"], intact["error"]) == (n, 0, 0, 0, 0)
    lenient = [r for r in rows if r["eval_id"] == new]
    assert {r["variant"] for r in lenient} == {"intact @lenient"}
    assert (lenient[0]["ok"], lenient[0]["timeout"], lenient[0]["error"]) == (n - 2, 1, 1)
    assert all(r["delta"] is None for r in lenient)  # intact under its own rule: no delta
    ablated = [r for r in rows if r["eval_id"] == fx.EVAL_ABLATED]
    assert {r["metric"]: round(r["delta"], 3) for r in ablated}["accuracy"] == -0.125  # against strict intact


@pytest.mark.anyio
async def test_evals_tab_shows_statuses(store_copy):
    new = _add_lenient_regrade(store_copy)
    app = make_app(store_copy)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        table = app.query_one("#evals-table", DataTable)
        cells = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        n = 4 * len(fx.PROBLEMS)
        assert any(row[3] == "intact @lenient" and row[-1] == f"{n - 2}/0/0/1/1" for row in cells), cells
        assert any(row[3] == "intact" and row[-1] == f"{n}/0/0/0/0" for row in cells), cells
        assert new
