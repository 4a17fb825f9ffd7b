"""The ``grade`` step: fill ``samples.extracted/status/correct`` of one eval.

Torch-free. :func:`grade_eval` is shared with ``sparkql regrade``, which regrades stored
completions without a plan and never generates.
"""

from __future__ import annotations

from typing import Callable

from sparkql.plan.steps import GradeSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput
from sparkql.runtime.grading.grader import GradeRequest, VerifyPool, grade_many, statuses

Query = Callable[[str, list], list]


def grade_eval(query: Query, eval_id: str, grader: str, think: bool, pool: VerifyPool | None = None):
    """Grade every stored sample of ``eval_id``. Returns (apply, summary): ``apply(con)`` runs
    the UPDATE inside the caller's transaction."""
    rows = query(
        "SELECT problem_id, sample_idx, completion, finish_reason, gold FROM samples WHERE eval_id = ? "
        "ORDER BY problem_id, sample_idx", [eval_id])
    reqs = [GradeRequest(c or "", g or "", f or "stop", think) for _, _, c, f, g in rows]
    graded = grade_many(grader, reqs, pool=pool)
    table = {
        "eval_id": [eval_id] * len(rows),
        "problem_id": [r[0] for r in rows],
        "sample_idx": [int(r[1]) for r in rows],
        "extracted": [g.extracted for g in graded],
        "status": [g.status for g in graded],
        "correct": [g.correct for g in graded],
    }

    def apply(con) -> None:
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
    summary = {"graded": len(graded), "correct": n_ok, **{f"status_{k}": v for k, v in sorted(statuses(graded).items())}}
    return apply, summary


def run_grade(step: Step, ctx: RunContext) -> StepOutput:
    spec: GradeSpec = step.spec  # type: ignore[assignment]
    apply, summary = grade_eval(ctx.query, spec.generate_key, spec.grader, spec.think)
    return StepOutput(apply=apply, summary=summary)
