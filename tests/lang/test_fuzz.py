"""Hypothesis: random and mutated study text is either accepted or a SparkError, never another
exception (no IndexError from a selector, no KeyError from a name, no Lark exception leaking)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkql.errors import SparkError
from sparkql.lang.fmt import format_study
from sparkql.lang.parser import parse

from lang_helpers import compile_in_tree

REPO = Path(__file__).resolve().parents[2]
SEEDS = [p.read_text() for p in sorted((REPO / "studies").glob("*.spark"))] + [
    p.read_text() for p in sorted((Path(__file__).parent / "fixtures" / "valid").glob("*.spark"))
]
TOKENS = ["model", "dataset", "circuit", "on", "diff", "using", "eap_ig", "as", "cohort", "ablate", "scale", "by",
          "top", "heads", "eval", "pass@k", "for", "with", "think", "off", "set", "=", ",", ";", "\n", "(", ")", "[",
          "]", "{", "}", "*", ":", "-1", "0", "10", "1.3", "step=", "|", "&", "-", "L5H1", '"x"', "#", "base", "ckpt",
          "aime24", "emergent", "n", "k", "\\", '"', "@", "é"]


def check_only_spark_errors(tree, text: str) -> None:
    try:
        compile_in_tree(tree, text, "fuzz.spark")
    except SparkError as e:
        rendered = e.render()
        assert rendered.startswith("fuzz.spark")


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        tok = draw(st.sampled_from(TOKENS))
        if op == "insert":
            text = text[:pos] + tok + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 12)):]
        else:
            text = text[:pos] + tok + text[pos + len(tok):]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated())
def test_mutated_studies_fail_only_with_spark_errors(study_tree, text):
    check_only_spark_errors(study_tree, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join))
def test_token_soup_fails_only_with_spark_errors(study_tree, text):
    check_only_spark_errors(study_tree, text)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=80))
def test_arbitrary_text_fails_only_with_spark_errors(text):
    try:
        parse(text, "fuzz.spark")
    except SparkError:
        pass


@settings(max_examples=150, deadline=None)
@given(text=mutated())
def test_fmt_preserves_meaning_of_whatever_parses(text):
    try:
        tree = parse(text)
    except SparkError:
        return
    assert parse(format_study(text)) == tree
