"""math-verify in worker processes, each answer under a hard wall-clock deadline.

math-verify's own timeout is a SIGALRM, which cannot interrupt a long C-level computation (a
huge integer power inside sympy). Here the parent waits on each worker's pipe with a deadline;
a worker that misses it is killed and replaced, and its answer is marked ``timeout``.

Workers are fresh interpreters (``python -c``, talking over two pipes), not ``multiprocessing``
children: ``spawn`` and ``forkserver`` children re-import the caller's ``__main__``, so a script
without an ``if __name__ == "__main__"`` guard started its own grading again inside every
worker and failed; ``fork`` is unsafe once torch has started threads. A fresh interpreter
depends on neither. A worker reports ``ready`` once math-verify is imported, and only then gets
answers, so its start-up time never counts against an answer's deadline. Where no interpreter
can be started (an embedded Python without ``sys.executable``), answers are verified in this
process with math-verify's own timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Sequence

# The worker's code: it imports only this module (stdlib) and math-verify.
_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
         "from sparkql.runtime.grading.verify_pool import worker_main; worker_main(int(sys.argv[2]), int(sys.argv[3]))")


WARM_UP = [("\\frac12", "0.5"), ("(x+1)^2", "x^2+2x+1"), ("[0,1)", "[0,1)"), ("\\{1,2\\}", "2, 1"),
           ("90^\\circ", "\\frac{\\pi}{2}"), ("x=3", "3"), ("2\\sqrt{2}", "\\sqrt8"), ("25\\%", "0.25")]
"""Answers each worker verifies before it reports ready: the first use of sympy's polynomial,
set and trigonometric code imports and caches a lot (about 2 s on a loaded core), which must
not count against the first real answer's deadline."""


def _verifier():
    """(gold, pred) -> bool with math-verify, configured as the grader uses it: the gold wrapped
    in ``$...$``, the extracted answer in ``\\boxed{}``. Timeouts off (the caller's deadline)."""
    import logging

    logging.disable(logging.WARNING)  # math-verify logs every parse failure
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold_cfg = [LatexExtractionConfig(), ExprExtractionConfig()]
    pred_cfg = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    def check(gold: str, pred: str, timeout: int | None = None) -> bool:
        g = parse(f"${gold}$", extraction_config=gold_cfg, parsing_timeout=timeout)
        p = parse(f"\\boxed{{{pred}}}", extraction_config=pred_cfg, parsing_timeout=timeout)
        return bool(g) and bool(p) and bool(verify(g, p, timeout_seconds=timeout))

    return check


def worker_main(read_fd: int, write_fd: int) -> None:  # pragma: no cover - runs in a child process
    """Loop: receive (gold, pred), answer ("ok", bool) or ("error", message)."""
    conn_in, conn_out = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    check = _verifier()
    for gold, pred in WARM_UP:  # sympy imports much of itself on first use: not on an answer's clock
        try:
            check(gold, pred)
        except Exception:  # noqa: BLE001 - a warm-up failure is not the worker's failure
            pass
    conn_out.send(("ready", None))
    while True:
        try:
            msg = conn_in.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        try:
            conn_out.send(("ok", check(*msg)))
        except BaseException as e:  # noqa: BLE001 - report, keep serving
            conn_out.send(("error", f"{type(e).__name__}: {e}"[:500]))


@dataclass
class _Worker:
    proc: subprocess.Popen
    send: Connection
    recv: Connection
    stderr: object
    started: float
    ready: bool = False
    task: int | None = None
    deadline: float = 0.0

    def kill(self) -> None:
        for c in (self.send, self.recv):
            try:
                c.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            return self.stderr.read().decode(errors="replace").strip().splitlines()[-1][:300]
        except (OSError, IndexError, ValueError):
            return ""


@dataclass
class VerifyResult:
    status: str
    """ok | timeout | error"""
    correct: bool
    detail: str = ""
    seconds: float = 0.0
    """Wall time from handing the answer to a worker to its verdict (at most the deadline plus
    the pool's reaction time; never the time spent waiting for a worker to start)."""


