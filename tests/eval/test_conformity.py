"""Conformity with the graders published numbers come from.

* Math-Verify, as lighteval and open-r1 call it, is the reference for the ``lenient`` rule: on
  our own catalogue of completions (tests/eval/conformity_cases.py; Math-Verify's test files are
  not copied here) our extraction + verification must agree with Math-Verify's own pipeline on at
  least 97% of the cases, and every case where they differ must be listed, with its reason, in
  docs/evaluation.md.
* HumanEval's unbiased pass@k estimator (Chen et al. 2021, written out below as their numerically
  stable product) must agree with our exact pass@k on random (n, c, k).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkql.runtime.grading.grader import GradeRequest, VerifyPool, grade_many
from sparkql.runtime.grading.metrics import pass_at_k

from .conformity_cases import CASES

DOC = Path(__file__).parents[2] / "docs" / "evaluation.md"


def math_verify_reference(completion: str, gold: str) -> bool:
    """Math-Verify's verdict, configured as lighteval's math tasks use it: the gold parsed as
    LaTeX (wrapped in $...$) or a plain expression, the whole completion parsed with boxed
    answers first, then verify(). In-process, with Math-Verify's own timeouts."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold_parsed = parse(f"${gold}$", extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()])
    pred_parsed = parse(completion, extraction_config=[LatexExtractionConfig(boxed_match_priority=0),
                                                       ExprExtractionConfig()])
    return bool(verify(gold_parsed, pred_parsed))


def documented_disagreements() -> set[str]:
    """Case ids in the docs' table of disagreements with Math-Verify."""
    text = DOC.read_text()
    section = text.split("### Where lenient grading and Math-Verify disagree", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.M))


@pytest.fixture(scope="module")
def verdicts():
    logging.disable(logging.WARNING)  # Math-Verify logs every parse failure
    try:
        reference = {cid: math_verify_reference(comp, gold) for cid, comp, gold in CASES}
    finally:
        logging.disable(logging.NOTSET)
    with VerifyPool(workers=2, timeout_s=20) as pool:
        graded = grade_many("math", [GradeRequest(comp, gold, "stop", think=False) for _, comp, gold in CASES],
                            pool=pool, extract="lenient")
    return reference, {cid: g for (cid, _, _), g in zip(CASES, graded)}


def test_catalogue_is_broad():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 150
    kinds = {cid.split("-")[0] for cid in ids}
    for kind in ("boxed", "multi", "final", "answer", "latex", "frac", "interval", "set", "percent", "unit",
                 "plain", "sym", "rel", "none", "distractor"):
        assert kind in kinds, kind


def test_lenient_agrees_with_math_verify(verdicts):
    reference, ours = verdicts
    differ = sorted(cid for cid in reference if reference[cid] != ours[cid].correct)
    agreement = 1 - len(differ) / len(reference)
    detail = {cid: (reference[cid], ours[cid]) for cid in differ}
    assert agreement >= 0.97, detail
    # every disagreement is explained in the docs, and the docs list no stale ones
    assert set(differ) == documented_disagreements(), detail


def test_no_sample_errors_or_times_out(verdicts):
    _, ours = verdicts
    assert {g.status for g in ours.values()} <= {"ok", "no_answer"}


def humaneval_pass_at_k(n: int, c: int, k: int) -> float:
    """The estimator of the HumanEval paper (Chen et al. 2021, figure 3): 1 - C(n-c, k)/C(n, k)
    computed as a product, which stays finite for large n."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 400), data=st.data())
def test_pass_at_k_matches_humaneval_estimator(n, data):
    c = data.draw(st.integers(0, n), label="c")
    k = data.draw(st.integers(1, n), label="k")
    assert pass_at_k(n, c, k) == pytest.approx(humaneval_pass_at_k(n, c, k), rel=1e-9, abs=1e-12)
