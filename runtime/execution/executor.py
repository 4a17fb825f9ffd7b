"""The executor: runs a Plan's steps into the results store.

Guarantees (docs/store.md, issue 3):

* steps run in dependency order; a step whose key is already in ``steps`` is
  skipped (content addresses: the same work in another study is reused);
* a step's results and its completion mark are written in ONE transaction
  (:meth:`sparkql.store.api.Store.complete_step`), so a run killed at any
  moment (kill -9 included) loses at most the step in flight and a rerun
  resumes there, with no duplicated and no lost rows; Ctrl-C arriving during
  that commit is held until the commit ends;
* one run per store at a time (:class:`sparkql.store.lock.RunLock`), while the
  store file itself is opened only inside transactions so readers can work;
* models are loaded at most once per run (``ctx.models``) and released as
  soon as no later step refers to them, before the next step starts; vLLM engines
  too (their process exits and gives back its memory);
* a plan containing step kinds whose handler module is not in this build is
  refused up front with the list of those kinds (``partial=True`` runs what
  can run and reports the rest as not run).

The executor never imports the language (sparkql.lang): it consumes a Plan.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from sparkql import __version__
from sparkql.errors import SparkError
from sparkql.plan.steps import Plan, Step
from sparkql.runtime.execution.context import RunContext, StepOutput
from sparkql.runtime.execution.handlers import executable_kinds, handler_for
from sparkql.runtime.execution.progress import Progress
from sparkql.store.api import Store, completed_keys
from sparkql.store.lock import RunLock


@dataclass
class StepRecord:
    key: str
    kind: str
    label: str
    status: str
    """done | cached | failed | interrupted | unavailable (no handler) | blocked (a dep did not run)
    | pending (dry run: would run) | not run (after a failure or interrupt)."""
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    """Cluster runs: the worker that ran the step (``w1 (host ip node ..., pid ...)``)."""
    overhead: float | None = None
    """Cluster runs: seconds from sending the step to a worker to its result reaching the driver,
    beyond the handler's own ``seconds`` (scheduling, file checks, moving the result)."""


@dataclass
class RunSummary:
    db: str
    study: str
    status: str
    """done | partial | failed | interrupted | dry-run"""
    run_id: str = ""
    seconds: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for s in self.steps if s.status == status)

    @property
    def n_done(self) -> int:
        return self.count("done")

    @property
    def n_cached(self) -> int:
        return self.count("cached")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _vllm_backend():
    """The vLLM backend module when some step has imported it (never imported just to ask)."""
    import sys

    return sys.modules.get("sparkql.runtime.generation.vllm_backend")


class LazyModels:
    """A ``ModelCache`` created on first use, so plans without model-loading steps never import torch."""

    def __init__(self) -> None:
        self._cache = None

    def _get_cache(self):
        if self._cache is None:
            from sparkql.runtime.models.loading import ModelCache

            self._cache = ModelCache()
        return self._cache

    def get(self, *args, **kwargs):
        return self._get_cache().get(*args, **kwargs)

    def release(self, model_id: str) -> None:
        if self._cache is not None:
            self._cache.release(model_id)
        vllm = _vllm_backend()
        if vllm is not None:
            vllm.release_engines(model_id)

    def loaded(self) -> list[str]:
        """Models held for this run: loaded transformers models and running vLLM engines (an engine
        holds its model's weights and KV cache, in another process)."""
        held = set() if self._cache is None else set(self._cache.loaded())
        vllm = _vllm_backend()
        if vllm is not None:
            held |= vllm.engine_models()
        return sorted(held)

    def __getattr__(self, name):  # anything else ModelCache offers
        return getattr(self._get_cache(), name)


def toposort(plan: Plan) -> list[Step]:
    """The steps in dependency order, keeping the plan's order where it is free (stable Kahn)."""
    by_key = plan.by_key()
    for s in plan.steps:
        for d in s.deps:
            if d not in by_key:
                raise SparkError(f"step {s.label} depends on {d[:12]}, which is not in the plan",
                                 hint="this is a compiler bug; please report it with the study")
    order: list[Step] = []
    placed: set[str] = set()
    remaining = list(plan.steps)
    while remaining:
        progressed = False
        rest = []
        for s in remaining:
            if all(d in placed for d in s.deps):
                order.append(s)
                placed.add(s.key)
                progressed = True
            else:
                rest.append(s)
        if not progressed:
            raise SparkError("the plan has a dependency cycle among: " + ", ".join(s.label for s in rest[:5]),
                             hint="this is a compiler bug; please report it with the study")
        remaining = rest
    return order


