"""The line between cluster workers and the driver: a small asyncio Ray actor.

Only the driver opens the results store, but handlers read it (``ctx.query``: what a resumed
generation already has, the heads of a circuit) and a generation writes its samples batch by
batch (``ctx.write``). A worker cannot call the driver directly, so both go through this actor:
a worker's ``call`` waits here until the driver, which collects requests with ``take``, posts
the answer with ``answer``. Logs and progress events, which need no answer, ride along with the
next request or with a ``post``.

The actor holds no results: it only relays. If it died the run would fail (its calls raise), never
write twice.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any


class Mailbox:
    def __init__(self) -> None:
        self._inbox: list[tuple] = []
        self._arrived = asyncio.Event()
        self._waiting: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)

    async def call(self, worker: int, kind: str, payload: Any, events: list) -> tuple[str, Any]:
        """A worker's request; returns ("ok", value) or ("error", exception) once the driver answered."""
        req = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[req] = fut
        self._inbox.append((req, worker, kind, payload, events))
        self._arrived.set()
        try:
            return await fut
        finally:
            self._waiting.pop(req, None)

    def post(self, worker: int, events: list) -> None:
        """Events that need no answer (log lines, progress)."""
        self._inbox.append((None, worker, "events", None, events))
        self._arrived.set()

    async def take(self, timeout: float) -> list[tuple]:
        """The driver's side: everything that arrived, waiting up to ``timeout`` s for something."""
        if not self._inbox:
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        out, self._inbox = self._inbox, []
        self._arrived.clear()
        return out

    def answer(self, answers: list[tuple[int, tuple[str, Any]]]) -> None:
        for req, reply in answers:
            fut = self._waiting.get(req)
            if fut is not None and not fut.done():
                fut.set_result(reply)
