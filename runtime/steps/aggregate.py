"""The ``aggregate`` step: pass@k, success@k, accuracy (and the share of samples in each grading
status: ok, no_answer, truncated, timeout, error) of one graded eval, with bootstrap standard
errors, into ``metrics``.

Torch-free; :func:`aggregate_eval` is shared with ``sparkql regrade``. The eval's rows in
``metrics`` are replaced, not appended, so regrading or re-aggregating never duplicates them.
"""

from __future__ import annotations

from typing import Callable, Sequence

from sparkql.errors import SparkError
from sparkql.plan.steps import AggregateSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput
from sparkql.runtime.grading.metrics import compute_metrics

Query = Callable[[str, list], list]


def aggregate_eval(query: Query, eval_id: str, ks: Sequence[int], bootstrap: int = 1000, seed: int = 0,
                   n: int | None = None, n_problems: int | None = None) -> tuple[list[dict], dict]:
    """Metric rows of one eval. ``n``/``n_problems`` default to the ``evals`` row's; a problem
    with fewer than n samples, or fewer problems than the eval has, is refused (SparkError)."""
    if n is None or n_problems is None:
        found = query("SELECT n, n_problems FROM evals WHERE eval_id = ?", [eval_id])
        if not found:
            raise SparkError(f"eval {eval_id[:12]} is not in the store", hint="run the study's eval first")
        n = n if n is not None else int(found[0][0])
        n_problems = n_problems if n_problems is not None else int(found[0][1])
    rows = query(
        "SELECT problem_id, sample_idx, correct, status FROM samples WHERE eval_id = ? "
        "ORDER BY problem_id, sample_idx", [eval_id])
    table: dict[str, list] = {}
    stat: dict[str, list] = {}
    for pid, idx, correct, status in rows:
        if int(idx) >= n:
            continue  # samples beyond n (an eval rerun with a smaller n) are not this eval's
        table.setdefault(pid, []).append(correct)
        stat.setdefault(pid, []).append(status)
    if n_problems is not None and len(table) < n_problems:
        raise SparkError(
            f"eval {eval_id[:12]}: {n_problems - len(table)} of {n_problems} problems have no samples",
            hint="pass@k is only defined over complete samples; rerun the study to generate the missing ones",
        )
    metrics = compute_metrics(table, n, ks, bootstrap=bootstrap, seed=seed, statuses=stat, what=f"eval {eval_id[:12]}")
    out = [{"eval_id": eval_id, "metric": m.metric, "k": m.k, "value": m.value, "stderr": m.stderr} for m in metrics]
    # pass@k with k = 4 reads as pass@4 (the metric column keeps the generic name, k its own column)
    summary = {(m.metric if m.k is None else m.metric.replace("@k", f"@{m.k}")): round(m.value, 4) for m in metrics}
    return out, summary


def replace_metrics(eval_id: str):
    """An ``apply`` that deletes the eval's old metric rows (the new ones are appended after it)."""
    def apply(con) -> None:
        con.execute("DELETE FROM metrics WHERE eval_id = ?", [eval_id])
    return apply


def run_aggregate(step: Step, ctx: RunContext) -> StepOutput:
    spec: AggregateSpec = step.spec  # type: ignore[assignment]
    n = None
    try:
        gen = ctx.result_of(spec.generate_key).spec
        n = gen.sampling.n  # type: ignore[union-attr]
    except KeyError:
        pass
    rows, summary = aggregate_eval(ctx.query, spec.generate_key, spec.ks, spec.bootstrap, spec.seed, n=n)
    return StepOutput(tables={"metrics": rows}, apply=replace_metrics(spec.generate_key), summary=summary)
