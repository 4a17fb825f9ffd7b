"""What runs inside a cluster worker: a Ray actor that runs steps with the local executor's handlers.

Each worker is a long-lived actor holding one slot of the cluster (a GPU, or some CPUs) and its
own model cache, so steps on the same model that the driver sends to the same worker load it
once. A handler gets the same ``RunContext`` as in a local run, except that:

* ``ctx.query`` and ``ctx.write`` are requests to the driver (through the run's
  :class:`~sparkql.runtime.execution.mailbox.Mailbox`), which alone opens the store: a
  generation's sample batches are written by the driver as they arrive, and a retried step
  asks the driver what is already there, exactly as a resumed local run asks the store;
* ``ctx.log`` and ``ctx.progress`` are events shipped to the driver's display (batched, a few
  per second at most);
* before the handler runs, the worker checks that it sees the model and dataset files the plan
  was made from (:mod:`sparkql.runtime.execution.node_files`).

The step's :class:`StepOutput` is the actor call's return value; the driver commits it.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time
from typing import Any

EVENT_FLUSH_S = 0.25
"""Progress and log events are shipped at most this often (and with every request)."""


class DriverLink:
    """The worker's end of the mailbox."""

    def __init__(self, mailbox_name: str, worker: int) -> None:
        self.mailbox_name = mailbox_name
        self._mailbox = None
        self.worker = worker
        self.events: list[tuple] = []
        self.last_flush = time.monotonic()

    @property
    def mailbox(self):
        if self._mailbox is None:
            import ray

            self._mailbox = ray.get_actor(self.mailbox_name)
        return self._mailbox

    def call(self, kind: str, payload: Any) -> Any:
        import ray

        events, self.events = self.events, []
        self.last_flush = time.monotonic()
        status, value = ray.get(self.mailbox.call.remote(self.worker, kind, payload, events))
        if status == "error":
            raise value
        return value

    def event(self, *ev) -> None:
        # consecutive advances of one progress bar travel as one
        if ev[0] == "advance" and self.events and self.events[-1][:2] == ev[:2]:
            self.events[-1] = ("advance", ev[1], self.events[-1][2] + ev[2])
        else:
            self.events.append(ev)
        if time.monotonic() - self.last_flush >= EVENT_FLUSH_S:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        if not self.events:
            return
        import ray

        events, self.events = self.events, []
        self.last_flush = time.monotonic()
        ref = self.mailbox.post.remote(self.worker, events)
        if wait:
            ray.get(ref)


class ProxyStore:
    """``ctx.store`` on a worker: reads and incremental writes are done by the driver."""

    def __init__(self, link: DriverLink) -> None:
        self.link = link

    def query(self, sql: str, params: list | tuple | None = None) -> list[tuple]:
        return self.link.call("query", (sql, list(params or [])))

    def query_arrow(self, sql: str, params: list | tuple | None = None):
        return self.link.call("query_arrow", (sql, list(params or [])))

    def write(self, tables: dict[str, Any]) -> dict[str, int]:
        return self.link.call("write", tables)


class ProxyTask:
    def __init__(self, link: DriverLink, task_id: int) -> None:
        self.link, self.id = link, task_id

    def advance(self, n: float = 1) -> None:
        if self.id is not None:
            self.link.event("advance", self.id, n)

    def update(self, **fields) -> None:
        if self.id is not None:
            self.link.event("update", self.id, fields)

    def close(self) -> None:
        if self.id is not None:
            self.link.event("close", self.id)
            self.id = None

    def __enter__(self) -> "ProxyTask":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ProxyProgress:
    """``ctx.progress`` on a worker: bars drawn by the driver, under this worker's line."""

    def __init__(self, link: DriverLink, live: bool) -> None:
        self.link = link
        self.live = live
        self.next_id = 0

    def task(self, description: str, total: float | None = None) -> ProxyTask:
        if not self.live:  # nothing is drawn: send nothing
            return ProxyTask(self.link, None)
        self.next_id += 1
        self.link.event("task", self.next_id, description, total)
        return ProxyTask(self.link, self.next_id)


