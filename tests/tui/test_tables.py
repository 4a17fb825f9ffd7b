"""Cell formatting: what a user reads in the tables and text panes."""

from __future__ import annotations

import datetime as dt

import pytest

from sparkql.tui.widgets.tables import fmt, printable


def test_control_characters_are_made_visible():
    raw = "a\x0eb\x15c\x7fd\x9be\nf\tg"
    assert printable(raw) == "a␎b␕c␡d\ufffde\nf\tg"
    assert str(fmt(raw)) == "a␎b␕c␡d\ufffde ⏎ f g"
    assert str(fmt("ckpt[step=100]")) == "ckpt[step=100]"  # not read as markup


def test_cell_formats():
    assert str(fmt(None)) == "—"
    assert str(fmt(True)) == "✓" and str(fmt(False)) == "·"
    assert str(fmt(0.123456)) == "0.1235" and str(fmt(0.0)) == "0" and str(fmt(12345.678)) == "12346" and str(fmt(12.34567)) == "12.35"
    assert str(fmt(0.00001234)) == "1.23e-05"
    assert str(fmt(dt.datetime(2026, 1, 2, 3, 4, 5))) == "2026-01-02 03:04"
    assert str(fmt(["L5H1", "L7H3"])) == "L5H1, L7H3"
    assert len(str(fmt("x" * 500))) == 60


@pytest.mark.anyio
async def test_a_filled_table_has_its_final_column_widths_before_any_idle():
    # Textual measures rows added to a DataTable on its next Idle and caches rows rendered before
    # that without their column widths: a table painted in between kept its header widths ("emerge"
    # under "origin" in one CI snapshot). set_rows fixes each column's width when the rows arrive.
    from textual.app import App
    from textual.widgets import DataTable

    from sparkql.tui.data import Table
    from sparkql.tui.widgets.tables import fill

    app = App()
    async with app.run_test(size=(60, 8)):
        table = DataTable()
        await app.mount(table)
        fill(table, Table(["layer", "origin", "note"], [(0, "emergent", "日本"), (12, "base", None)]))
        # no await: the widths a paint would use right now
        widths = [c.get_render_width(table) - 2 * table.cell_padding for c in table.columns.values()]
        assert widths == [len("layer"), len("emergent"), 4]  # "日本" is 4 cells wide
