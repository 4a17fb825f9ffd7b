"""What a study found, read back from the store for the end of `sparkql run`.

Tables restricted to the steps of the plan that was just run: the emergent
heads of each `diff` set per checkpoint (how many, and the strongest ones),
every intervention variant's pass@k beside its intact model's (the paper's
Tables 2 and 3; random-control draws are summarised, not listed), each chosen
intervention's delta beside its random controls' (mean, spread, share beaten),
and the variants whose `top K` found fewer than K heads. Pure SQL over the
store: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EmergentRow:
    set_name: str
    model: str
    step: int | None
    n_heads: int
    top_heads: list[str]
    stability: list[float | None] = field(default_factory=list)
    """Of each of ``top_heads``: share of the (top_n, tau) grid where it is in the set."""
    folds: list[str | None] = field(default_factory=list)
    """Of each of ``top_heads``, with ``with folds = K``: ``n/K``, the folds whose emergent set has it."""


@dataclass
class ScoreRow:
    dataset: str
    model: str
    variant: str
    metric: str
    k: int | None
    value: float
    stderr: float | None
    delta: float | None


@dataclass
class ControlRow:
    dataset: str
    model: str
    variant: str
    k: int | None
    delta: float
    controls: int
    control_mean: float
    control_sd: float | None
    beats: float


@dataclass
class ShortRow:
    variant: str
    model: str
    top_k: int
    heads: list[str]


@dataclass
class FoldRow:
    """One circuit's or emergent set's selection over ``with folds = K`` resamples of the pairs."""

    what: str
    """``circuit DATASET`` or the emergent set's name."""
    model: str
    folds: int
    n_full: int
    """Heads selected on every pair."""
    n_every: int
    """Heads selected in every fold."""
    n_some: int
    """Heads selected in at least one fold."""
    top_heads: list[str] = field(default_factory=list)
    """Heads with their count of folds: ``L1H2 3/3``, most often selected first."""


@dataclass
class StudySummary:
    emergent: list[EmergentRow] = field(default_factory=list)
    scores: list[ScoreRow] = field(default_factory=list)
    controls: list[ControlRow] = field(default_factory=list)
    n_control_evals: int = 0
    """Evals of random-control draws (left out of ``scores``: they are summarised in ``controls``)."""
    short: list[ShortRow] = field(default_factory=list)
    folds: list[FoldRow] = field(default_factory=list)


def fold_rows(con, plan, top: int = 5) -> list[FoldRow]:
    """Selection over folds of the plan's `with folds = K` circuits (the fold_heads table)."""
    keys = {s.key: s for s in plan.steps if s.kind == "fold_heads"}
    if not keys:
        return []
    datasets = {s.key: s.spec.dataset.name for s in plan.steps if s.kind == "circuit"}
    rows = con.execute(
        """
        SELECT f.fold_key, f.kind, f.set_name, f.circuit_id, m.label, m.step, max(f.folds),
               count(*) FILTER (WHERE f.in_full), count(*) FILTER (WHERE f.n_folds = f.folds),
               count(*) FILTER (WHERE f.n_folds > 0),
               list('L' || f.layer || 'H' || f.head || ' ' || f.n_folds || '/' || f.folds
                    ORDER BY f.n_folds DESC, f.in_full DESC, f.layer, f.head) FILTER (WHERE f.n_folds > 0)
        FROM fold_heads f LEFT JOIN models m USING (model_id)
        WHERE f.fold_key IN (SELECT unnest(?))
        GROUP BY f.fold_key, f.kind, f.set_name, f.circuit_id, m.label, m.step
        ORDER BY f.kind, f.set_name, m.step NULLS FIRST, m.label
        """,
        [list(keys)],
    ).fetchall()
    out = []
    for key, kind, set_name, cid, label, _, k, n_full, n_every, n_some, heads in rows:
        what = set_name if kind == "emergent" else f"circuit {datasets.get(cid, '')}".strip()
        out.append(FoldRow(what, label or "", int(k), n_full, n_every, n_some, list(heads or [])[:top]))
    return out