# Kinds that never load weights: their model references are bookkeeping (a set's model, a
# cohort's series), so they do not keep a loaded model alive. Any other kind (circuit,
# generate, intervene, or a kind added later) keeps every model its spec refers to.
NO_WEIGHTS = {"load_model", "diff", "heads", "fold_heads", "cohort", "grade", "aggregate"}


def model_ids_of(step: Step) -> set[str]:
    """The models whose weights a step may use (walks the spec for model references)."""
    out: set[str] = set()
    if step.kind in NO_WEIGHTS:
        return out

    def walk(o) -> None:
        if isinstance(o, dict):
            if "model_id" in o and "fingerprint" in o:
                out.add(o["model_id"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(step.spec.model_dump(mode="json"))
    return out


@contextlib.contextmanager
def _hold_interrupts():
    """Defer SIGINT/SIGTERM while a step commits, then deliver them as KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if got:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Make SIGTERM stop a run like Ctrl-C (clean: the step in flight is not written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _fmt_summary(summary: dict[str, Any], rows: dict[str, int]) -> str:
    parts = [f"{k}={v}" for k, v in summary.items() if v is not None and v != ""]
    if not parts:
        parts = [f"{t}+{n}" for t, n in rows.items() if n]
    # Whole, however long: a cut summary hid the very numbers (pass@k, deltas) the line is for.
    return "  ".join(parts)


def execute(
    plan: Plan,
    db: str | Path,
    *,
    study_text: str | None = None,
    dry_run: bool = False,
    exec_overrides: dict[str, Any] | None = None,
    partial: bool = False,
    console: Console | None = None,
    live: bool | None = None,
    debug: bool = False,
    on_step_done: Callable[[StepRecord], None] | None = None,
    log_file: str | Path | None = None,
    cluster: Any = None,
) -> RunSummary:
    """Run ``plan`` into the DuckDB file ``db``; returns what happened, step by step.

    ``exec_overrides`` replaces fields of every step's ExecOptions (device, backend,
    memory, batch_size): not part of the keys, so cached results stay valid.
    ``log_file`` also appends the per-step log lines (with timestamps) to that file.
    ``cluster`` (a :class:`sparkql.runtime.execution.cluster.ClusterOptions`) runs the steps on a
    Ray cluster instead of in this process, with the same store contract.
    Raises SparkError for user-fixable problems and KeyboardInterrupt after a clean stop.
    """
    console = console or Console(highlight=False)
    db = Path(db)
    steps = toposort(plan)
    if exec_overrides:
        clean = {k: v for k, v in exec_overrides.items() if v is not None}
        if clean:
            steps = [s.model_copy(update={"exec": s.exec.model_copy(update=clean)}) for s in steps]
    done_before = completed_keys(db)
    available = executable_kinds()
    summary = RunSummary(db=str(db), study=plan.study, status="dry-run" if dry_run else "running")

    # What cannot run: kinds without a handler, and everything downstream of them.
    cannot: dict[str, str] = {}
    for s in steps:
        if s.key in done_before:
            continue
        if s.kind not in available:
            cannot[s.key] = "unavailable"
        elif any(d in cannot for d in s.deps):
            cannot[s.key] = "blocked"

    if dry_run:
        for s in steps:
            status = "cached" if s.key in done_before else cannot.get(s.key, "pending")
            summary.steps.append(StepRecord(s.key, s.kind, s.label, status))
        return summary

    missing_kinds = sorted({s.kind for s in steps if cannot.get(s.key) == "unavailable"})
    if missing_kinds and not partial:
        n_of = {k: sum(1 for s in steps if s.kind == k and s.key not in done_before) for k in missing_kinds}
        counts = ", ".join(f"{k} ({n} step{'s' if n != 1 else ''})" for k, n in n_of.items())
        raise SparkError(
            f"this build of sparkql cannot run step kind(s): {counts}",
            hint="their handler modules are not installed yet; `sparkql run --partial` runs every step that can "
            "run now and lists the rest",
        )

    if cluster is not None:
        from sparkql.runtime.execution.cluster import run_on_cluster

        return run_on_cluster(plan, db, steps, done_before, cannot, summary, cluster, study_text=study_text,
                              console=console, live=live, debug=debug, on_step_done=on_step_done, log_file=log_file)

    todo = [s for s in steps if s.key not in done_before]
    records: dict[str, StepRecord] = {}
    for s in steps:
        if s.key in done_before:
            records[s.key] = StepRecord(s.key, s.kind, s.label, "cached")
    # needed_after[i]: models some step after todo[i] refers to
    needed_after: list[set[str]] = [set() for _ in todo]
    acc: set[str] = set()
    for i in range(len(todo) - 1, -1, -1):
        needed_after[i] = set(acc)
        acc |= model_ids_of(todo[i])

    t_run = time.monotonic()
    with RunLock(db, study=plan.study) as lock:
        store = Store(db)
        run_id = store.start_run(
            study_path=plan.study, study_text=study_text, n_steps=len(steps), n_cached=len(done_before & set(s.key for s in steps)),
            version=__version__,
        )
        lock.run_id = run_id
        summary.run_id = run_id
        models = LazyModels()
        runnable = [s for s in todo if s.key not in cannot]
        n_done = 0
        current: Step | None = None
        progress = Progress(console, runnable, live=live, log_file=str(log_file) if log_file else None)
        progress.log(f"run {run_id}: {plan.study} -> {db}: {len(runnable)} step(s) to run, "
                     f"{len(records)} cached" + (f", {len(cannot)} cannot run in this build" if cannot else ""))
        ctx = RunContext(plan=plan, store=store, models=models, run_id=run_id, progress=progress,
                         log=lambda m: progress.log("    " + m), debug=debug)
        status, error = "done", None
        try:
            with _sigterm_as_interrupt(), progress:
                position = 0
                for i, step in enumerate(todo):
                    if step.key in cannot:
                        records[step.key] = StepRecord(step.key, step.kind, step.label, cannot[step.key])
                        continue
                    position += 1
                    current = step
                    progress.start_step(step, position)
                    started_wall = _now()
                    t0 = time.monotonic()
                    output = handler_for(step.kind)(step, ctx)
                    if not isinstance(output, StepOutput):
                        raise TypeError(f"handler of {step.kind} returned {type(output).__name__}, not StepOutput")
                    seconds = time.monotonic() - t0
                    with _hold_interrupts():
                        rows = store.complete_step(step, output, run_id=run_id, started_at=started_wall, seconds=seconds)
                        n_done += 1
                        rec = StepRecord(step.key, step.kind, step.label, "done", seconds, dict(output.summary or {}), rows)
                        records[step.key] = rec
                        current = None
                    progress.finish_step(step)
                    progress.log(f"✓ [{position}/{len(runnable)}] {step.label}  {seconds:.1f} s  {_fmt_summary(rec.summary, rows)}")
                    if on_step_done is not None:
                        on_step_done(rec)
                    for mid in models.loaded():
                        if mid not in needed_after[i]:
                            models.release(mid)
        except KeyboardInterrupt:
            status, error = "interrupted", "interrupted" + (f" during {current.label}" if current else "")
            if current is not None:
                records[current.key] = StepRecord(current.key, current.kind, current.label, "interrupted")
            raise
        except BaseException as e:
            status = "failed"
            error = f"{type(e).__name__}: {getattr(e, 'message', None) or e}"
            if isinstance(e, SparkError) and current is not None:
                # point the user at the statement that produced the failing step
                e.message = f"{current.label}: {e.message}"
                if e.span is None and current.span is not None:
                    e.span = current.span
                    e.file, e.source = None, None
                    e.with_source(plan.study, study_text)
            if current is not None:
                records[current.key] = StepRecord(current.key, current.kind, current.label, "failed", error=error)
                progress.log(f"✗ {current.label}: {error}")
            raise
        finally:
            if status == "done" and cannot:
                status = "partial"
            summary.status = status
            summary.seconds = time.monotonic() - t_run
            summary.steps = [records.get(s.key) or StepRecord(s.key, s.kind, s.label, "not run") for s in steps]
            for mid in models.loaded():
                models.release(mid)
            with contextlib.suppress(Exception):
                with _hold_interrupts():
                    store.finish_run(run_id, status, n_done, error)
            store.close()
            if status == "interrupted":
                progress.log(
                    f"interrupted: {n_done} step(s) saved this run; rerun the same command to resume"
                    + (f" at {current.label}" if current else "")
                )
            elif status != "failed":
                progress.log(f"run {run_id} {status}: {n_done} step(s) in {summary.seconds:.1f} s")
    return summary


def _now():
    import datetime as dt

    return dt.datetime.now()
