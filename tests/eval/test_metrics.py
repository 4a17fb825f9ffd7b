"""pass@k against the exact formula and a Monte-Carlo estimate; success@k; refusals."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkql.errors import SparkError
from sparkql.runtime.grading.metrics import (
    compute_metrics,
    monte_carlo_pass_at_k,
    pass_at_k,
    pass_at_k_exact,
)


def synthetic_table(n_problems: int, n: int, seed: int) -> dict[str, list[bool]]:
    """Problems of varied difficulty: each has its own success rate."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0, 1, n_problems)
    return {f"p{i}": list(rng.random(n) < r) for i, r in enumerate(rates)}


def by_enumeration(n: int, c: int, k: int) -> Fraction:
    """The share of all k-subsets of n samples (c correct) that contain a correct one."""
    samples = [True] * c + [False] * (n - c)
    hits = sum(any(samples[i] for i in subset) for subset in combinations(range(n), k))
    return Fraction(hits, comb(n, k))


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_exact_formula_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k_exact(n, c, k) == by_enumeration(n, c, k)


def test_known_values():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k_exact(4, 1, 2) == Fraction(1, 2)
    assert pass_at_k_exact(64, 1, 16) == Fraction(1, 4)
    # pass@1 is the mean accuracy; pass@n is "any correct"
    assert pass_at_k_exact(10, 3, 10) == 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_exact_formula_properties(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    p = pass_at_k_exact(n, c, k)
    assert 0 <= p <= 1
    assert pass_at_k_exact(n, c, 1) == Fraction(c, n)
    if k < n:  # more attempts never hurt
        assert pass_at_k_exact(n, c, k + 1) >= p


def test_pass_at_k_against_monte_carlo():
    table = synthetic_table(30, 16, seed=1)
    for k in (1, 4, 8):
        exact = np.mean([pass_at_k(16, sum(v), k) for v in table.values()])
        mc = monte_carlo_pass_at_k(table, k, trials=4000, seed=2)
        assert abs(exact - mc) < 0.01, (k, exact, mc)


def test_compute_metrics_values_and_order_sensitivity():
    # p0: correct only at sample 3; p1: correct at samples 0 and 1; p2: never.
    table = {"p0": [False, False, False, True], "p1": [True, True, False, False], "p2": [False] * 4}
    rows = {(r.metric, r.k): r for r in compute_metrics(table, n=4, ks=[1, 2, 4, 8], bootstrap=200, seed=0)}
    assert ("pass@k", 8) not in rows  # k > n is never reported
    assert rows[("accuracy", None)].value == pytest.approx(3 / 12)
    assert rows[("pass@k", 1)].value == pytest.approx(np.mean([1 / 4, 2 / 4, 0]))
    assert rows[("pass@k", 2)].value == pytest.approx(np.mean([1 - 3 / 6, 1 - 1 / 6, 0]))
    # success@k reads samples in order: p0 only succeeds by its fourth sample
    assert rows[("success@k", 1)].value == pytest.approx(1 / 3)
    assert rows[("success@k", 2)].value == pytest.approx(1 / 3)
    assert rows[("success@k", 4)].value == pytest.approx(2 / 3)
    assert rows[("pass@k", 4)].value == rows[("success@k", 4)].value
    for r in rows.values():
        assert r.stderr is not None and r.stderr >= 0


def test_bootstrap_is_seeded_and_sane():
    table = synthetic_table(200, 4, seed=3)
    a = compute_metrics(table, 4, [1], bootstrap=500, seed=7)
    b = compute_metrics(table, 4, [1], bootstrap=500, seed=7)
    assert a == b
    acc = next(r for r in a if r.metric == "accuracy")
    per_problem = np.array([np.mean(v) for v in table.values()])
    analytic = per_problem.std(ddof=1) / np.sqrt(len(per_problem))
    assert acc.stderr == pytest.approx(analytic, rel=0.15)


def test_statuses_shares():
    table = {"a": [True, False], "b": [False, False]}
    statuses = {"a": ["ok", "truncated"], "b": ["no_answer", "truncated"]}
    rows = {r.metric: r for r in compute_metrics(table, 2, [1], bootstrap=0, statuses=statuses)}
    assert rows["truncated"].value == 0.5
    assert rows["no_answer"].value == 0.25
    assert rows["accuracy"].stderr is None  # no bootstrap asked


def test_refuses_missing_samples():
    with pytest.raises(SparkError, match="missing samples"):
        compute_metrics({"a": [True, False], "b": [True]}, n=2, ks=[1])


def test_refuses_ungraded_samples():
    with pytest.raises(SparkError, match="ungraded"):
        compute_metrics({"a": [True, None]}, n=2, ks=[1])


def test_refuses_k_above_n_in_formula():
    with pytest.raises(SparkError, match="k <= n"):
        pass_at_k(4, 1, 5)