def study_summary(con, plan, top: int = 5) -> StudySummary:
    """Emergent heads of the plan's diff sets and the scores of its evals (pass@1 and the largest k)."""
    out = StudySummary()
    diff_keys = [s.key for s in plan.steps if s.kind == "diff"]
    if diff_keys:
        rows = con.execute(
            """
            SELECT h.set_name, m.label, m.step, count(*) AS n,
                   list('L' || h.layer || 'H' || h.head ORDER BY h.rank) AS heads,
                   list(h.stability ORDER BY h.rank) AS stability,
                   list(f.n_folds || '/' || f.folds ORDER BY h.rank) AS folds
            FROM head_sets h JOIN models m USING (model_id)
            LEFT JOIN fold_heads f ON f.set_key = h.set_key AND f.layer = h.layer AND f.head = h.head
                 AND f.fold_key IN (SELECT unnest(?))
            WHERE h.set_key IN (SELECT unnest(?))
            GROUP BY h.set_key, h.set_name, m.label, m.step
            """,
            [[s.key for s in plan.steps if s.kind == "fold_heads"], diff_keys],
        ).fetchall()
        found = {(r[0], r[1]): r for r in rows}
        # checkpoints whose emergent set is empty have no head_sets rows: list them with 0
        for s in plan.steps:
            if s.kind != "diff":
                continue
            name, model = s.spec.name, s.spec.model
            r = found.get((name, model.label))
            out.emergent.append(EmergentRow(name, model.label, model.step, r[3] if r else 0, (r[4] if r else [])[:top],
                                            (r[5] if r else [])[:top], (r[6] if r else [])[:top]))
        out.emergent.sort(key=lambda e: (e.set_name, e.step is None, e.step or 0))
    eval_keys = [s.key for s in plan.steps if s.kind == "generate"]
    if eval_keys:
        rows = con.execute(
            """
            WITH picked AS (
                SELECT *, max(k) OVER (PARTITION BY eval_id) AS kmax FROM scores
                WHERE eval_id IN (SELECT unnest(?)) AND metric = 'pass@k')
            SELECT dataset, model, variant, metric, k, value, stderr, delta, control,
                   delta, controls, control_mean, control_sd, beats_controls FROM picked
            WHERE k = 1 OR k = kmax
            ORDER BY dataset, model, variant = 'intact' DESC, variant, k
            """,
            [eval_keys],
        ).fetchall()
        out.scores = [ScoreRow(*r[:8]) for r in rows if r[8] is None]
        out.n_control_evals = len({(r[0], r[1], r[2]) for r in rows if r[8] is not None})
        out.controls = [ControlRow(r[0], r[1], r[2], r[4], *r[9:]) for r in rows
                        if r[8] is None and r[10] and r[9] is not None]
    variant_keys = [s.key for s in plan.steps if s.kind == "intervene"]
    if variant_keys:
        rows = con.execute(
            """
            SELECT v.name, m.label, v.top_k, v.heads FROM variants v LEFT JOIN models m USING (model_id)
            WHERE v.variant_id IN (SELECT unnest(?)) AND v.top_k IS NOT NULL AND v.n_heads < v.top_k
            ORDER BY v.name, m.label
            """,
            [variant_keys],
        ).fetchall()
        out.short = [ShortRow(r[0], r[1], r[2], list(r[3] or [])) for r in rows]
    out.folds = fold_rows(con, plan, top)
    return out


