"""Graders on a catalogue of answer pairs (snapshotted), the verify pool's deadline, GPQA shuffle."""

from __future__ import annotations

import time

import pytest

from sparkql.runtime.grading.grader import (
    GradeRequest,
    VerifyPool,
    answer_region,
    gold_for,
    gpqa_options,
    grade_many,
    last_boxed,
)

from .grading_catalogue import cases

CASES = cases()


@pytest.fixture(scope="module")
def graded():
    """Grade the whole catalogue once, grouped by grader (as the grade step does)."""
    out = {}
    with VerifyPool(workers=2, timeout_s=10) as pool:
        for grader in sorted({c[1] for c in CASES}):
            mine = [c for c in CASES if c[1] == grader]
            reqs = [GradeRequest(c[2], c[3], c[4], c[5]) for c in mine]
            for c, g in zip(mine, grade_many(grader, reqs, pool=pool)):
                out[c[0]] = g
    return out


def test_catalogue_is_large_and_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_catalogue_case(case, graded):
    cid, grader, completion, gold, finish, think, correct, status = case
    g = graded[cid]
    assert g.correct is correct, (cid, g)
    if status is not None:
        assert g.status == status, (cid, g)
    if g.correct:
        assert g.status == "ok"


def test_catalogue_snapshot(graded, snapshot):
    """Extracted answers and statuses: a change in extraction shows up as a snapshot diff."""
    assert {cid: [g.extracted, g.status, g.correct] for cid, g in sorted(graded.items())} == snapshot


def test_last_boxed_brace_matching():
    assert last_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{a} \boxed{\{x\}}") == r"\{x\}"
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{") is None


def test_answer_region():
    assert answer_region("think</think>ans", True, "stop") == "ans"
    assert answer_region("a</think>b</think>c", True, "length") == "c"
    assert answer_region("still thinking", True, "length") is None
    assert answer_region("no think", False, "length") == "no think"


def test_hanging_expression_times_out_without_stalling():
    """A pathological expression (sympy works on a 10^10^10 integer power for long): the pool
    kills the worker at its deadline, marks the sample, and keeps grading the others."""
    comp_hang = "</think>\\boxed{10^{10^{10}} - 10^{10^{10}} + x}"
    reqs = [GradeRequest(comp_hang, "10^{10^{10}} + x", "stop", True),
            GradeRequest("</think>\\boxed{\\frac{2}{4}}", "\\frac12", "stop", True)]
    t0 = time.monotonic()
    with VerifyPool(workers=1, timeout_s=1.5) as pool:
        g = grade_many("math", reqs, pool=pool)
    elapsed = time.monotonic() - t0
    assert g[0].status == "timeout" and g[0].correct is False
    assert g[1].status == "ok" and g[1].correct is True
    assert elapsed < 15


def test_gpqa_shuffle_is_seeded_and_consistent():
    row = {"answer": "right", "choices": ["w1", "w2", "w3"]}
    opts, letter = gpqa_options("q1", row["answer"], row["choices"], seed=0)
    assert sorted(opts) == ["right", "w1", "w2", "w3"]
    assert opts["ABCD".index(letter)] == "right"
    assert gpqa_options("q1", "right", ["w1", "w2", "w3"], seed=0) == (opts, letter)
    assert gold_for("gpqa", row, "q1", 0) == letter
    # over many problems the correct letter is spread over A-D, not stuck at one place
    letters = {gpqa_options(f"q{i}", "right", ["w1", "w2", "w3"], seed=0)[1] for i in range(40)}
    assert letters == set("ABCD")


def test_triviaqa_gold_collects_aliases():
    g = gold_for("triviaqa", {"answer": "Scorpio", "choices": ["Scorpio", "Skorpio"]}, "t", 0)
    assert g == '["Scorpio", "Skorpio"]'
