"""Helpers for driving the app in tests: deterministic rendering and waiting for workers."""

from __future__ import annotations

import difflib
import html
import re
import time

from textual.pilot import Pilot
from textual.widgets import DataTable, Input
from textual.worker import WorkerCancelled

from sparkql.tui.app import SparkqlApp


def make_app(db, **kwargs) -> SparkqlApp:
    app = SparkqlApp(db, poll_seconds=kwargs.pop("poll_seconds", 0), **kwargs)
    app.animation_level = "none"  # no tab-underline or scroll animations in snapshots
    return app


async def settle(pilot: Pilot, timeout: float = 60.0) -> None:
    """Wait until thread workers have finished, their results have reached the screen (they hop
    back via call_from_thread) and the screen stops changing: two identical screenshots in a row
    with nothing pending. A fixed number of short pauses was not enough on a loaded machine.

    "Pending" covers every lazy step between a widget's data and its pixels: a worker not yet
    finished, a DataTable that has not measured its new rows (it does so on its next Idle), and a
    repaint or layout that a widget or the screen has asked for but the compositor has not done.
    (One CI run snapshotted a table whose rows had arrived but whose columns still had their
    header widths.) A screen that does not settle in `timeout` fails the test and names what
    stayed pending, rather than snapshotting a half-drawn screen."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    last, stable, why = None, 0, []
    while time.monotonic() < deadline:
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # an exclusive worker replaced by a newer one: that one is awaited next round
        await pilot.pause(0.02)
        for box in app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor would make snapshots flaky
        why = _pending(app)
        if why:
            await pilot.pause()  # let DataTables measure and the screen repaint (pause forces a screen update)
            stable = 0
            last = None
            continue
        shot = app.export_screenshot()
        stable = stable + 1 if shot == last else 0
        if stable >= 2:
            await pilot.pause()
            return
        last = shot
    raise AssertionError(f"the screen did not settle in {timeout:.0f} s; still pending: {', '.join(why) or 'the screenshot kept changing'}")


def _pending(app) -> list[str]:
    """What still stands between the app's data and a final screenshot (empty when nothing does).

    Reads private state of the pinned Textual (constraints.txt): DataTable measures new rows and
    cells on its next Idle event, and until then its columns keep their header widths; widgets and
    the screen flag a requested repaint or layout until the compositor has done it."""
    why: list[str] = []
    # The periodic store poll (poll_seconds > 0) starts a worker every few tenths of a second for
    # as long as the app runs; on an unchanged store it changes nothing on screen, so it does not
    # count (a poll that does change the screen keeps the screenshots from repeating).
    if any(not w.is_finished and w.group != "poll" for w in app.workers):
        why.append("a worker")
    screen = app.screen
    for table in screen.query(DataTable):
        if table._require_update_dimensions or table._new_rows or table._updated_cells:
            table.check_idle()
            why.append(f"DataTable #{table.id} not measured")
    if screen._layout_required or screen._repaint_required or screen._dirty_widgets:
        why.append("a screen repaint or layout")
    for widget in screen.walk_children():
        if widget.display and (widget._layout_required or widget._repaint_required):
            why.append(f"{type(widget).__name__} #{widget.id} repaint")
    return why


def svg_text(svg: str | bytes) -> list[str]:
    """The text lines of an exported screenshot, to show what changed when a snapshot differs."""
    if isinstance(svg, bytes):
        svg = svg.decode()
    lines: dict[int, str] = {}
    for m in re.finditer(r'clip-path="url\(#terminal-\d+-line-(\d+)\)">(.*?)</text>', svg):
        row = int(m.group(1))
        lines[row] = lines.get(row, "") + html.unescape(m.group(2)).replace("\xa0", " ")
    return [lines.get(i, "").rstrip() for i in range(max(lines, default=-1) + 1)]


def screen_diff(name: str, expected: str | bytes, received: str | bytes) -> str:
    """A unified diff of the text of two screenshots (colours aside)."""
    diff = difflib.unified_diff(svg_text(expected), svg_text(received), f"{name} (snapshot)", f"{name} (now)", lineterm="")
    return "\n".join(diff) or f"{name}: same text, different styling"
