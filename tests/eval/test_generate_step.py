"""The generate/grade/aggregate handlers called directly with a RunContext over a real DuckDB
store: GPQA prompts and golds, and incremental writes."""

from __future__ import annotations

import csv

import duckdb
import pytest

from sparkql.errors import SparkError
from sparkql.plan.steps import (
    AggregateSpec,
    DatasetRef,
    GenerateSpec,
    GradeSpec,
    ModelRef,
    Plan,
    SamplingParams,
    Step,
    step_key,
)
from sparkql.runtime.execution.context import RunContext
from sparkql.runtime.steps.aggregate import run_aggregate
from sparkql.runtime.steps.generate import run_generate
from sparkql.runtime.steps.grade import run_grade
from sparkql.runtime.grading.grader import gpqa_options
from sparkql.runtime.models.loading import ModelCache
from sparkql.store.api import Store

GPQA_ROWS = [
    {"Question": "Which particle is neutral?", "Correct Answer": "neutron", "Incorrect Answer 1": "proton",
     "Incorrect Answer 2": "electron", "Incorrect Answer 3": "positron"},
    {"Question": "Which is a noble gas?", "Correct Answer": "argon ", "Incorrect Answer 1": "sodium",
     "Incorrect Answer 2": "iron", "Incorrect Answer 3": "carbon"},
]


def mkstep(kind, spec, deps=()):
    return Step(key=step_key(kind, spec), kind=kind, label=kind, deps=list(deps), spec=spec)


@pytest.fixture()
def setup(tiny_llama, tmp_path):
    path = tmp_path / "gpqa.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(GPQA_ROWS[0]))
        w.writeheader()
        w.writerows(GPQA_ROWS)
    ds = DatasetRef(name="gpqa", path=str(path), format="csv", roles={"problem": "Question", "answer": "Correct Answer"},
                    grader="gpqa", fingerprint="x")
    model = ModelRef(name="m", label="m", path=str(tiny_llama), fingerprint="f", model_id="mid")
    gen = mkstep("generate", GenerateSpec(model=model, dataset=ds, sampling=SamplingParams(n=2, temperature=0.7, max_tokens=6, seed=3)))
    grade = mkstep("grade", GradeSpec(generate_key=gen.key, grader="gpqa"), [gen.key])
    agg = mkstep("aggregate", AggregateSpec(generate_key=gen.key, grade_key=grade.key, ks=[1, 2, 4]), [gen.key, grade.key])
    store = Store(tmp_path / "s.duckdb")
    writes = []
    real_write = store.write
    store.write = lambda tables: (writes.append(sum(len(v) for v in tables.values())), real_write(tables))[1]
    ctx = RunContext(plan=Plan(study="<t>", steps=[gen, grade, agg]), store=store, models=ModelCache(), log=lambda m: None)
    return ctx, store, gen, grade, agg, writes


def finish(store, step, out):
    store.complete_step(step, out, run_id="r", started_at=None, seconds=0.0)


def test_gpqa_prompts_golds_grading_and_metrics(setup):
    ctx, store, gen, grade, agg, writes = setup
    gen = gen.model_copy(update={"exec": gen.exec.model_copy(update={"batch_size": 2, "backend": "transformers"})})
    out = run_generate(gen, ctx)
    finish(store, gen, out)
    assert writes == [2, 2]  # one write per finished batch, before the step completes
    rows = store.query("SELECT problem_id, sample_idx, prompt, gold FROM samples ORDER BY 1, 2")
    assert [(p, i) for p, i, _, _ in rows] == [("0", 0), ("0", 1), ("1", 0), ("1", 1)]
    for pid, _, prompt, gold in rows:
        src = GPQA_ROWS[int(pid)]
        wrong = [src[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
        options, letter = gpqa_options(pid, src["Correct Answer"], wrong, seed=3)
        assert gold == letter
        for L, o in zip("ABCD", options):
            assert f"{L}) {o}\n" in prompt + "\n"
    finish(store, grade, run_grade(grade, ctx))
    assert store.query("SELECT count(*) FROM samples WHERE status IS NULL") == [(0,)]
    out = run_aggregate(agg, ctx)
    finish(store, agg, out)
    ks = sorted(k for (k,) in store.query("SELECT k FROM metrics WHERE metric = 'pass@k'"))
    assert ks == [1, 2]  # k = 4 > n = 2 is not reported
    (evals,) = store.query("SELECT grader, n, n_problems, think FROM evals")
    assert evals == ("gpqa", 2, 2, True)


def test_aggregate_refuses_missing_samples(setup):
    ctx, store, gen, grade, agg, _ = setup
    gen = gen.model_copy(update={"exec": gen.exec.model_copy(update={"backend": "transformers"})})
    finish(store, gen, run_generate(gen, ctx))
    con = duckdb.connect(str(store.path))
    con.execute("DELETE FROM samples WHERE problem_id = '1' AND sample_idx = 1")
    con.close()
    finish(store, grade, run_grade(grade, ctx))
    with pytest.raises(SparkError, match="missing samples"):
        run_aggregate(agg, ctx)


def test_a_dataset_without_answers_is_refused_before_generating(setup):
    ctx, store, gen, *_ = setup
    ds = gen.spec.dataset.model_copy(update={"roles": {"problem": "Question"}, "grader": "math"})
    spec = gen.spec.model_copy(update={"dataset": ds})
    step = mkstep("generate", spec)
    with pytest.raises(SparkError, match="no `answer` role"):
        run_generate(step, ctx)
    assert store.query("SELECT count(*) FROM samples") == [(0,)]
