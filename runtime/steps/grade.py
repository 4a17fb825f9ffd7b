"""The ``grade`` step: fill ``samples.extracted/status/correct`` of one eval.

Torch-free. :func:`grade_eval` is shared with ``sparkql regrade``, which regrades stored
completions without a plan and never generates; with another extraction rule it writes a new
eval (:func:`derived_eval_id`) holding a copy of the completions, so both gradings stay in the
store side by side.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from sparkql.plan.steps import GradeSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput
from sparkql.runtime.grading.grader import GradeRequest, VerifyPool, grade_many, statuses

Query = Callable[[str, list], list]


def derived_eval_id(source: str, extract: str) -> str:
    """The id of the eval that holds ``source``'s completions graded under ``extract``: the same
    for every regrade, so regrading again replaces it instead of adding another."""
    return hashlib.sha256(f"{source}\x00extract={extract}".encode()).hexdigest()


def grade_eval(query: Query, eval_id: str, grader: str, think: bool, pool: VerifyPool | None = None,
               extract: str = "strict", into: str | None = None):
    """Grade every stored sample of ``eval_id`` under ``extract``. Returns (apply, summary):
    ``apply(con)`` writes inside the caller's transaction: the grades, and ``evals.extract``.

    ``into``: write to this new eval instead (a copy of ``eval_id``'s evals row and samples with
    ``regraded_from = eval_id``), replacing what an earlier regrade wrote there."""
    rows = query(
        "SELECT problem_id, sample_idx, completion, finish_reason, gold FROM samples WHERE eval_id = ? "
        "ORDER BY problem_id, sample_idx", [eval_id])
    reqs = [GradeRequest(c or "", g or "", f or "stop", think) for _, _, c, f, g in rows]
    graded = grade_many(grader, reqs, pool=pool, extract=extract)
    target = into or eval_id
    table = {
        "eval_id": [target] * len(rows),
        "problem_id": [r[0] for r in rows],
        "sample_idx": [int(r[1]) for r in rows],
        "extracted": [g.extracted for g in graded],
        "status": [g.status for g in graded],
        "correct": [g.correct for g in graded],
    }

    def apply(con) -> None:
        if into is not None:
            for t in ("metrics", "samples", "evals"):
                con.execute(f"DELETE FROM {t} WHERE eval_id = ?", [into])
            con.execute("INSERT INTO evals BY NAME SELECT * REPLACE (? AS eval_id, ? AS extract, ? AS regraded_from) "
                        "FROM evals WHERE eval_id = ?", [into, extract, eval_id, eval_id])
            con.execute("INSERT INTO samples BY NAME SELECT * REPLACE (? AS eval_id) FROM samples WHERE eval_id = ?",
                        [into, eval_id])
        else:
            con.execute("UPDATE evals SET extract = ? WHERE eval_id = ?", [extract, eval_id])
        if not rows:
            return
        import pyarrow as pa

        con.register("_sparkql_graded", pa.table(table))
        try:
            con.execute(
                "UPDATE samples SET extracted = g.extracted, status = g.status, correct = g.correct "
                "FROM _sparkql_graded g WHERE samples.eval_id = g.eval_id "
                "AND samples.problem_id = g.problem_id AND samples.sample_idx = g.sample_idx")
        finally:
            con.unregister("_sparkql_graded")

    n_ok = sum(g.correct for g in graded)
    summary = {"graded": len(graded), "correct": n_ok, "extract": extract,
               **{f"status_{k}": v for k, v in statuses(graded).items()}}
    return apply, summary


def run_grade(step: Step, ctx: RunContext) -> StepOutput:
    spec: GradeSpec = step.spec  # type: ignore[assignment]
    apply, summary = grade_eval(ctx.query, spec.generate_key, spec.grader, spec.think, extract=spec.extract)
    return StepOutput(apply=apply, summary=summary)
