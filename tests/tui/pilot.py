"""Helpers for driving the app in tests: deterministic rendering and waiting for workers."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Input
from textual.worker import WorkerCancelled

from sparkql.tui.app import SparkqlApp


def make_app(db, **kwargs) -> SparkqlApp:
    app = SparkqlApp(db, poll_seconds=kwargs.pop("poll_seconds", 0), **kwargs)
    app.animation_level = "none"  # no tab-underline or scroll animations in snapshots
    return app


async def settle(pilot: Pilot, rounds: int = 4) -> None:
    """Let thread workers finish and their results reach the screen (they hop back via call_from_thread)."""
    app = pilot.app
    for _ in range(rounds):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # an exclusive worker replaced by a newer one: that one is awaited next round
        await pilot.pause(0.02)
    for box in app.screen.query(Input):
        box.cursor_blink = False  # a blinking cursor would make snapshots flaky
    await pilot.pause()
