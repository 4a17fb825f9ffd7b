"""pass@k, success@k, accuracy and bootstrap standard errors (docs/evaluation.md).

Torch-free (numpy only), so ``sparkql regrade`` and the TUI recompute metrics without a model.

A *correctness table* maps each problem id to its samples' correctness in sample-index order.
Every metric here refuses (SparkError) a table with a missing or ungraded sample: pass@k over a
partial table would silently estimate something else.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import comb
from typing import Mapping, Sequence

import numpy as np

from sparkql.errors import SparkError
from sparkql.runtime.grading.grader import STATUSES


def pass_at_k_exact(n: int, c: int, k: int) -> Fraction:
    """The unbiased estimator 1 - C(n-c, k) / C(n, k) as an exact fraction (Chen et al. 2021)."""
    if not 0 <= c <= n:
        raise ValueError(f"c={c} must be within 0..n={n}")
    if not 1 <= k <= n:
        raise SparkError(f"pass@{k} needs k <= n (n = {n} samples per problem)", hint=f"use k in 1..{n}, or sample more (n >= {k})")
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def pass_at_k(n: int, c: int, k: int) -> float:
    return float(pass_at_k_exact(n, c, k))


def check_complete(table: Mapping[str, Sequence[bool | None]], n: int, what: str = "eval") -> None:
    """SparkError unless every problem has exactly ``n`` graded samples."""
    if not table:
        raise SparkError(f"{what}: no samples to score", hint="run the eval first (`sparkql run`)")
    short = [(pid, len(v)) for pid, v in table.items() if len(v) < n]
    ungraded = [pid for pid, v in table.items() if any(x is None for x in v)]
    if short:
        pid, have = short[0]
        raise SparkError(
            f"{what}: {len(short)} problem(s) have missing samples (e.g. {pid}: {have} of {n})",
            hint="pass@k is only defined over complete samples; rerun the study to generate the missing ones",
        )
    if ungraded:
        raise SparkError(f"{what}: {len(ungraded)} problem(s) have ungraded samples (e.g. {ungraded[0]})",
                         hint="run `sparkql regrade`")


@dataclass(frozen=True)
class MetricRow:
    metric: str
    """pass@k | success@k | accuracy, or a status share: ok | no_answer | truncated | timeout | error"""
    k: int | None
    value: float
    stderr: float | None


def per_problem(table: Mapping[str, Sequence[bool]], metric: str, k: int | None, n: int) -> np.ndarray:
    """Each problem's value of a metric (its mean over problems is the metric)."""
    rows = [list(v)[:n] for v in table.values()]
    if metric == "pass@k":
        return np.array([pass_at_k(n, int(sum(r)), k) for r in rows], dtype=np.float64)
    if metric == "success@k":
        return np.array([1.0 if any(r[:k]) else 0.0 for r in rows], dtype=np.float64)
    if metric == "accuracy":
        return np.array([sum(r) / n for r in rows], dtype=np.float64)
    raise ValueError(metric)


def bootstrap_stderr(values: np.ndarray, draws: np.ndarray | None) -> float | None:
    """Standard deviation of the mean over bootstrap resamples of problems (``draws``: indices,
    shape (B, P)). None when there is no resampling (B = 0) or a single problem."""
    if draws is None or draws.shape[0] < 2 or len(values) < 2:
        return None
    return float(values[draws].mean(axis=1).std(ddof=1))


def compute_metrics(table: Mapping[str, Sequence[bool | None]], n: int, ks: Sequence[int],
                    bootstrap: int = 1000, seed: int = 0, statuses: Mapping[str, Sequence[str]] | None = None,
                    what: str = "eval") -> list[MetricRow]:
    """pass@k and success@k for every k in ``ks`` with k <= n, mean accuracy, and (given the
    samples' statuses) the share of samples with each status (:data:`STATUSES`: ok, no_answer,
    truncated, timeout, error; the five shares add up to 1). Standard errors: bootstrap
    over problems; all metrics use the same resamples (seeded), so their errors are comparable."""
    check_complete(table, n, what)
    n_problems = len(table)
    draws = None
    if bootstrap > 1 and n_problems > 1:
        draws = np.random.default_rng(seed).integers(0, n_problems, size=(bootstrap, n_problems))
    out: list[MetricRow] = []
    for k in sorted(set(ks)):
        if k > n or k < 1:
            continue
        for metric in ("pass@k", "success@k"):
            v = per_problem(table, metric, k, n)  # type: ignore[arg-type]
            out.append(MetricRow(metric, k, float(v.mean()), bootstrap_stderr(v, draws)))
    v = per_problem(table, "accuracy", None, n)  # type: ignore[arg-type]
    out.append(MetricRow("accuracy", None, float(v.mean()), bootstrap_stderr(v, draws)))
    if statuses is not None:
        for status in STATUSES:
            v = np.array([sum(s == status for s in list(st)[:n]) / n for st in statuses.values()], dtype=np.float64)
            out.append(MetricRow(status, None, float(v.mean()), bootstrap_stderr(v, draws)))
    return out


def monte_carlo_pass_at_k(table: Mapping[str, Sequence[bool]], k: int, trials: int, seed: int = 0) -> float:
    """pass@k by simulation: draw k of each problem's n samples without replacement, many times.
    Used by the tests as an independent check of the exact formula."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for v in table.values():
        arr = np.asarray(v, dtype=bool)
        picks = np.argsort(rng.random((trials, len(arr))), axis=1)[:, :k]
        total += arr[picks].any(axis=1).mean()
    return total / len(table)
