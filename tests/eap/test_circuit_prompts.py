"""Prompt pairs for circuits: verbatim pairs, chat-template problems with answer openings,
digits/shuffle corruption, truncation, drops with counts, and the zero-pairs error."""

from __future__ import annotations

import json
import random

import pytest

from sparkql.errors import SparkError
from sparkql.plan.steps import CircuitParams, DatasetRef
from sparkql.runtime.eap.prompts import build_pairs, greedy_opening, redraw_digits
from sparkql.runtime.models.loading import load_model
from sparkql.runtime.generation.prompting import render_prompt


@pytest.fixture(scope="module")
def lm(tiny_qwen2):
    return load_model(tiny_qwen2, "fp32", "cpu")


def ds(tmp_path, rows, **roles):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return DatasetRef(name="d", path=str(p), format="jsonl", roles=roles, fingerprint="x")


def test_redraw_digits_changes_every_digit_only():
    text = "Compute 1234 + 9 = ? (x2)"
    out = redraw_digits(text, random.Random(0))
    assert len(out) == len(text)
    for a, b in zip(text, out):
        assert (a != b) if a.isdigit() else (a == b)
        assert b.isdigit() == a.isdigit()


def test_pairs_verbatim_and_unequal_dropped(lm, tmp_path):
    logs = []
    d = ds(tmp_path, [{"c": "ab+12=", "x": "ab+34="}, {"c": "1+1=", "x": "11+1="}, {"c": "xy", "x": "zw"}],
           clean="c", corrupt="x")
    out = build_pairs(lm, d, CircuitParams(corrupt="pairs"), log=logs.append)
    tok = lm.tokenizer
    assert [e.clean for e in out.examples] == [tok("ab+12=")["input_ids"], tok("xy")["input_ids"]]
    assert out.n_dropped == 1 and out.ids == ["0", "2"]
    assert any("dropped 1 of 3 pairs" in m for m in logs)
    out2 = build_pairs(lm, d, CircuitParams(corrupt="pairs", examples=1), log=logs.append)
    assert len(out2.examples) == 1


def test_problem_prompt_digits_and_prefix(lm, tmp_path):
    d = ds(tmp_path, [{"q": "What is 12+34?", "a": "46"}, {"q": "No digits here.", "a": "x"}], problem="q", answer="a")
    params = CircuitParams(corrupt="digits", prefix="Okay, so", think=False, seed=3)
    out = build_pairs(lm, d, params, log=lambda m: None)
    tok = lm.tokenizer
    assert out.n_identical == 1 and len(out.examples) == 1
    e = out.examples[0]
    text = render_prompt(tok, "What is 12+34?", think=False)
    assert tok.decode(e.clean) == text + "Okay, so"
    bad = tok.decode(e.corrupt)
    assert bad.endswith("Okay, so") and len(e.corrupt) == len(e.clean) and "12+34" not in bad
    assert e.target == tok("4", add_special_tokens=False)["input_ids"][0]
    again = build_pairs(lm, d, params, log=lambda m: None)
    assert again.examples[0].corrupt == e.corrupt  # seeded
    other = build_pairs(lm, d, params.model_copy(update={"seed": 4}), log=lambda m: None)
    assert other.examples[0].corrupt != e.corrupt


def test_prefix_sample_is_the_greedy_opening_and_truncation_keeps_the_tail(lm, tmp_path):
    d = ds(tmp_path, [{"q": "What is 12+34?"}], problem="q")
    out = build_pairs(lm, d, CircuitParams(corrupt="digits", prefix_sample=5), log=lambda m: None)
    tok = lm.tokenizer
    base = tok(render_prompt(tok, "What is 12+34?"))["input_ids"]
    e = out.examples[0]
    opening = greedy_opening(lm, base, 5)
    assert e.clean == base + opening and e.corrupt[len(base):] == opening
    n = len(e.clean) - 10  # cuts the chat template's opening, keeps the problem's digits
    short = build_pairs(lm, d, CircuitParams(corrupt="digits", prefix_sample=5, max_tokens=n), log=lambda m: None)
    assert short.examples[0].clean == e.clean[-n:] and short.examples[0].corrupt == e.corrupt[-n:]
    # cut so short that the redrawn digits fall outside: nothing corrupted, dropped
    with pytest.raises(SparkError, match="no usable"):
        build_pairs(lm, d, CircuitParams(corrupt="digits", prefix_sample=5, max_tokens=20), log=lambda m: None)


def test_shuffle_pairs_equal_lengths(lm, tmp_path):
    d = ds(tmp_path, [{"q": "aaaa"}, {"q": "bbbb"}, {"q": "cccccccc"}], problem="q")
    out = build_pairs(lm, d, CircuitParams(corrupt="shuffle"), log=lambda m: None)
    assert out.ids == ["0", "1"] and out.n_dropped == 1
    tok = lm.tokenizer
    assert out.examples[0].corrupt == tok(render_prompt(tok, "bbbb"))["input_ids"]


def test_zero_usable_pairs_is_a_spark_error(lm, tmp_path):
    d = ds(tmp_path, [{"c": "1+1=", "x": "11+1="}], clean="c", corrupt="x")
    with pytest.raises(SparkError, match="no usable"):
        build_pairs(lm, d, CircuitParams(corrupt="pairs"), log=lambda m: None)
    with pytest.raises(SparkError, match="no `corrupt` role"):
        build_pairs(lm, ds(tmp_path, [{"c": "a"}], clean="c"), CircuitParams(corrupt="pairs"), log=lambda m: None)
