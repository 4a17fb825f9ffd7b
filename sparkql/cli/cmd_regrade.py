"""``sparkql regrade``: grade stored completions again and recompute their metrics.

Never generates and never loads a model (no torch): it reads ``samples.completion`` and
``samples.gold``, grades with the eval's grader (``evals.grader``), thinking mode and extraction
rule (``evals.extract``), and rewrites ``extracted``, ``status``, ``correct`` and the eval's
``metrics`` rows. Use it after a grader fix, or to grade an eval whose run was interrupted
before its grade step.

``--extract lenient`` (or ``strict``) grades under the other rule *into a new eval row*
(``evals.regraded_from`` names the eval whose completions it copies), so both gradings can be
compared in SQL, with ``sparkql diff base base@lenient``, or in the TUI.
"""

from __future__ import annotations

import click

from sparkql.cli.common import console, db_option

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STATUS_COLUMNS = (("ok", "ok"), ("no_answer", "none"), ("truncated", "trunc"), ("timeout", "t/o"),
                  ("error", "err"))
"""Grading statuses and their (narrow) column headers: answered, no answer, truncated, timeout, error."""


def plan_targets(chosen: list[tuple], extract_of: dict[str, str | None], rule: str | None) -> list[tuple[str, str, str | None]]:
    """What to grade for each chosen eval ((eval_id, extract, regraded_from) rows): (the eval
    whose samples are read, the rule, the new eval to write or None to regrade in place). An
    eval already graded under the rule is regraded in place; otherwise its source's
    completions go to the derived eval (one per source and rule, replaced on every regrade)."""
    from sparkql.runtime.steps.grade import derived_eval_id

    out: dict[str, tuple[str, str, str | None]] = {}
    for eval_id, extract, regraded_from in chosen:
        have = extract or "strict"
        want = rule or have
        source = regraded_from or eval_id
        if have == want:
            out.setdefault(eval_id, (eval_id, want, None))
        elif (extract_of.get(source) or "strict") == want:
            out.setdefault(source, (source, want, None))
        else:
            target = derived_eval_id(source, want)
            out.setdefault(target, (source, want, target))
    return list(out.values())


@click.command("regrade")
@db_option
@click.option("--eval", "eval_refs", multiple=True, metavar="EVAL",
              help="An eval id (or unique prefix), MODEL:VARIANT, a variant or a model (NAME@lenient: its lenient "
                   "grading); repeatable. Default: every eval.")
@click.option("--extract", "rule", type=click.Choice(["strict", "lenient"]), default=None,
              help="Grade math answers under this extraction rule; an eval graded otherwise gets a new eval row "
                   "with the same completions. Default: each eval's own rule.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds math-verify may spend on one answer.")
@click.option("--workers", default=2, show_default=True, help="math-verify worker processes.")
def regrade(db: str, eval_refs: tuple[str, ...], rule: str | None, timeout: float, workers: int) -> None:
    """Regrade stored completions (no generation) and recompute pass@k, success@k, accuracy."""
    from sparkql.errors import SparkError
    from sparkql.runtime.grading.qualitative import list_evals, resolve
    from sparkql.store.api import Store, open_db
    from sparkql.store.lock import RunLock

    open_db(db, read_only=True).close()  # a clear error when the file does not exist
    with RunLock(db, study="sparkql regrade"):
        store = Store(db)
        try:  # closing the store matters: DuckDB objects left to the interpreter's exit leak noisily
            if eval_refs:
                ids = list({e.eval_id: e for ref in eval_refs for e in resolve(store.query, ref)})
            else:
                ids = [r[0] for r in list_evals(store.query)]
                if not ids:
                    raise SparkError("the results store has no evals yet", hint="run a study with an `eval` statement first")
            every = {r[0]: r for r in store.query("SELECT eval_id, extract, regraded_from FROM evals", [])}
            targets = plan_targets([every[i] for i in ids], {e: r[1] for e, r in every.items()}, rule)
            table, problems = _regrade_all(store, targets, timeout, workers)
        finally:
            store.close()
    console.print(table)
    if any(t[2] is not None for t in targets):
        console.print("* a new eval row with the same completions (evals.regraded_from); "
                      "compare with `sparkql diff A A@lenient`")
    console.print("right: correct samples; chg: verdicts changed; none/trunc/t/o/err: no answer, truncated, "
                  "timeout, error (all counted wrong)", style="dim")
    for p in problems:
        console.print(f"[yellow]warning:[/] {p}")


