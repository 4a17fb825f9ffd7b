"""Qualitative comparison of two evals (paper appendix A.4/A.5), torch-free.

Shared by ``sparkql diff`` and the TUI. Every function takes ``query(sql, params) -> rows``
(a ``Store.query``, or a lambda over a DuckDB connection), so it works on a live store.

A problem is *solved* by an eval when at least one of its samples is correct. Between A and
B, *newly correct* problems are solved by B and not by A; *newly incorrect* the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sparkql.errors import SparkError, known_names_hint

Query = Callable[[str, list], list]


@dataclass(frozen=True)
class EvalInfo:
    eval_id: str
    model_id: str
    model: str
    """The model's label (``base``, ``ckpt[step=200]``)."""
    variant: str
    dataset: str
    n: int
    extract: str = "strict"
    """The answer-extraction rule of its grades."""
    regraded_from: str | None = None
    """For an eval made by ``sparkql regrade --extract``: the eval whose completions it holds."""

    @property
    def title(self) -> str:
        base = self.model if self.variant == "intact" else f"{self.model} [{self.variant}]"
        return base if self.extract == "strict" else f"{base} @{self.extract}"


@dataclass(frozen=True)
class Sample:
    sample_idx: int
    completion: str
    extracted: str | None
    status: str | None
    correct: bool | None
    finish_reason: str | None


@dataclass
class ProblemDiff:
    problem_id: str
    prompt: str
    gold: str | None
    correct_a: int
    correct_b: int
    n_a: int
    n_b: int
    shown_a: Sample | None = None
    """A's sample shown: its first correct sample when it has one, else its first."""
    shown_b: Sample | None = None


@dataclass
class EvalDiff:
    a: EvalInfo
    b: EvalInfo
    n_problems: int
    newly_correct: list[ProblemDiff] = field(default_factory=list)
    newly_incorrect: list[ProblemDiff] = field(default_factory=list)
    solved_a: int = 0
    solved_b: int = 0
    metrics_a: dict = field(default_factory=dict)
    """{(metric, k): value} of A's ``metrics`` rows (empty before the eval is aggregated)."""
    metrics_b: dict = field(default_factory=dict)
    statuses_a: dict = field(default_factory=dict)
    """{status: count} over A's samples (ok, no_answer, truncated, timeout, error)."""
    statuses_b: dict = field(default_factory=dict)


_EVALS_SQL = (
    "SELECT e.eval_id, e.model_id, coalesce(m.label, m.name, e.model_id), e.variant, e.dataset, e.n, m.name, "
    "coalesce(e.extract, 'strict'), e.regraded_from "
    "FROM evals e LEFT JOIN models m USING (model_id)"
)
EXTRACT_RULES = ("strict", "lenient")


def list_evals(query: Query) -> list[tuple]:
    return query(_EVALS_SQL + " ORDER BY 3, 4, 5", [])


def resolve(query: Query, ref: str, dataset: str | None = None) -> list[EvalInfo]:
    """The evals a user means by ``ref``: an eval id (or a unique prefix of at least 6
    characters), ``MODEL:VARIANT``, a variant name, or a model's name or label (its intact
    evals). ``dataset`` narrows the result. A name may end in ``@strict`` or ``@lenient`` to
    pick the grading under that extraction rule (``base@lenient``: what ``sparkql regrade
    --extract lenient`` wrote); without it a name means the generated evals."""
    rows = list_evals(query)
    if not rows:
        raise SparkError("the results store has no evals yet", hint="run a study with an `eval` statement first")

    def info(r) -> EvalInfo:
        return EvalInfo(r[0], r[1], r[2], r[3], r[4], int(r[5] or 0), r[7], r[8])

    rule = None
    head, sep, tail = ref.rpartition("@")
    if sep and tail.strip().lower() in EXTRACT_RULES:
        ref, rule = head.strip(), tail.strip().lower()

    def match(pred) -> list[tuple]:
        # a plain name means the generated evals; `@rule` the evals graded under that rule
        return [r for r in rows if pred(r) and (dataset is None or r[4] == dataset)
                and (r[7] == rule if rule else r[8] is None)]

    low = ref.strip().lower()
    found = [r for r in rows if r[0] == ref and (dataset is None or r[4] == dataset)]
    if not found and len(ref) >= 6:
        found = [r for r in rows if r[0].startswith(ref) and (dataset is None or r[4] == dataset)
                 and (rule is None or r[7] == rule)]
    if not found and ":" in ref:
        model, variant = (x.strip().lower() for x in ref.split(":", 1))
        found = match(lambda r: model in {str(r[2]).lower(), str(r[6] or "").lower()} and str(r[3]).lower() == variant)
    if not found:
        found = match(lambda r: str(r[3]).lower() == low)
    if not found:
        found = match(lambda r: r[3] == "intact" and low in {str(r[2]).lower(), str(r[6] or "").lower()})
    if not found:
        names = {str(r[3]) for r in rows} | {str(r[2]) for r in rows}
        where = f" on dataset {dataset}" if dataset else ""
        if rule is not None and ref.lower() in {n.lower() for n in names} | {str(r[6] or "").lower() for r in rows}:
            # the name exists; what is missing is its grading under that rule
            raise SparkError(f"no eval matches {ref!r}{where} graded with extract = {rule}",
                             hint=f"make one: sparkql regrade --eval '{ref}' --extract {rule}")
        raise SparkError(f"no eval matches {ref!r}{where}",
                         hint=known_names_hint(ref, names, "models and variants") + "; or give an eval id (`sparkql sql \"SELECT * FROM evals\"`)")
    return [info(r) for r in found]


