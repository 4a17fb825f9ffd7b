"""Pilot tests: what a user does with the keyboard, and what they see."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from textual.widgets import DataTable, Static, TabbedContent, Tree

from sparkql.tui.app import SparkqlApp
from sparkql.tui.screens.diff import DiffScreen
from sparkql.tui.screens.head_detail import HeadDetailScreen
from sparkql.tui.screens.headmap import HeadMapView
from sparkql.tui.screens.help import HelpScreen
from sparkql.tui.screens.samples import SamplesScreen
from sparkql.tui.widgets.head_grid import HeadGrid

from . import fixtures as fx
from .pilot import make_app, settle

pytestmark = pytest.mark.anyio


def text_of(widget: Static) -> str:
    return str(widget.render())


def tree_line(tree: Tree, data) -> int:
    """The display line of the node carrying ``data``."""
    stack = [tree.root]
    while stack:
        node = stack.pop()
        if node.data == data:
            return node.line
        stack.extend(node.children)
    raise AssertionError(f"no node {data!r}")


async def test_runs_to_circuit_to_head_detail(fixture_store):
    app = make_app(fixture_store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        runs = app.query_one("#runs-table", DataTable)
        assert runs.row_count == 2 and app.focused is runs
        await pilot.press("down", "enter")  # the study's run; Enter moves to its contents
        await settle(pilot)
        tree = app.query_one("#contents", Tree)
        assert app.focused is tree
        for _ in range(tree_line(tree, ("circuit", fx.circuit_id(300)))):
            await pilot.press("down")
        await pilot.press("enter")
        await settle(pilot)
        assert app.query_one(TabbedContent).active == "heads"
        view = app.query_one(HeadMapView)
        assert view.head_map.source_id == fx.circuit_id(300)
        assert "ckpt[step=300]" in text_of(app.query_one("#map-title", Static))
        grid = app.query_one(HeadGrid)
        assert app.focused is grid
        # Walk to L4H3 (emergent at 200, survives) and open it.
        await pilot.press(*["right"] * 4, *["down"] * 3)
        assert grid.cursor == (4, 3)
        assert "L4H3: score 0.45 · emergent here · cohort 200" in text_of(app.query_one("#map-info", Static))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HeadDetailScreen)
        across = app.screen.query_one("#detail-across", DataTable)
        assert across.row_count == 6  # base + five checkpoints
        edges = app.screen.query_one("#detail-edges", DataTable)
        assert edges.row_count == 12 and "a4.h3" in str(edges.get_row_at(0))
        assert "L4H3" in text_of(app.screen.query_one("#detail-title", Static))
        await pilot.press("escape")
        assert app.screen.query_one(HeadGrid).cursor == (4, 3)


async def test_color_modes_and_checkpoint_stepping(fixture_store):
    app = make_app(fixture_store, tab="heads")  # `sparkql tui --tab heads`: the map comes with the store check
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.query_one(TabbedContent).active == "heads"
        grid = app.query_one(HeadGrid)
        assert app.focused is grid
        view = app.query_one(HeadMapView)
        assert view.head_map.source_id == fx.circuit_id(500)  # the latest checkpoint by default
        legend = app.query_one("#map-legend", Static)
        seen = []
        for _ in range(3):
            seen.append((grid.mode, text_of(legend)))
            await pilot.press("c")
        assert [m for m, _ in seen] == ["score", "cohort", "frequency"] and grid.mode == "score"
        assert "score 0..0.85" in seen[0][1]
        assert "from 100" in seen[1][1] and "from 500" in seen[1][1]
        assert "survives" in seen[2][1]
        await pilot.press("left_square_bracket", "left_square_bracket")
        await settle(pilot)
        assert view.head_map.source_id == fx.circuit_id(300)
        assert "3/5" in text_of(app.query_one("#map-title", Static))
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen) and app.focused is grid


async def test_sql_query_and_errors(fixture_store):
    before = fixture_store.read_bytes()
    app = make_app(fixture_store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        box = app.query_one("#sql-input")
        await pilot.press(*"SELECT 1")  # keys land in the box (the app's 1..5 and q do not fire)
        assert box.value == "SELECT 1" and app.query_one(TabbedContent).active == "sql"
        box.value = "SELECT layer, head FROM cohort_heads WHERE survives ORDER BY 1, 2"  # typing it all is slow
        await pilot.press("enter")
        await settle(pilot)
        result = app.query_one("#sql-result", DataTable)
        expected = sorted(h for h in fx.heads_at(fx.STEPS[-1]))
        assert [tuple(int(str(c)) for c in result.get_row_at(i)) for i in range(result.row_count)] == expected
        assert str(app.query_one("#sql-status", Static).render()).startswith(f"{len(expected)} rows")
        # Writes are refused: the store is opened read-only.
        box.value = "DELETE FROM circuits"
        await pilot.press("enter")
        await settle(pilot)
        status = app.query_one("#sql-status", Static)
        assert status.has_class("error") and "read-only: DELETE is not a query" in text_of(status)
        # So is the statement that replaced the whole store with a 4-byte file (issue 14).
        box.value = f"COPY (SELECT 1) TO '{fixture_store.resolve()}' (FORMAT csv)"
        await pilot.press("enter")
        await settle(pilot)
        assert status.has_class("error") and "read-only: COPY is not a query" in text_of(status)
        # Escape leaves the box, so the tab keys work again.
        await pilot.press("escape", "1")
        assert app.query_one(TabbedContent).active == "runs"
    assert fixture_store.read_bytes() == before


async def test_sql_ids_short_by_default_and_whole_on_ctrl_t(fixture_store):
    """Ids read as `sparkql sql` shows them (first 12 digits and an ellipsis); ctrl+t, listed in the
    footer, shows them whole as `--full-ids` does, from the box or the results, and back."""
    import hashlib

    key = hashlib.sha256(b"a").hexdigest()
    app = make_app(fixture_store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        app.query_one("#sql-input").value = "SELECT sha256('a') AS k, 'c-base' AS name, 3 AS n"
        await pilot.press("enter")
        await settle(pilot)
        result = app.query_one("#sql-result", DataTable)
        status = app.query_one("#sql-status", Static)
        shown = app.screen.active_bindings["ctrl+t"]
        assert shown.binding.description == "Full/short ids" and shown.binding.show
        assert [str(c) for c in result.get_row_at(0)] == [key[:12] + "…", "c-base", "3"]
        assert "ids by their first 12 digits (ctrl+t to switch)" in text_of(status)
        await pilot.press("ctrl+t")  # the query box has focus: a control key, not text
        await settle(pilot)
        assert app.query_one("#sql-input").value.startswith("SELECT sha256")
        assert [str(c) for c in result.get_row_at(0)] == [key, "c-base", "3"]
        assert "ids whole" in text_of(status) and text_of(status).startswith("1 rows")
        await pilot.press("escape", "ctrl+t")  # from the results too
        await settle(pilot)
        assert str(result.get_row_at(0)[0]) == key[:12] + "…"


async def test_evals_samples_and_diff(fixture_store):
    app = make_app(fixture_store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        table = app.query_one("#evals-table", DataTable)
        assert table.row_count == 6
        assert "-0.125" in str(table.get_row_at(1))  # accuracy: ablated minus intact
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SamplesScreen)
        assert app.screen.query_one("#problems", DataTable).row_count == len(fx.PROBLEMS)
        assert "\\boxed{10}" in text_of(app.screen.query_one("#sample-text", Static))
        await pilot.press("escape", "down", "d")  # the ablated row against its intact model
        await settle(pilot)
        assert isinstance(app.screen, DiffScreen)
        diff = app.screen.diff
        assert [r.problem_id for r in diff.newly_correct] == ["2"] and [r.problem_id for r in diff.newly_incorrect] == ["1"]
        assert app.screen.query_one("#diff-table", DataTable).row_count == 2
        a, b = text_of(app.screen.query_one("#text-a", Static)), text_of(app.screen.query_one("#text-b", Static))
        assert a.startswith("wrong") and "\\boxed{90}" in a
        assert b.startswith("correct") and "\\boxed{12}" in b
        await pilot.press("down")
        assert text_of(app.screen.query_one("#text-a", Static)).startswith("correct")
        # Mark the ablated eval as A, then diff it against the intact row: the reverse direction.
        await pilot.press("escape", "space")
        await settle(pilot)
        assert str(table.get_row_at(1)[0]) == "A"
        await pilot.press("up", "d")
        await settle(pilot)
        assert isinstance(app.screen, DiffScreen)
        assert (app.screen.a, app.screen.b) == (fx.EVAL_ABLATED, fx.EVAL_INTACT)
        assert [r.problem_id for r in app.screen.diff.newly_correct] == ["1"]


@pytest.mark.parametrize(
    "make, expected",
    [
        # (a missing file: test_snapshots.py::test_missing_store_message and test_data.py)
        (lambda p: fx.build_old_store(p / "old.duckdb"), "not a sparkql store"),
    ],
)
async def test_unusable_store_gets_a_message_not_a_crash(tmp_path, make, expected):
    app = make_app(make(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert expected in text_of(app.query_one("#problem", Static))
        assert not app.has_tabs
        await pilot.press("r", "2", "question_mark")  # keys do nothing harmful
        await settle(pilot)
    assert app.return_code in (None, 0)


HOLD_THEN_WRITE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(1.0)
con.execute("INSERT INTO runs (run_id, study_path, status, started_at) VALUES ('run-live', 'studies/live.spark', 'running', TIMESTAMP '2026-01-03 08:00:00')")
con.close()
print("released", flush=True)
"""