def render(summary: StudySummary, console) -> None:
    """Print the two tables with rich (values as plain text, never markup)."""
    from rich.table import Table
    from rich.text import Text

    if summary.emergent:
        folds = any(f for e in summary.emergent for f in e.folds)
        t = Table(title="emergent heads (in the checkpoint's circuit, not in the base's; in brackets the share of "
                        "a top_n +-30% x tau grid where the head is emergent" +
                        ("; then n/K: the folds whose emergent set has it)" if folds else ")"), title_justify="left")
        for col in ("set", "model", "n", "strongest"):
            t.add_column(col, justify="right" if col == "n" else "left")
        for e in summary.emergent:
            n = len(e.top_heads)
            shown = [_head_cell(h, s, f) for h, s, f in zip(e.top_heads, e.stability or [None] * n, e.folds or [None] * n)]
            t.add_row(Text(e.set_name), Text(e.model), str(e.n_heads), Text(", ".join(shown)))
        console.print(t)
    if summary.folds:
        render_folds(summary.folds, console)
    if summary.scores:
        # one row per (dataset, model, variant): pass@1 and pass@K at the largest k, each with its delta
        rows: dict[tuple, dict] = {}
        for r in summary.scores:
            rows.setdefault((r.dataset, r.model, r.variant), {})[r.k] = r
        t = Table(title="pass@k, intact vs variants (delta: variant minus its intact model; more in the scores view)",
                  title_justify="left", box=None, header_style="bold")

        def cells(r) -> list[str]:
            if r is None:
                return ["", ""]
            shown = r.delta is not None and r.variant != "intact"
            return [f"{r.value:.3f}", f"{r.delta:+.3f}" if shown else ""]

        table_rows = []
        for (dataset, model, variant), by_k in rows.items():
            kmax = max((k for k in by_k if k is not None), default=None)
            last = cells(by_k.get(kmax)) if kmax not in (None, 1) else ["", ""]
            table_rows.append([dataset, model, variant, *cells(by_k.get(1)),
                               str(kmax) if kmax not in (None, 1) else "", *last])
        _fill_whole(t, ("dataset", "model", "variant", "pass@1", "delta", "K", "pass@K", "delta"), table_rows)
        console.print(t)
        if summary.n_control_evals:
            console.print(Text(f"(+ {summary.n_control_evals} evals of random-control draws: the scores view, "
                               "WHERE control IS NOT NULL)"))
    if summary.controls:
        render_controls(summary.controls, console)
    for r in summary.short:
        heads = ", ".join(r.heads) or "none"
        console.print(Text(f"warning: {r.variant} on {r.model}: top {r.top_k} asked, the set has "
                           f"{len(r.heads)} head(s) ({heads})", style="yellow"))


def _fill_whole(t, cols: tuple[str, ...], rows: list[list[str]]) -> None:
    """Add ``cols`` (the first three are text, left-aligned; the rest numbers) and ``rows`` to a
    rich table. Every cell but the variant's name is kept whole, however narrow the terminal: a cut
    model name reads as another model ("sft[step=80…" for sft[step=800]) and a cut number as
    another value; the variant's name folds instead."""
    from rich.text import Text

    for i, col in enumerate(cols):
        whole = col != "variant"
        t.add_column(col, justify="left" if i < 3 else "right", no_wrap=whole, overflow="fold",
                     min_width=max(len(c[i]) for c in [cols, *rows]) if whole else None)
    for r in rows:
        t.add_row(*(Text(x) for x in r))


def _head_cell(head: str, share: float | None, folds: str | None) -> str:
    """``L1H2``, ``L1H2 (0.86)`` or ``L1H2 (0.86, 2/3)``."""
    parts = ([] if share is None else [f"{share:.2f}"]) + ([] if folds is None else [folds])
    return f"{head} ({', '.join(parts)})" if parts else head


def render_controls(rows: list[ControlRow], console) -> None:
    """Each chosen intervention's delta beside its random controls' (the `scores` view's columns)."""
    from rich.table import Table

    t = Table(title="interventions vs random controls (same model, op, factor and head count; "
                    "beats: share of controls it exceeds in its own direction)",
              title_justify="left", box=None, header_style="bold", pad_edge=False)
    cells = [[r.dataset, r.model, r.variant, "" if r.k is None else str(r.k), f"{r.delta:+.3f}", str(r.controls),
              f"{r.control_mean:+.3f}", "" if r.control_sd is None else f"{r.control_sd:.3f}", f"{r.beats:.0%}"]
             for r in rows]
    _fill_whole(t, ("dataset", "model", "variant", "k", "delta", "controls", "mean", "sd", "beats"), cells)
    console.print(t)


def render_folds(rows: list[FoldRow], console) -> None:
    """Each `with folds = K` circuit's and emergent set's selection over the folds."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title="selection over folds (each fold scores the pairs outside it; a head's count: the folds whose "
                    "circuit or emergent set has it)", title_justify="left", box=None, header_style="bold")
    for col in ("set", "model", "K", "full", "every fold", "some fold", "most often"):
        numeric = col in ("K", "full", "every fold", "some fold")
        t.add_column(col, justify="right" if numeric else "left", no_wrap=numeric)
    for r in rows:
        t.add_row(Text(r.what), Text(r.model), str(r.folds), str(r.n_full), str(r.n_every), str(r.n_some),
                  Text(", ".join(r.top_heads)))
    console.print(t)