def _regrade_all(store, targets, timeout: float, workers: int):
    from rich.markup import escape
    from rich.table import Table

    from sparkql.errors import SparkError
    from sparkql.runtime.steps.aggregate import aggregate_eval
    from sparkql.runtime.steps.grade import grade_eval
    from sparkql.runtime.grading.grader import VerifyPool
    from sparkql.store.write import insert

    table = Table(title=f"regraded {len(targets)} eval(s)", show_lines=False)
    table.add_column("eval", overflow="fold", min_width=12)
    table.add_column("dataset", overflow="fold", min_width=7)
    table.add_column("extract", no_wrap=True)
    for col in ("n", "right", "chg", *(short for _, short in STATUS_COLUMNS), "acc"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("pass@k", overflow="fold", min_width=8)
    problems: list[str] = []
    with VerifyPool(workers=workers, timeout_s=timeout) as pool:
        for source, rule, into in targets:
            (grader, think, n, n_problems, variant, dataset, label), = store.query(
                "SELECT e.grader, e.think, e.n, e.n_problems, e.variant, e.dataset, coalesce(m.label, e.model_id) "
                "FROM evals e LEFT JOIN models m USING (model_id) WHERE e.eval_id = ?", [source])
            title = str(label) if variant == "intact" else f"{label} [{variant}]"
            if grader is None:
                problems.append(escape(f"{title} on {dataset} ({source[:12]}): no grader recorded "
                                       "(written by an older sparkql); skipped"))
                continue
            target = into or source
            # `changed`: verdicts that differ from the previous grading (for a new eval: from the source's)
            before = dict(((p, i), c) for p, i, c in store.query(
                "SELECT problem_id, sample_idx, correct FROM samples WHERE eval_id = ?", [source]))
            apply, summary = grade_eval(store.query, source, grader, bool(think), pool=pool, extract=rule, into=into)
            ks = sorted({int(k) for (k,) in store.query(
                "SELECT DISTINCT k FROM metrics WHERE eval_id = ? AND metric = 'pass@k'", [source])}) \
                or [k for k in DEFAULT_KS if k <= int(n)]
            metric_note = ""
            with store.transaction() as con:
                apply(con)
                q = lambda sql, params: con.execute(sql, params).fetchall()  # noqa: E731
                try:
                    rows, _ = aggregate_eval(q, target, ks, n=int(n), n_problems=int(n_problems))
                except SparkError as e:
                    rows = None
                    metric_note = e.message
                if rows is not None:
                    con.execute("DELETE FROM metrics WHERE eval_id = ?", [target])
                    insert(con, "metrics", rows)
                after = dict(((p, i), c) for p, i, c in q(
                    "SELECT problem_id, sample_idx, correct FROM samples WHERE eval_id = ?", [target]))
            changed = sum(1 for key, c in after.items() if before.get(key) != c)
            if rows is None:
                problems.append(escape(f"{title} on {dataset}: metrics not recomputed: {metric_note}"))
                acc = passk = "-"
            else:
                by = {(r["metric"], r["k"]): r["value"] for r in rows}
                acc = f"{by[('accuracy', None)]:.3f}"
                passk = " ".join(f"@{k} {by[('pass@k', k)]:.3f}" for k in ks if ("pass@k", k) in by)
            if summary.get("status_timeout") or summary.get("status_error"):
                problems.append(escape(
                    f"{title} on {dataset} ({rule}): {summary.get('status_timeout', 0)} timeout(s), "
                    f"{summary.get('status_error', 0)} error(s), counted wrong; see them with sparkql sql "
                    f"\"SELECT problem_id, sample_idx, status, extracted FROM samples WHERE eval_id = '{target}' "
                    "AND status IN ('timeout', 'error')\""))
            table.add_row(escape(title), escape(str(dataset)), rule + ("*" if into else ""),
                          str(summary["graded"]), str(summary["correct"]), str(changed),
                          *(str(summary.get(f"status_{s}", 0)) for s, _ in STATUS_COLUMNS), acc, passk)
    return table, problems