async def test_live_refresh_survives_a_writer(store_copy):
    app = make_app(store_copy, poll_seconds=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.query_one("#runs-table", DataTable).row_count == 2
        writer = subprocess.Popen([sys.executable, "-c", HOLD_THEN_WRITE, str(store_copy)], stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "locked"
            status = app.query_one("#status", Static)
            deadline = time.monotonic() + 10
            while "store busy" not in text_of(status) and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert "store busy" in text_of(status) and status.has_class("busy")
            assert writer.stdout.readline().strip() == "released"
        finally:
            writer.wait(timeout=20)
        deadline = time.monotonic() + 10
        while app.query_one("#runs-table", DataTable).row_count < 3 and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await settle(pilot)
        assert app.query_one("#runs-table", DataTable).row_count == 3
        # A poll that met the lock just before the release leaves the note until the next
        # successful poll (every 0.2 s here): the note must clear, not necessarily at once.
        status = app.query_one("#status", Static)
        deadline = time.monotonic() + 10
        while "store busy" in text_of(status) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert "store busy" not in text_of(status)


def test_cli_help_lists_tui():
    from click.testing import CliRunner

    from sparkql.cli.main import cli

    result = CliRunner().invoke(cli, ["tui", "--help"])
    assert result.exit_code == 0 and "DATABASE" in result.output and "--poll" in result.output


def test_layering_textual_and_torch(fixture_store):
    # The command module imports nothing heavy until it runs; the TUI's whole data path,
    # the diff through sparkql.runtime.grading.qualitative included, never imports torch.
    code = (
        "import sys, sparkql.cli.cmd_tui\n"
        "assert 'textual' not in sys.modules, 'textual at import time'\n"
        "import sparkql.tui.app; from sparkql.tui import data\n"
        f"with data.connect({str(fixture_store)!r}) as con: data.eval_diff(con, {fx.EVAL_INTACT!r}, {fx.EVAL_ABLATED!r})\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert SparkqlApp.TITLE == "sparkql"


async def test_a_valid_but_empty_store_shows_placeholders(tmp_path):
    from sparkql.store.api import connect

    db = tmp_path / "fresh.duckdb"
    connect(db, read_only=False).close()  # what a first `sparkql run` creates before any result
    app = make_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "no results yet" in text_of(app.query_one("#status", Static))
        for tab in "2345":
            await pilot.press(tab)
            await settle(pilot)
        assert "pick one in the runs tab" in text_of(app.query_one("#map-title", Static))
        assert "no evaluations" in str(app.query_one("#evals-table", DataTable).get_row_at(0))
        assert "no checkpoint series" in str(app.query_one("#cohort-table", DataTable).get_row_at(0))
        await pilot.press("escape", "2", "enter", "c")  # keys on an empty map do nothing harmful
        await settle(pilot)
        assert app.screen is app.screen_stack[0]


async def test_store_vanishing_under_the_app_is_reported(store_copy):
    app = make_app(store_copy, poll_seconds=0.1)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        assert app.has_tabs
        store_copy.unlink()
        deadline = time.monotonic() + 10
        while "no such file" not in text_of(app.query_one("#status", Static)) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert "no such file" in text_of(app.query_one("#status", Static))
        assert app.query_one("#runs-table", DataTable).row_count == 2  # what was on screen stays


async def test_tab_moves_between_the_head_detail_panels_at_80x24(fixture_store):
    """The strongest-edges panel is below the fold at 80x24: Tab reaches it and scrolls it into
    view, Shift+Tab goes back (the screen's binding once named an action screens lack)."""
    app = make_app(fixture_store, tab="heads")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HeadDetailScreen)
        order = ["detail-across", "detail-cohorts", "detail-sets", "detail-edges"]
        assert app.focused.id == order[0]
        for want in order[1:]:
            await pilot.press("tab")
            await pilot.pause()
            assert app.focused.id == want
        edges = app.screen.query_one("#detail-edges", DataTable)
        assert edges.row_count > 1
        await settle(pilot)
        # on screen: the panel's first rows lie inside the 24 lines, below the title rows
        assert 3 <= edges.region.y and edges.region.y + 2 <= 23, edges.region
        await pilot.press("shift+tab")
        await pilot.pause()
        assert app.focused.id == "detail-sets"


async def test_tab_moves_between_the_samples_panes(fixture_store):
    app = make_app(fixture_store, tab="evals")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SamplesScreen)
        first = app.focused
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused is not first and app.focused is not None
        await pilot.press("shift+tab")
        await pilot.pause()
        assert app.focused is first