class StepWorker:
    """One worker slot (wrapped with ``ray.remote`` by the driver, with the slot's resources)."""

    def __init__(self, index: int, mailbox_name: str, threads: int | None, max_models: int, live: bool) -> None:
        if threads:
            # before torch is imported in this process, so its thread pools are sized once
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = str(threads)
        self.index = index
        self.plan = None
        self.plan_id = None
        self.link = DriverLink(mailbox_name, index)
        self.threads = threads
        self.max_models = max(1, max_models)
        self.live = live
        self.models = None
        self.recent: list[str] = []
        """model ids by last use, oldest first"""
        self.checked: set[tuple[str, str]] = set()
        from sparkql.runtime.execution.node_files import path_map

        self.pairs = path_map()

    def hello(self) -> dict:
        import ray

        from sparkql import __version__

        ctx = ray.get_runtime_context()
        return {"index": self.index, "pid": os.getpid(), "host": socket.gethostname(),
                "node": ray.util.get_node_ip_address(), "node_id": ctx.get_node_id(),
                "version": __version__, "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def _models(self):
        if self.models is None:
            from sparkql.runtime.execution.executor import LazyModels

            self.models = LazyModels()
        return self.models

    def _make_room(self, needed: set[str], keep: set[str]) -> None:
        """Release models no later step needs, then the least recently used beyond ``max_models``."""
        models = self._models()
        loaded = models.loaded()
        for mid in loaded:
            if mid not in needed and mid not in keep:
                models.release(mid)
        loaded = [m for m in self.recent if m in set(models.loaded()) and m not in needed]
        while loaded and len(loaded) + len(needed) > self.max_models:
            models.release(loaded.pop(0))
        if "sparkql.runtime.generation.vllm_backend" in sys.modules and set(self.recent) - set(models.loaded()) - needed:
            # one vLLM engine per worker: drop engines of released models (rebuilt on demand); looked
            # up, not imported, so a worker that never generated with vLLM never loads it
            sys.modules["sparkql.runtime.generation.vllm_backend"].release_engines()
        live = set(models.loaded())
        self.recent = [m for m in self.recent if m in live or m in needed]

    def run(self, plan_box: list, step, handler: str, run_id: str, debug: bool, keep: list[str]) -> dict:
        """Run one step; returns its output for the driver to commit.

        ``plan_box`` is ``[ObjectRef of the Plan]``: boxed so that Ray does not fetch the plan for
        every step; the worker fetches it once per run (handlers look up other steps in it).
        """
        import datetime as dt

        import ray

        from sparkql.runtime.execution.context import RunContext, StepOutput
        from sparkql.runtime.execution.node_files import check_files, localize
        from sparkql.runtime.execution.executor import model_ids_of

        if self.plan_id != plan_box[0].hex():
            self.plan, self.plan_id = ray.get(plan_box[0]), plan_box[0].hex()
        node = f"{socket.gethostname()} ({self._node_ip()})"
        local = localize(step, self.pairs)
        plan_paths = {}
        if local is not step:
            from sparkql.runtime.execution.node_files import file_refs

            for (a, b) in zip(sum(file_refs(local), []), sum(file_refs(step), [])):
                plan_paths[a["path"]] = b["path"]
        check_files(local, node, plan_paths, self.checked)
        needed = model_ids_of(local)
        self._make_room(needed, set(keep))
        if self.threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(self.threads)
        module, fn = handler.split(":")
        run_fn = getattr(importlib.import_module(module), fn)
        ctx = RunContext(plan=self.plan, store=ProxyStore(self.link), models=self._models(), run_id=run_id,
                         progress=ProxyProgress(self.link, self.live),
                         log=lambda m: self.link.event("log", m), debug=debug)
        started = dt.datetime.now()
        t0 = time.monotonic()
        try:
            output = run_fn(local, ctx)
        finally:
            self.link.flush(wait=True)
        if not isinstance(output, StepOutput):
            raise TypeError(f"handler of {step.kind} returned {type(output).__name__}, not StepOutput")
        self.recent = [m for m in self.recent if m not in needed] + sorted(needed)
        return {"output": output, "seconds": time.monotonic() - t0, "started_at": started,
                "loaded": self._models().loaded()}

    @staticmethod
    def _node_ip() -> str:
        import ray

        return ray.util.get_node_ip_address()
