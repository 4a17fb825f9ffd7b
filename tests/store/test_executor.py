"""The executor in-process: dry runs, missing handlers, partial runs, model release, exec overrides,
failures and Ctrl-C (the resume and concurrency guarantees are in test_resume / test_concurrency)."""

from __future__ import annotations

import io

import duckdb
import pytest
from rich.console import Console

from sparkql.errors import SparkError
from sparkql.runtime.execution import executor, handlers
from sparkql.runtime.execution.executor import execute
from sparkql.store.lock import is_held

from . import fakes

HERE = fakes.__name__.rsplit(".", 1)[0]


def _console():
    buf = io.StringIO()
    return Console(file=buf, width=200, highlight=False), buf


def _statuses(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT status, error FROM runs ORDER BY started_at").fetchall()
    finally:
        con.close()


def test_dry_run_changes_nothing_and_reports_cached_steps(tmp_path, fake_circuits):
    plan = fakes.build_plan(tmp_path / "study")
    db = tmp_path / "s.duckdb"
    s = execute(plan, db, dry_run=True, live=False)
    assert not db.exists()
    assert s.status == "dry-run" and {r.status for r in s.steps} == {"pending"}
    con, buf = _console()
    execute(plan, db, live=False, console=con)
    assert "✓ [1/16] load base" in buf.getvalue() and "✓ [16/16] heads picked" in buf.getvalue()
    s = execute(plan, db, dry_run=True, live=False)
    assert {r.status for r in s.steps} == {"cached"} and s.n_cached == 16


def test_missing_handlers_are_named_and_partial_runs_the_rest(tmp_path, fake_circuits, monkeypatch):
    plan = fakes.build_plan(tmp_path / "study")
    db = tmp_path / "s.duckdb"
    monkeypatch.setitem(handlers.HANDLERS, "cohort", "sparkql.runtime.no_such_module:run")
    with pytest.raises(SparkError) as e:
        execute(plan, db, live=False)
    assert "cannot run step kind(s): cohort (1 step)" in e.value.message and "--partial" in e.value.hint
    assert not db.exists()

    s = execute(plan, db, partial=True, live=False)
    assert s.status == "partial" and s.n_done == 15
    assert [r.label for r in s.steps if r.status == "unavailable"] == ["cohort emergent"]
    monkeypatch.setitem(handlers.HANDLERS, "cohort", "sparkql.runtime.steps.cohort:run_cohort")
    s = execute(plan, db, live=False)
    assert (s.status, s.n_done, s.n_cached) == ("done", 1, 15)
    assert [st for st, _ in _statuses(db)] == ["partial", "done"]


class FakeModels:
    events: list = []

    def get(self, ref, dtype="auto", device="auto"):
        self.events.append(("get", ref.label))
        self._loaded = getattr(self, "_loaded", set()) | {ref.model_id}
        return object()

    def release(self, model_id):
        self.events.append(("release", model_id))
        self._loaded.discard(model_id)

    def loaded(self):
        return sorted(getattr(self, "_loaded", set()))


def loading_circuit(step, ctx):
    """A circuit handler that loads its model through ctx.models and records its exec options."""
    ctx.models.get(step.spec.model, step.spec.params.dtype, step.exec.device)
    loading_circuit.devices.append(step.exec.device)
    return fakes.run_fake_circuit(step, ctx)


loading_circuit.devices = []


def test_models_are_released_when_no_later_step_needs_them_and_exec_overrides_apply(tmp_path, monkeypatch):
    monkeypatch.setitem(handlers.HANDLERS, "circuit", f"{__name__}:loading_circuit")
    monkeypatch.setattr(executor, "LazyModels", FakeModels)
    FakeModels.events = []
    loading_circuit.devices = []
    plan = fakes.build_plan(tmp_path / "study")
    db = tmp_path / "s.duckdb"
    execute(plan, db, live=False, exec_overrides={"device": "cpu", "backend": None})
    ev = FakeModels.events
    # each model is loaded once and released right after its circuit, before the next model loads
    assert ev == [e for label, mid in [("base", "base0001")] + [(f"ckpt[step={s}]", f"ckpt{s:04d}") for s in fakes.STEPS]
                  for e in (("get", label), ("release", mid))]
    assert loading_circuit.devices == ["cpu"] * 5  # the override reached the steps ...
    con = duckdb.connect(str(db), read_only=True)
    keys = {r[0] for r in con.execute("SELECT key FROM steps").fetchall()}
    con.close()
    assert keys == {s.key for s in plan.steps}  # ... without changing their keys


def boom(step, ctx):
    raise RuntimeError("the GPU caught fire")


def interrupt(step, ctx):
    raise KeyboardInterrupt


def test_a_failing_step_keeps_earlier_results_and_the_run_is_marked_failed(tmp_path, fake_circuits, monkeypatch):
    plan = fakes.build_plan(tmp_path / "study")
    db = tmp_path / "s.duckdb"
    monkeypatch.setitem(handlers.HANDLERS, "cohort", f"{__name__}:boom")
    con, buf = _console()
    with pytest.raises(RuntimeError, match="caught fire"):
        execute(plan, db, live=False, console=con)
    assert "✗ cohort emergent: RuntimeError: the GPU caught fire" in buf.getvalue()
    assert _statuses(db) == [("failed", "RuntimeError: the GPU caught fire")]
    assert not is_held(db)

    monkeypatch.setitem(handlers.HANDLERS, "cohort", f"{__name__}:interrupt")
    con, buf = _console()
    with pytest.raises(KeyboardInterrupt):
        execute(plan, db, live=False, console=con)
    assert "interrupted: 0 step(s) saved this run; rerun the same command to resume at cohort emergent" in buf.getvalue()
    assert _statuses(db)[-1] == ("interrupted", "interrupted during cohort emergent")
    assert not is_held(db)

    monkeypatch.setitem(handlers.HANDLERS, "cohort", "sparkql.runtime.steps.cohort:run_cohort")
    s = execute(plan, db, live=False)
    assert (s.n_done, s.n_cached) == (2, 14)  # the cohort and the step after it


def test_live_progress_on_a_terminal(tmp_path, fake_circuits):
    import re

    buf = io.StringIO()
    con = Console(file=buf, width=120, force_terminal=True, highlight=False)
    s = execute(fakes.build_plan(tmp_path / "study"), tmp_path / "s.duckdb", live=True, console=con)
    assert s.n_done == 16
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert "16/16" in text and "[16/16] heads picked" in text  # the study bar: steps done/total, current step
    assert "left" in text  # the estimate once some work is done


def slow_cohort(step, ctx):
    """The real cohort step, behind a progress task like a generation's (20 samples, one at a
    time) and with a summary longer than a line, as an eval's pass@k figures are."""
    from rich.markup import escape

    from sparkql.runtime.steps.cohort import run_cohort

    with ctx.progress.task(escape("generate ckpt[step=400] intact on aime24"), total=20) as task:
        for _ in range(20):
            task.update(eta="12 tok  3.0 tok/s")
            task.advance(1)
    out = run_cohort(step, ctx)
    out.summary.update({f"pass@{k}": round(0.1234 + k / 100, 4) for k in (1, 2, 4, 8, 16, 32, 64)})
    out.summary["delta_vs_intact"] = -0.0625
    return out


def test_without_a_terminal_long_steps_print_progress_lines_and_whole_summaries(tmp_path, fake_circuits, monkeypatch):
    plan = fakes.build_plan(tmp_path / "study")
    monkeypatch.setitem(handlers.HANDLERS, "cohort", f"{__name__}:slow_cohort")
    con, buf = _console()
    execute(plan, tmp_path / "s.duckdb", live=False, console=con)
    lines = buf.getvalue().splitlines()
    ticks = [line for line in lines if line.startswith("  … generate ckpt[step=400] intact on aime24: ")]
    # one line per tenth of the task, in order, with its rate text
    assert [t.split(": ", 1)[1].split()[0] for t in ticks] == [f"{n}/20" for n in range(2, 21, 2)]
    assert all("elapsed" in t and t.endswith("12 tok  3.0 tok/s") for t in ticks)
    done = next(line for line in lines if line.startswith("✓") and "cohort emergent" in line)
    assert lines.index(ticks[-1]) < lines.index(done)
    for k in (1, 2, 4, 8, 16, 32, 64):  # the summary is whole, not cut at 100 characters
        assert f"pass@{k}={round(0.1234 + k / 100, 4)}" in done
    assert done.endswith("delta_vs_intact=-0.0625") and len(done) > 150
