"""Running a plan over a Ray cluster: ``sparkql run STUDY --cluster ADDRESS``.

The driver (the process that runs ``sparkql run``) keeps today's store contract and is the only
process that opens the store:

* independent steps run at the same time on worker actors (:mod:`.cluster_worker`), one per
  slot of the cluster (a GPU each on GPU clusters, CPUs otherwise); a step starts as soon as
  the steps it depends on are committed;
* a step goes preferably to a worker that already holds its model (each worker keeps a model
  cache, as a local run does), else to the idle worker holding the fewest models;
* a step's rows and its completion mark are written by the driver in one transaction when the
  worker returns them; a generation's sample batches are written by the driver as they arrive
  (idempotent inserts), so a lost worker costs at most the batch in flight and a retried or
  resumed generation asks for what is already stored;
* a worker that dies mid-step (its process killed, its node lost) is restarted by Ray and the
  step is run again, up to ``retries`` times, then the run fails with a message naming the
  worker; nothing of the lost attempt was committed, so nothing is written twice;
* a step that fails stops new steps from starting; the steps already running finish and are
  committed, then the error is raised;
* Ctrl-C (or SIGTERM) kills the workers and leaves the store as it was after its last commit.

The execution options of the cluster (address, resources per worker) are never part of a step's
key: results computed on a cluster are reused by a local run and the other way round.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from sparkql import __version__
from sparkql.errors import SparkError
from sparkql.plan.steps import Plan, Step
from sparkql.plan.waves import plan_waves, step_weight

ADDRESS_ENV = "SPARKQL_CLUSTER"
TAKE_S = 1.0
"""How long one mailbox poll waits for worker requests (results wake the driver at once)."""
RESTART_TIMEOUT_S = 300.0
"""How long the driver waits for lost workers to come back before giving up."""


@dataclass
class ClusterOptions:
    """How to use the cluster. None of this changes what a step computes."""

    address: str = "local"
    """``local`` (start Ray here), ``auto`` (join the cluster `ray start` runs on this machine),
    ``ray://HOST:PORT`` (Ray Client) or ``HOST:PORT`` (a cluster's GCS address)."""
    worker_cpus: float | None = None
    """CPUs per worker (default 1)."""
    worker_gpus: float | None = None
    """GPUs per worker (default: 1 on a cluster with GPUs, times ``tensor_parallel``; else 0)."""
    workers: int | None = None
    """How many workers (default: as many as the cluster's resources allow, at most as many
    steps as can run side by side)."""
    retries: int = 2
    """How many times a step is rerun after its worker died."""
    models_per_worker: int = 2
    """How many models one worker keeps loaded (least recently used ones are released)."""
    object_store_mb: int | None = None
    """``local`` only: the size of Ray's object store (default: Ray's)."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each worker asks for (``{"a100": 1}`` places workers only on the nodes
    started with ``ray start --resources '{"a100": N}'``)."""
    tensor_parallel: int = 1
    """vLLM ``tensor_parallel_size`` for generation workers (each worker then holds that many GPUs)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables for the workers."""


def check_address(address: str | None) -> str:
    """The cluster address to use (``--cluster`` or ``$SPARKQL_CLUSTER``), checked."""
    a = (address or os.environ.get(ADDRESS_ENV) or "").strip()
    if a in ("local", "auto") or a.startswith("ray://"):
        return a
    host, sep, port = a.rpartition(":")
    if sep and host and port.isdigit():
        return a
    raise SparkError(
        f"--cluster {a!r} is not a cluster address" if a else "no cluster address",
        hint="use `local` (Ray on this machine), `auto` (the cluster `ray start` joined), "
             "`ray://HOST:10001` (Ray Client) or HOST:PORT",
    )


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SparkError("--cluster needs Ray, which is not installed",
                         hint="pip install 'sparkql[ray]'") from None
    return ray


@contextlib.contextmanager
def connect(opts: ClusterOptions):
    """Connect to (or start) the Ray cluster; disconnect (and stop a local one) afterwards."""
    ray = _import_ray()
    if ray.is_initialized():  # a caller (a notebook, a test) already connected: use that
        yield ray
        return
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": True}
    if opts.address == "local":
        kwargs.update(include_dashboard=False)
        if opts.object_store_mb:
            kwargs["object_store_memory"] = int(opts.object_store_mb) * 2**20
    else:
        kwargs["address"] = opts.address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise SparkError(f"cannot connect to the Ray cluster at {opts.address}: {e}",
                         hint="start one with `ray start --head`, or run with --cluster local") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass
class _Slot:
    index: int
    actor: Any
    state: str = "starting"
    """starting | idle | busy | restarting | dead"""
    info: dict = field(default_factory=dict)
    step: Step | None = None
    loaded: set[str] = field(default_factory=set)
    since: float = 0.0
    bar: Any = None

    @property
    def name(self) -> str:
        return f"w{self.index}"

    def where(self) -> str:
        if not self.info:
            return self.name
        return (f"{self.name} ({self.info.get('host')} {self.info.get('node')} node "
                f"{str(self.info.get('node_id'))[:8]}, pid {self.info.get('pid')})")


def _worker_shape(ray, opts: ClusterOptions) -> tuple[float, float, int]:
    """(cpus, gpus) per worker and how many workers the cluster holds."""
    total = ray.cluster_resources()
    n_gpu, n_cpu = float(total.get("GPU", 0)), float(total.get("CPU", 0))
    gpus = opts.worker_gpus if opts.worker_gpus is not None else (float(opts.tensor_parallel) if n_gpu >= 1 else 0.0)
    cpus = opts.worker_cpus if opts.worker_cpus is not None else 1.0
    fits = []
    if gpus > 0:
        fits.append(int(n_gpu // gpus))
    if cpus > 0:
        fits.append(int(n_cpu // cpus))
    for name, amount in opts.resources.items():
        if amount > 0:
            fits.append(int(float(total.get(name, 0)) // amount))
    n = min(fits) if fits else 1
    if n < 1:
        extra = "".join(f", {v:g} {k}" for k, v in opts.resources.items())
        raise SparkError(
            f"the cluster ({n_cpu:g} CPUs, {n_gpu:g} GPUs) has no room for one worker of {cpus:g} CPU(s) "
            f"and {gpus:g} GPU(s){extra}",
            hint="lower --worker-cpus / --worker-gpus / --worker-resources, or add nodes",
        )
    return cpus, gpus, n


def _ranks(todo: list[Step]) -> dict[str, float]:
    """Upward rank: a step's weight plus the heaviest chain of steps waiting on it (run those first)."""
    keys = {s.key for s in todo}
    children: dict[str, list[str]] = {s.key: [] for s in todo}
    for s in todo:
        for d in s.deps:
            if d in keys:
                children[d].append(s.key)
    rank: dict[str, float] = {}
    for s in reversed(todo):  # todo is topologically ordered
        rank[s.key] = step_weight(s) + max((rank[c] for c in children[s.key]), default=0.0)
    return rank


def run_on_cluster(
    plan: Plan,
    db: Path,
    steps: list[Step],
    done_before: set[str],
    cannot: dict[str, str],
    summary,
    opts: ClusterOptions,
    *,
    study_text: str | None,
    console: Console,
    live: bool | None,
    debug: bool,
    on_step_done: Callable | None,
    log_file: str | Path | None,
):
    """The cluster counterpart of the executor's loop (same records, same summary)."""
    from sparkql.runtime.execution.executor import StepRecord, _fmt_summary, _hold_interrupts, _sigterm_as_interrupt, model_ids_of
    from sparkql.runtime.execution.handlers import HANDLERS
    from sparkql.runtime.execution.progress import Progress
    from sparkql.store.api import Store
    from sparkql.store.lock import RunLock

    todo = [s for s in steps if s.key not in done_before]
    runnable = [s for s in todo if s.key not in cannot]
    records: dict[str, StepRecord] = {}
    for s in steps:
        if s.key in done_before:
            records[s.key] = StepRecord(s.key, s.kind, s.label, "cached")
        elif s.key in cannot:
            records[s.key] = StepRecord(s.key, s.kind, s.label, cannot[s.key])
    order = {s.key: i for i, s in enumerate(runnable)}
    rank = _ranks(runnable)
    models_of = {s.key: model_ids_of(s) for s in runnable}
    width = plan_waves(Plan(study=plan.study, steps=runnable, backend=plan.backend)).widest if runnable else 0

    t_run = time.monotonic()
    with RunLock(db, study=plan.study) as lock:
        store = Store(db)
        run_id = store.start_run(
            study_path=plan.study, study_text=study_text, n_steps=len(steps),
            n_cached=len(done_before & {s.key for s in steps}), version=__version__,
        )
        lock.run_id = run_id
        summary.run_id = run_id
        progress = Progress(console, runnable, live=live, log_file=str(log_file) if log_file else None)
        progress.log(f"run {run_id}: {plan.study} -> {db}: {len(runnable)} step(s) to run, "
                     f"{sum(1 for r in records.values() if r.status == 'cached')} cached"
                     + (f", {len(cannot)} cannot run in this build" if cannot else ""))
        status, error = "done", None
        n_done = 0
        in_flight: dict[str, _Slot] = {}
        slots: list[_Slot] = []
        ray = None
        try:
            with _sigterm_as_interrupt(), progress, (connect(opts) if runnable else contextlib.nullcontext()) as ray:
                if not runnable:  # everything is in the store already: no cluster needed
                    return summary
                driver = _Driver(
                    ray, plan, opts, store, progress, run_id, debug, runnable, order, rank, models_of, width,
                    records, in_flight, slots, HANDLERS, on_step_done,
                )
                driver.study_text = study_text
                n_done = driver.run()
        except KeyboardInterrupt:
            status = "interrupted"
            labels = [s.step.label for s in in_flight.values() if s.step is not None]
            error = "interrupted" + (f" during {', '.join(labels)}" if labels else "")
            for sl in in_flight.values():
                if sl.step is not None:
                    records[sl.step.key] = StepRecord(sl.step.key, sl.step.kind, sl.step.label, "interrupted")
            raise
        except BaseException as e:
            status = "failed"
            error = f"{type(e).__name__}: {getattr(e, 'message', None) or e}"
            raise
        finally:
            n_done = sum(1 for r in records.values() if r.status == "done")
            if status == "done" and cannot:
                status = "partial"
            summary.status = status
            summary.seconds = time.monotonic() - t_run
            summary.steps = [records.get(s.key) or StepRecord(s.key, s.kind, s.label, "not run") for s in steps]
            with contextlib.suppress(Exception):
                with _hold_interrupts():
                    store.finish_run(run_id, status, n_done, error)
            store.close()
            if status == "interrupted":
                progress.log(f"interrupted: {n_done} step(s) saved this run; rerun the same command to resume")
            elif status != "failed":
                progress.log(f"run {run_id} {status}: {n_done} step(s) in {summary.seconds:.1f} s on the cluster")
    return summary


class _Driver:
    """The scheduling loop: dispatch ready steps, serve workers' requests, commit results."""

    def __init__(self, ray, plan, opts, store, progress, run_id, debug, runnable, order, rank, models_of, width,
                 records, in_flight, slots, handlers, on_step_done) -> None:
        self.ray, self.plan, self.opts, self.store, self.progress = ray, plan, opts, store, progress
        self.run_id, self.debug = run_id, debug
        self.runnable, self.order, self.rank, self.models_of = runnable, order, rank, models_of
        self.width = width
        self.records, self.in_flight, self.slots = records, in_flight, slots
        self.handlers, self.on_step_done = handlers, on_step_done
        self.remaining = {s.key for s in runnable}
        self.done: set[str] = set()
        self.deps = {s.key: [d for d in s.deps if d in self.remaining] for s in runnable}
        self.ready: list[Step] = []
        self.attempts: dict[str, int] = {}
        self.last_loss: dict[str, str] = {}
        self.failure: BaseException | None = None
        self.refs: dict[Any, tuple[str, _Slot]] = {}
        self.bars: dict[tuple[int, int], Any] = {}
        self.mailbox = None
        self.plan_ref = None
        self.sent: dict[str, float] = {}
        self.study_text: str | None = None

    # ------------------------------------------------------------------ setup
    def start_workers(self) -> None:
        from sparkql.runtime.execution.cluster_worker import StepWorker
        from sparkql.runtime.execution.mailbox import Mailbox

        ray, opts = self.ray, self.opts
        cpus, gpus, fits = _worker_shape(ray, opts)
        n = max(1, min(opts.workers or fits, fits, max(self.width, 1)))
        if opts.workers and opts.workers > fits:
            self.progress.log(f"the cluster holds {fits} worker(s) of {cpus:g} CPU / {gpus:g} GPU, not {opts.workers}")
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # named, so that workers (and their restarts) find it by name rather than through a
        # constructor argument Ray would have to keep for restarts
        mailbox_name = f"sparkql-mailbox-{self.run_id}"
        self.mailbox = ray.remote(Mailbox).options(
            name=mailbox_name, num_cpus=0, max_concurrency=1000,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=True),
        ).remote()
        env = dict(opts.env)
        if opts.tensor_parallel > 1:
            env["SPARKQL_VLLM_TENSOR_PARALLEL"] = str(opts.tensor_parallel)
        # a worker's stderr is a log the driver echoes: no per-load weight bars in it
        env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_restarts": -1, "max_task_retries": 0,
                                   "runtime_env": {"env_vars": env}}
        if opts.resources:
            options["resources"] = dict(opts.resources)
        worker_cls = ray.remote(StepWorker).options(**options)
        threads = max(1, int(cpus)) if cpus else None
        self.plan_ref = ray.put(self.plan)  # held by the driver for the whole run
        live = bool(self.progress.live)
        for i in range(1, n + 1):
            slot = _Slot(i, worker_cls.remote(i, mailbox_name, threads, opts.models_per_worker, live))
            slot.since = time.monotonic()
            self.slots.append(slot)
            self.refs[_hello(slot.actor)] = ("hello", slot)
        self.progress.log(f"cluster {opts.address}: {n} worker(s) of {cpus:g} CPU / {gpus:g} GPU "
                          f"(at most {self.width} step(s) can run side by side)")

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        ray = self.ray
        self.start_workers()
        self.ready = [s for s in self.runnable if not self.deps[s.key]]
        take = self.mailbox.take.remote(TAKE_S)
        try:
            while True:
                if self.failure is None:
                    self.dispatch()
                busy = [sl for sl in self.slots if sl.state == "busy"]
                if not self.remaining or (self.failure is not None and not busy):
                    break
                self.check_stalled()
                pending = list(self.refs) + [take]
                got, _ = ray.wait(pending, num_returns=1, timeout=0.5)
                if got:
                    got, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
                for ref in got:
                    if ref == take:
                        self.serve(ray.get(take))
                        take = self.mailbox.take.remote(TAKE_S)
                    else:
                        what, slot = self.refs.pop(ref)
                        if what == "hello":
                            self.on_hello(ref, slot)
                        else:
                            self.on_result(ref, slot)
            # requests that arrived with the last results (log lines, progress)
            self.serve(ray.get(self.mailbox.take.remote(0)))
        finally:
            for sl in self.slots:
                if sl.bar is not None:
                    sl.bar.close()
            for bar in self.bars.values():
                bar.close()
            for sl in self.slots:
                with contextlib.suppress(Exception):
                    ray.kill(sl.actor, no_restart=True)
            if self.mailbox is not None:
                with contextlib.suppress(Exception):
                    ray.kill(self.mailbox, no_restart=True)
        if self.failure is not None:
            raise self.failure
        return len(self.done)

    def check_stalled(self) -> None:
        alive = [sl for sl in self.slots if sl.state != "dead"]
        if not alive:
            raise SparkError("every cluster worker died", hint="see the Ray logs of the nodes "
                             "(/tmp/ray/session_latest/logs) for why (out of memory, a crash at start)")
        waiting = [sl for sl in alive if sl.state in ("starting", "restarting")]
        if len(waiting) == len(alive) and min(time.monotonic() - sl.since for sl in waiting) > RESTART_TIMEOUT_S:
            raise SparkError(f"no cluster worker has started in {RESTART_TIMEOUT_S:.0f} s",
                             hint="the cluster may lack the resources asked for one worker (`ray status`)")

    # ------------------------------------------------------------------ scheduling
    def dispatch(self) -> None:
        idle = [sl for sl in self.slots if sl.state == "idle"]
        while idle and self.ready:
            holders = {m for sl in self.slots if sl.state != "dead" for m in sl.loaded}
            best = None
            for sl in idle:
                for s in self.ready:
                    need = self.models_of[s.key]
                    if need and need <= sl.loaded:
                        affinity = 2  # its model is loaded on this worker
                    elif need & holders:
                        affinity = 0  # loaded on another worker: leave it to that one if it can
                    else:
                        affinity = 1
                    key = (affinity, self.rank[s.key], -self.order[s.key], -len(sl.loaded), -sl.index)
                    if best is None or key > best[0]:
                        best = (key, sl, s)
            _, sl, s = best
            idle.remove(sl)
            self.ready.remove(s)
            self.submit(sl, s)

    def submit(self, slot: _Slot, step: Step) -> None:
        keep = sorted({m for k in self.remaining if k != step.key for m in self.models_of[k]})
        self.sent[step.key] = time.monotonic()
        ref = slot.actor.run.remote([self.plan_ref], step, self.handlers[step.kind], self.run_id, self.debug, keep)
        self.refs[ref] = ("step", slot)
        slot.state, slot.step, slot.since = "busy", step, time.monotonic()
        self.in_flight[step.key] = slot
        n = len(self.done) + len(self.in_flight)
        self.progress.start_step(step, n)
        if slot.bar is not None:
            slot.bar.update(description=f"  {slot.name} {slot.info.get('node', '')}: {_markup_safe(step.label)}")
        retry = self.attempts.get(step.key, 0)
        self.progress.log(f"→ {slot.name} {step.label}" + (f"  (attempt {retry + 1})" if retry else ""))

    # ------------------------------------------------------------------ events
    def on_hello(self, ref, slot: _Slot) -> None:
        ray = self.ray
        try:
            info = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            slot.state = "dead"
            self.progress.log(f"{slot.where()} is gone: {_first_line(e)}")
            return
        first = not slot.info
        slot.info = info
        if info.get("version") != __version__:
            self.fail(SparkError(
                f"node {info.get('host')} ({info.get('node')}) runs sparkql {info.get('version')}, "
                f"this driver {__version__}", hint="install the same sparkql version on every node"))
            slot.state = "dead"
            return
        slot.state, slot.loaded, slot.since = "idle", set(), time.monotonic()
        if first:
            gpus = f", GPU {','.join(info['gpus'])}" if info.get("gpus") else ""
            self.progress.log(f"  {slot.where()}{gpus} ready")
            if self.progress.live and slot.bar is None:
                slot.bar = self.progress.task(f"{slot.name} {info.get('node', '')}: idle")
        else:
            self.progress.log(f"  {slot.where()} restarted")
        if slot.bar is not None:
            slot.bar.update(description=f"  {slot.name} {info.get('node', '')}: idle")

    def on_result(self, ref, slot: _Slot) -> None:
        from sparkql.runtime.execution.executor import StepRecord, _fmt_summary, _hold_interrupts

        ray = self.ray
        step = slot.step
        assert step is not None
        self.in_flight.pop(step.key, None)
        slot.step = None
        try:
            res = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            slot.state = "idle"
            cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
            self.step_failed(step, slot, cause)
            return
        except ray.exceptions.RayActorError as e:
            self.worker_lost(step, slot, e)
            return
        overhead = max(0.0, time.monotonic() - self.sent.pop(step.key, time.monotonic()) - res["seconds"])
        slot.state = "idle"
        slot.loaded = set(res.get("loaded") or [])
        output = res["output"]
        with _hold_interrupts():
            rows = self.store.complete_step(step, output, run_id=self.run_id, started_at=res["started_at"],
                                            seconds=res["seconds"])
            rec = StepRecord(step.key, step.kind, step.label, "done", res["seconds"], dict(output.summary or {}), rows,
                             worker=slot.where(), overhead=overhead)
            self.records[step.key] = rec
            self.done.add(step.key)
            self.remaining.discard(step.key)
        self.progress.finish_step(step)
        self.progress.log(f"✓ [{len(self.done)}/{len(self.runnable)}] {step.label}  {res['seconds']:.1f} s  "
                          f"{_fmt_summary(rec.summary, rows)}  ({slot.name})")
        if slot.bar is not None:
            slot.bar.update(description=f"  {slot.name} {slot.info.get('node', '')}: idle")
        for s in self.runnable:
            if s.key in self.remaining and step.key in self.deps[s.key]:
                self.deps[s.key].remove(step.key)
                if not self.deps[s.key]:
                    self.ready.append(s)
        if self.on_step_done is not None:
            self.on_step_done(rec)

    def worker_lost(self, step: Step, slot: _Slot, e: BaseException) -> None:
        from sparkql.runtime.execution.executor import StepRecord

        n = self.attempts[step.key] = self.attempts.get(step.key, 0) + 1
        reason = _first_line(e)
        where = slot.where()
        self.last_loss[step.key] = f"{where}: {reason}"
        slot.state, slot.loaded, slot.since = "restarting", set(), time.monotonic()
        if slot.bar is not None:
            slot.bar.update(description=f"  {slot.name}: restarting")
        self.refs[_hello(slot.actor)] = ("hello", slot)
        if n > self.opts.retries:
            err = SparkError(
                f"{step.label}: its worker died {n} time(s); last: {where}: {reason}",
                hint="look for out-of-memory kills in the Ray logs of that node (/tmp/ray/session_latest/logs); "
                     "lower batch_size or memory, or give each worker more memory",
            )
            self.records[step.key] = StepRecord(step.key, step.kind, step.label, "failed", error=err.message)
            self.progress.log(f"✗ {err.message}")
            self.fail(err)
            return
        self.progress.log(f"! {where} died during {step.label} ({reason}); running it again "
                          f"({n}/{self.opts.retries})")
        self.ready.append(step)

    def step_failed(self, step: Step, slot: _Slot, cause: BaseException) -> None:
        from sparkql.runtime.execution.executor import StepRecord

        if isinstance(cause, SparkError):
            # point the user at the statement that produced the failing step (as a local run does)
            cause.message = f"{step.label}: {cause.message}"
            if cause.span is None and step.span is not None:
                cause.span = step.span
                cause.file, cause.source = None, None
                cause.with_source(self.plan.study, self.study_text)
        elif isinstance(cause, KeyboardInterrupt):
            cause = RuntimeError(f"{slot.where()} was interrupted")
        msg = f"{type(cause).__name__}: {getattr(cause, 'message', None) or cause}"
        self.records[step.key] = StepRecord(step.key, step.kind, step.label, "failed", error=msg)
        self.progress.log(f"✗ {step.label} on {slot.where()}: {msg}")
        self.fail(cause)

    def fail(self, err: BaseException) -> None:
        if self.failure is None:
            self.failure = err
            busy = [sl.step.label for sl in self.slots if sl.state == "busy" and sl.step is not None]
            if busy:
                self.progress.log(f"no new steps start; waiting for {len(busy)} running step(s) to finish "
                                  "and be saved (Ctrl-C stops them)")

    # ------------------------------------------------------------------ worker requests
    def serve(self, messages: list[tuple]) -> None:
        from sparkql.runtime.execution.executor import _hold_interrupts

        answers = []
        for req, worker, kind, payload, events in messages:
            self.events(worker, events)
            if req is None:
                continue
            try:
                if kind == "query":
                    value = self.store.query(*payload)
                elif kind == "query_arrow":
                    value = self.store.query_arrow(*payload)
                elif kind == "write":
                    with _hold_interrupts():
                        value = self.store.write(payload)
                else:
                    raise ValueError(f"unknown request {kind!r}")
                answers.append((req, ("ok", value)))
            except KeyboardInterrupt:
                raise
            except SparkError as e:
                answers.append((req, ("error", e)))
            except Exception as e:  # sent back as plain text: the worker may not unpickle every type
                answers.append((req, ("error", RuntimeError(f"{type(e).__name__}: {e}"))))
        if answers:
            self.mailbox.answer.remote(answers)

    def events(self, worker: int, events: list) -> None:
        slot = self.slots[worker - 1] if 0 < worker <= len(self.slots) else None
        name = slot.name if slot else f"w{worker}"
        for ev in events or []:
            kind = ev[0]
            if kind == "log":
                self.progress.log(f"    [{name}] {ev[1]}")
            elif kind == "task":
                self.bars[(worker, ev[1])] = self.progress.task(f"  {name} {ev[2]}", total=ev[3])
            elif (worker, ev[1]) in self.bars:
                bar = self.bars[(worker, ev[1])]
                if kind == "advance":
                    bar.advance(ev[2])
                elif kind == "update":
                    bar.update(**ev[2])
                elif kind == "close":
                    bar.close()
                    del self.bars[(worker, ev[1])]


def _hello(actor):
    """Ask a worker who it is; waits through its restarts (a call to an actor that is restarting
    would otherwise fail at once), and fails only when it cannot come back."""
    return actor.hello.options(max_task_retries=-1).remote()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _markup_safe(text: str) -> str:
    from rich.markup import escape

    return escape(text)
