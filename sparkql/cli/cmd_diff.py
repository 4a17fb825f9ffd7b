"""``sparkql diff A B``: problems newly solved and newly missed between two evals, with
both completions side by side (paper appendix A.4/A.5). Read-only, torch-free."""

from __future__ import annotations

import click

from sparkql.cli.common import console, db_option, require_tables


def _tail(text: str, chars: int) -> str:
    """The end of a completion (where the answer is), marked when cut."""
    if chars <= 0 or len(text) <= chars:
        return text
    return "…" + text[-chars:]


def _metric_line(d) -> str:
    """A's and B's metrics with B - A, in the order of the paper's tables."""
    keys = sorted(set(d.metrics_a) & set(d.metrics_b),
                  key=lambda mk: ({"accuracy": 0, "pass@k": 1, "success@k": 2}.get(mk[0], 3), mk[1] or 0))
    parts = []
    for metric, k in keys:
        if metric not in ("accuracy", "pass@k"):
            continue
        name = "accuracy" if k is None else metric.replace("@k", f"@{k}")
        va, vb = d.metrics_a[(metric, k)], d.metrics_b[(metric, k)]
        parts.append(f"{name} {va:.3f} -> {vb:.3f} ({vb - va:+.3f})")
    return ("\n" + "   ".join(parts)) if parts else ""


def _status_line(d) -> str:
    """Both sides' grading statuses: an answer that timed out or errored is counted wrong, so a
    change in those counts can be a change in grading, not in the model."""
    def side(counts: dict) -> str:
        return " · ".join(f"{name} {counts.get(s, 0)}" for s, name in
                          (("ok", "ok"), ("no_answer", "no answer"), ("truncated", "truncated"),
                           ("timeout", "timeout"), ("error", "error")))
    return f"\nstatuses  A: {side(d.statuses_a)}\n          B: {side(d.statuses_b)}"


@click.command("diff")
@click.argument("a")
@click.argument("b")
@db_option
@click.option("--dataset", default=None, help="Compare on this dataset only.")
@click.option("--limit", default=5, show_default=True, help="Problems shown per direction (0: all).")
@click.option("--chars", default=1200, show_default=True, help="Characters shown from the end of each completion (0: all).")
def diff(a: str, b: str, db: str, dataset: str | None, limit: int, chars: int) -> None:
    """Problems newly solved / missed by B relative to A.

    A and B name evals: MODEL:VARIANT (``base:ablate emergent top 10``), a variant name, a
    model name or label (its intact evals), or an eval id (prefix). Add ``@lenient`` (or
    ``@strict``) to name the grading ``sparkql regrade --extract`` wrote: ``diff base base@lenient``.
    """
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    from sparkql.runtime.grading import qualitative as Q
    from sparkql.store.connection import open_db, require_current_schema

    con = open_db(db)
    try:
        require_current_schema(con, db)
        require_tables(con, db, "evals", "models", "samples")
        query = lambda sql, params: con.execute(sql, params).fetchall()  # noqa: E731
        pairs = Q.pair(Q.resolve(query, a, dataset), Q.resolve(query, b, dataset))
        results = [Q.diff(query, ea, eb) for ea, eb in pairs]
    finally:
        con.close()

    for d in results:
        console.print(Panel.fit(
            f"[bold]{escape(d.a.title)}[/] vs [bold]{escape(d.b.title)}[/] on [bold]{escape(d.a.dataset)}[/]\n"
            f"solved: {d.solved_a} vs {d.solved_b} of {d.n_problems} problems   "
            f"[green]newly correct {len(d.newly_correct)}[/]   [red]newly incorrect {len(d.newly_incorrect)}[/]"
            + _metric_line(d) + _status_line(d)))
        for label, items, style in (("newly correct", d.newly_correct, "green"), ("newly incorrect", d.newly_incorrect, "red")):
            shown = items if limit <= 0 else items[:limit]
            for p in shown:
                t = Table(title=f"[{style}]{label}[/] {escape(p.problem_id)}   gold: {escape(str(p.gold))}",
                          show_lines=True, expand=True, title_justify="left")
                for e, c, n, s in ((d.a, p.correct_a, p.n_a, p.shown_a), (d.b, p.correct_b, p.n_b, p.shown_b)):
                    t.add_column(f"{escape(e.title)}  ({c}/{n} correct; sample {s.sample_idx}: "
                                 f"{escape(str(s.extracted))}, {s.status})", ratio=1)
                t.add_row(escape(_tail(p.shown_a.completion, chars)), escape(_tail(p.shown_b.completion, chars)))
                console.print(t)
            if limit > 0 and len(items) > limit:
                console.print(f"… {len(items) - limit} more {label} (--limit 0 shows all)")
