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


async def settle(pilot: Pilot, timeout: float = 15.0) -> None:
    """Wait until thread workers have finished, their results have reached the screen (they hop
    back via call_from_thread) and the screen stops changing: two identical screenshots in a row
    with no worker running. A fixed number of short pauses was not enough on a loaded machine."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    last, stable = None, 0
    while time.monotonic() < deadline:
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # an exclusive worker replaced by a newer one: that one is awaited next round
        await pilot.pause(0.02)
        for box in app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor would make snapshots flaky
        shot = app.export_screenshot()
        # Pending counts as busy: on a loaded machine a thread worker can wait to start longer
        # than two polls, and its screen would look "stable" before its result arrived.
        busy = any(not w.is_finished for w in app.workers) or _tables_pending(app)
        stable = stable + 1 if (shot == last and not busy) else 0
        if stable >= 2:
            break
        last = shot
    await pilot.pause()


def _tables_pending(app) -> bool:
    """True while a DataTable has rows or cells whose column widths it has not measured yet.

    DataTable measures new rows on its next Idle event; until then columns keep their header
    widths, and a snapshot taken then shows truncated cells (seen once on a cold CI run). Such a
    table is prompted to go idle, and counts as busy. (Private state of the pinned Textual.)"""
    pending = False
    for table in app.screen.query(DataTable):
        if table._require_update_dimensions or table._new_rows or table._updated_cells:
            table.check_idle()
            pending = True
    return pending


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