@dataclass
class VerifyPool:
    """Worker processes reused across answers; use as a context manager (or call close())."""

    workers: int = 2
    timeout_s: float = 10.0
    start_timeout_s: float = 180.0
    """How long a worker may take to import math-verify (a loaded machine is slow)."""
    _pool: list[_Worker] = field(default_factory=list, repr=False)
    _in_process: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.workers = max(1, int(self.workers))

    def __enter__(self) -> "VerifyPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- processes

    def _spawn(self) -> _Worker | None:
        if not sys.executable:
            return None
        p_read, c_write = os.pipe()
        c_read, p_write = os.pipe()
        err = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps([p for p in sys.path if isinstance(p, str)]),
                 str(c_read), str(c_write)],
                pass_fds=(c_read, c_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                close_fds=True)
        except OSError:
            for fd in (p_read, c_write, c_read, p_write):
                os.close(fd)
            err.close()
            return None
        os.close(c_read)
        os.close(c_write)
        return _Worker(proc, Connection(p_write, readable=False), Connection(p_read, writable=False), err,
                       time.monotonic())

    def close(self) -> None:
        for w in self._pool:
            try:
                w.send.send(None)
            except OSError:
                pass
        for w in self._pool:
            try:
                w.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        self._pool = []

    # ----------------------------------------------------------------- verification

    def check(self, pairs: Sequence[tuple[str, str]]) -> list[VerifyResult]:
        """Verify each (gold, pred); never raises for a bad answer."""
        results: list[VerifyResult | None] = [None] * len(pairs)
        if not pairs:
            return []
        # One spare process beyond the workers when there is more work than workers: a worker
        # killed at its deadline is then replaced by one that is already up, and the answers
        # after a timeout never wait for an interpreter to start.
        want = min(self.workers, len(pairs)) + (1 if len(pairs) > self.workers else 0)
        while len(self._pool) < want:
            w = self._spawn()
            if w is None:
                return self._check_in_process(pairs)
            self._pool.append(w)
        todo = list(range(len(pairs)))[::-1]
        failed_starts = 0
        while todo or any(w.task is not None for w in self._pool):
            if not self._pool:  # no worker could be started again
                for i, r in zip(todo[::-1], self._check_in_process([pairs[i] for i in todo[::-1]])):
                    results[i] = r
                todo = []
                break
            busy = sum(w.task is not None for w in self._pool)
            for w in self._pool:  # hand out work to ready, idle workers, at most `workers` at once
                if todo and w.ready and w.task is None and busy < self.workers:
                    busy += 1
                    i = todo.pop()
                    try:
                        w.send.send(pairs[i])
                    except OSError:
                        todo.append(i)
                        busy -= 1
                        self._replace(w)
                        continue
                    w.task, w.deadline = i, time.monotonic() + self.timeout_s
            now = time.monotonic()
            deadlines = [w.deadline if w.ready else w.started + self.start_timeout_s for w in self._pool
                         if w.task is not None or not w.ready]
            if not deadlines:
                continue
            for conn in wait([w.recv for w in self._pool if w.task is not None or not w.ready],
                             timeout=max(0.0, min(deadlines) - now)):
                w = next(x for x in self._pool if x.recv is conn)
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):  # the worker died (out of memory, or at start-up)
                    if w.task is not None:
                        results[w.task] = VerifyResult("error", False, "math-verify worker died")
                    elif not w.ready:
                        failed_starts += 1
                        if failed_starts >= 3 * self.workers:
                            reason = w.stderr_tail() or f"exit code {w.proc.poll()}"
                            for i in todo:
                                results[i] = VerifyResult("error", False, f"math-verify worker cannot start: {reason}")
                            todo = []
                    self._replace(w)
                    continue
                if kind == "ready":
                    w.ready = True
                    failed_starts = 0
                    continue
                i, w.task = w.task, None
                if i is not None:
                    took = time.monotonic() - (w.deadline - self.timeout_s)
                    results[i] = (VerifyResult("ok", bool(value), seconds=took) if kind == "ok"
                                  else VerifyResult("error", False, str(value), took))
            now = time.monotonic()
            for w in list(self._pool):
                if w.task is not None and now >= w.deadline:
                    results[w.task] = VerifyResult("timeout", False, f"math-verify took over {self.timeout_s:g}s",
                                                   now - (w.deadline - self.timeout_s))
                    w.task = None
                    self._replace(w)
                elif not w.ready and now >= w.started + self.start_timeout_s:
                    failed_starts += 1
                    self._replace(w)
        return [r if r is not None else VerifyResult("error", False, "not verified") for r in results]

    def _replace(self, w: _Worker) -> None:
        w.task = None
        w.kill()
        fresh = self._spawn()
        idx = self._pool.index(w)
        if fresh is None:
            del self._pool[idx]
        else:
            self._pool[idx] = fresh

    def _check_in_process(self, pairs: Sequence[tuple[str, str]]) -> list[VerifyResult]:
        """No worker process could be started: math-verify here, with its own (SIGALRM) timeout
        where that works (the main thread), and none elsewhere."""
        import threading

        if self._in_process is None:
            self._in_process = _verifier()
        limit = max(1, int(self.timeout_s)) if threading.current_thread() is threading.main_thread() else None
        out = []
        for gold, pred in pairs:
            try:
                out.append(VerifyResult("ok", self._in_process(gold, pred, limit)))  # type: ignore[operator]
            except Exception as e:  # noqa: BLE001 - math-verify raises many kinds
                status = "timeout" if "imeout" in type(e).__name__ else "error"
                out.append(VerifyResult(status, False, f"{type(e).__name__}: {e}"[:500]))
        return out
