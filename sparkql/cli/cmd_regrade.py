"""``sparkql regrade``: grade stored completions again and recompute their metrics.

Never generates and never loads a model (no torch): it reads ``samples.completion`` and
``samples.gold``, grades with the eval's grader (``evals.grader``) and thinking mode, and
rewrites ``extracted``, ``status``, ``correct`` and the eval's ``metrics`` rows. Use it after
a grader fix, or to grade an eval whose run was interrupted before its grade step.
"""

from __future__ import annotations

import click

from sparkql.cli.common import console, db_option

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@click.command("regrade")
@db_option
@click.option("--eval", "eval_refs", multiple=True, metavar="EVAL",
              help="An eval id (or unique prefix), MODEL:VARIANT, a variant or a model; repeatable. Default: every eval.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds math-verify may spend on one answer.")
@click.option("--workers", default=2, show_default=True, help="math-verify worker processes.")
def regrade(db: str, eval_refs: tuple[str, ...], timeout: float, workers: int) -> None:
    """Regrade stored completions (no generation) and recompute pass@k, success@k, accuracy."""
    from rich.markup import escape
    from rich.table import Table

    from sparkql.errors import SparkError
    from sparkql.runtime.steps.aggregate import aggregate_eval
    from sparkql.runtime.steps.grade import grade_eval
    from sparkql.runtime.grading.grader import VerifyPool
    from sparkql.runtime.grading.qualitative import list_evals, resolve
    from sparkql.store.api import Store, open_db
    from sparkql.store.lock import RunLock
    from sparkql.store.write import insert

    open_db(db, read_only=True).close()  # a clear error when the file does not exist
    with RunLock(db, study="sparkql regrade"):
        store = Store(db)
        if eval_refs:
            evals = {e.eval_id: e for ref in eval_refs for e in resolve(store.query, ref)}
            ids = list(evals)
        else:
            ids = [r[0] for r in list_evals(store.query)]
            if not ids:
                raise SparkError("the results store has no evals yet", hint="run a study with an `eval` statement first")
        table = Table(title=f"regraded {len(ids)} eval(s)", show_lines=False)
        table.add_column("eval", overflow="fold", min_width=12)
        table.add_column("dataset", overflow="fold", min_width=7)
        for col in ("n", "ok", "changed", "trunc", "acc"):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("pass@k", overflow="fold", min_width=8)
        problems: list[str] = []
        with VerifyPool(workers=workers, timeout_s=timeout) as pool:
            for eval_id in ids:
                (grader, think, n, n_problems, variant, dataset, label), = store.query(
                    "SELECT e.grader, e.think, e.n, e.n_problems, e.variant, e.dataset, coalesce(m.label, e.model_id) "
                    "FROM evals e LEFT JOIN models m USING (model_id) WHERE e.eval_id = ?", [eval_id])
                if grader is None:
                    problems.append(f"{eval_id[:12]}: no grader recorded (written by an older sparkql); skipped")
                    continue
                before = dict(((p, i), c) for p, i, c in store.query(
                    "SELECT problem_id, sample_idx, correct FROM samples WHERE eval_id = ?", [eval_id]))
                apply, summary = grade_eval(store.query, eval_id, grader, bool(think), pool=pool)
                ks = sorted({int(k) for (k,) in store.query(
                    "SELECT DISTINCT k FROM metrics WHERE eval_id = ? AND metric = 'pass@k'", [eval_id])}) \
                    or [k for k in DEFAULT_KS if k <= int(n)]
                metric_note = ""
                with store.transaction() as con:
                    apply(con)
                    q = lambda sql, params: con.execute(sql, params).fetchall()  # noqa: E731
                    try:
                        rows, _ = aggregate_eval(q, eval_id, ks, n=int(n), n_problems=int(n_problems))
                    except SparkError as e:
                        rows = None
                        metric_note = e.message
                    if rows is not None:
                        con.execute("DELETE FROM metrics WHERE eval_id = ?", [eval_id])
                        insert(con, "metrics", rows)
                    after = dict(((p, i), c) for p, i, c in q(
                        "SELECT problem_id, sample_idx, correct FROM samples WHERE eval_id = ?", [eval_id]))
                changed = sum(1 for key, c in after.items() if before.get(key) != c)
                if rows is None:
                    problems.append(f"{label} {variant} on {dataset}: metrics not recomputed: {metric_note}")
                    acc = passk = "-"
                else:
                    by = {(r["metric"], r["k"]): r["value"] for r in rows}
                    acc = f"{by[('accuracy', None)]:.3f}"
                    passk = " ".join(f"@{k} {by[('pass@k', k)]:.3f}" for k in ks if ("pass@k", k) in by)
                title = str(label) if variant == "intact" else f"{label} [{variant}]"
                table.add_row(escape(title), escape(str(dataset)), str(summary["graded"]), str(summary["correct"]),
                              str(changed), str(summary.get("status_truncated", 0)), acc, passk)
    console.print(table)
    for p in problems:
        console.print(f"[yellow]warning:[/] {escape(p)}")
