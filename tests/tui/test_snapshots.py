"""Screen snapshots (SVG, syrupy) of every screen on the fixture store.

Deterministic by construction: fixed terminal sizes, no animations, no cursor
blink, the store shown by file name only, no timings. Accept intended changes
with ``pytest tests/tui --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from syrupy.extensions.image import SVGImageSnapshotExtension

from sparkql.tui.screens.sql import SqlView

from . import fixtures as fx
from .pilot import make_app, screen_diff, settle

pytestmark = pytest.mark.anyio


@pytest.fixture
def svg_snapshot(snapshot):
    return snapshot.use_extension(SVGImageSnapshotExtension)


async def test_every_screen_at_80x24(fixture_store, svg_snapshot):
    app = make_app(fixture_store)
    shots: list[tuple[str, str]] = []
    async with app.run_test(size=(80, 24)) as pilot:

        async def shot(name: str, *keys: str) -> None:
            await pilot.press(*keys)
            await settle(pilot)
            shots.append((name, app.export_screenshot()))

        await shot("runs")
        await shot("heads-score", "2")
        await shot("heads-cohort", "left_square_bracket", "left_square_bracket", "right", "down", "down", "c")
        await shot("heads-frequency", "c")
        await shot("head-detail", "enter")
        await shot("cohorts", "escape", "3")
        await shot("evals", "4")
        await shot("samples", "down", "enter")
        await shot("diff", "escape", "d")
        app.query_one(SqlView).show_timing = False
        await pilot.press("escape", "5")
        # Short enough to fit the box, so the input never scrolls (where it scrolls to is timing-dependent).
        app.query_one("#sql-input").value = "SELECT layer, head, origin, cohort FROM cohort_heads ORDER BY 1, 2"
        await shot("sql", "enter")
        await shot("help", "escape", "question_mark")
    # Compare every screen before failing, and show how each changed screen's text differs.
    changed = [name for name, svg in shots if not svg == svg_snapshot(name=name)]
    if changed:
        stored = {name: _stored_svg(name) for name in changed}
        received = dict(shots)
        pytest.fail("screens changed:\n" + "\n\n".join(screen_diff(n, stored[n], received[n]) for n in changed))


async def test_large_terminal_head_map_and_detail(fixture_store, svg_snapshot):
    app = make_app(fixture_store)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("2", "c", "c")
        await settle(pilot)
        assert app.export_screenshot() == svg_snapshot(name="heads-160x48")
        await pilot.press("right", "right", "right", "right", "down", "down", "down", "enter")
        await settle(pilot)
        assert app.export_screenshot() == svg_snapshot(name="head-detail-160x48")


async def test_qwen_sized_map_fits_80x24(tmp_path, svg_snapshot):
    app = make_app(fx.build_wide_store(tmp_path / "wide.duckdb"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2", "end")
        await settle(pilot)
        assert app.export_screenshot() == svg_snapshot(name="heads-28x12")


async def test_missing_store_message(tmp_path, svg_snapshot):
    app = make_app(tmp_path / "missing.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "missing.duckdb: no such file" in str(app.query_one("#problem").render())
        assert app.export_screenshot() == svg_snapshot(name="missing-store")


def _stored_svg(name: str) -> str:
    path = Path(__file__).parent / "__snapshots__" / "test_snapshots" / f"test_every_screen_at_80x24[{name}].svg"
    return path.read_text() if path.exists() else ""


async def test_evals_tab_shows_an_ablation_against_its_random_controls(fixture_store, tmp_path, svg_snapshot):
    import shutil

    store = fx.add_controls(shutil.copy(fixture_store, tmp_path / "controls.duckdb"))
    app = make_app(store)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        from textual.widgets import DataTable

        table = app.query_one("#evals-table", DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert "vs controls" in labels
        cells = [str(c) for r in range(table.row_count) for c in table.get_row_at(r)]
        # the ablation's pass@1 delta (-0.125) beats 3 of the 5 control deltas (-0.05, -0.10, 0.0)
        assert "60% of 5 μ-0.150" in cells
        assert app.export_screenshot() == svg_snapshot(name="evals-controls-120x24")