def pair(a: list[EvalInfo], b: list[EvalInfo]) -> list[tuple[EvalInfo, EvalInfo]]:
    """Pair A's and B's evals by dataset; each dataset must be unambiguous on both sides."""
    def by_ds(evals: list[EvalInfo], side: str) -> dict[str, EvalInfo]:
        out: dict[str, EvalInfo] = {}
        for e in evals:
            if e.dataset in out:
                raise SparkError(
                    f"{side} matches several evals on dataset {e.dataset} ({out[e.dataset].title}, {e.title})",
                    hint="name one: MODEL:VARIANT, an eval id, or narrow with --dataset")
            out[e.dataset] = e
        return out

    da, db = by_ds(a, "A"), by_ds(b, "B")
    common = sorted(set(da) & set(db))
    if not common:
        raise SparkError("A and B share no dataset",
                         hint=f"A has {', '.join(sorted(da))}; B has {', '.join(sorted(db))}")
    return [(da[d], db[d]) for d in common]


def _samples(query: Query, eval_id: str) -> dict[str, list[tuple]]:
    rows = query(
        "SELECT problem_id, sample_idx, completion, extracted, status, correct, finish_reason, prompt, gold "
        "FROM samples WHERE eval_id = ? ORDER BY problem_id, sample_idx", [eval_id])
    out: dict[str, list[tuple]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(r)
    return out


def status_counts(rows: dict[str, list[tuple]]) -> dict[str, int]:
    """{status: count} over an eval's samples (as :func:`_samples` returns them)."""
    counts = dict.fromkeys(("ok", "no_answer", "truncated", "timeout", "error"), 0)
    for sample_rows in rows.values():
        for r in sample_rows:
            if r[4] is not None:
                counts[r[4]] = counts.get(r[4], 0) + 1
    return counts


def _metrics(query: Query, eval_id: str) -> dict:
    return {(m, k): v for m, k, v in query("SELECT metric, k, value FROM metrics WHERE eval_id = ?", [eval_id])}


def _shown(rows: list[tuple]) -> Sample:
    pick = next((r for r in rows if r[5]), rows[0])
    return Sample(int(pick[1]), pick[2] or "", pick[3], pick[4], pick[5], pick[6])


def diff(query: Query, a: EvalInfo, b: EvalInfo) -> EvalDiff:
    """Newly correct / newly incorrect problems of B relative to A (problems both evals have)."""
    sa, sb = _samples(query, a.eval_id), _samples(query, b.eval_id)
    ungraded = [e.title for e, s in ((a, sa), (b, sb)) if any(r[5] is None for rows in s.values() for r in rows)]
    if ungraded:
        raise SparkError(f"ungraded samples in {', '.join(ungraded)}", hint="run `sparkql regrade`")
    common = sorted(set(sa) & set(sb))
    out = EvalDiff(a, b, len(common), metrics_a=_metrics(query, a.eval_id), metrics_b=_metrics(query, b.eval_id),
                   statuses_a=status_counts(sa), statuses_b=status_counts(sb))
    for pid in common:
        ra, rb = sa[pid], sb[pid]
        ca, cb = sum(bool(r[5]) for r in ra), sum(bool(r[5]) for r in rb)
        out.solved_a += ca > 0
        out.solved_b += cb > 0
        if (ca > 0) == (cb > 0):
            continue
        d = ProblemDiff(pid, ra[0][7] or "", ra[0][8], ca, cb, len(ra), len(rb), _shown(ra), _shown(rb))
        (out.newly_correct if cb > 0 else out.newly_incorrect).append(d)
    return out


def metrics_table(query: Query, eval_ids: list[str] | None = None) -> list[dict]:
    """Metrics of evals beside the intact model's under the same sampling, with deltas (the
    store's ``scores`` view): the layout of the paper's Tables 2 and 3."""
    sql = ("SELECT eval_id, model, variant, dataset, metric, k, value, stderr, intact_value, delta FROM scores")
    params: list = []
    if eval_ids:
        sql += " WHERE eval_id IN (" + ",".join("?" * len(eval_ids)) + ")"
        params = list(eval_ids)
    sql += " ORDER BY dataset, model, variant <> 'intact', variant, metric, k NULLS FIRST"
    cols = ["eval_id", "model", "variant", "dataset", "metric", "k", "value", "stderr", "intact_value", "delta"]
    return [dict(zip(cols, r)) for r in query(sql, params)]
