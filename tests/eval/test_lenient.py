"""The `extract` rules: lenient extraction case by case, the several-boxes rule, and the option
in the language (dataset, eval, set) reaching the grade step without changing other keys."""

from __future__ import annotations

import pytest

from sparkql.runtime.grading.answers import boxed_list, extract_math, latex_spans
from sparkql.runtime.grading.grader import grade_one


@pytest.mark.parametrize("region, strict, lenient", [
    ("So the answer is $\\boxed{42}$.", "42", "42"),
    ("The final answer is $\\frac{2}{9}$. I hope it is correct.", None, "\\frac{2}{9}"),
    ("The final answer is: 64", None, "64"),
    ("Answer: 3 + 4 = 7", None, "7"),
    ("Answer: \\( (9+1) \\)", None, "(9+1)"),
    ("We find $a = 3$ and then $b = 7$.", None, "b = 7"),
    ("The solutions are $1$, $4$ and $9$.", None, "1, 4, 9"),
    ("The population was 7,425,000 in that year.", None, "7425000"),
    ("Soucis : 2,74 $ a..", None, "2.74"),
    ("The increase is 25%.", None, "25\\%"),
    ("It grows by $25\\%$.", None, "25\\%"),
    ("total = 5 + 6 = 11", None, "11"),
    ("So 6 × 7 = 42", None, "42"),
    ("The code is AZYUK2A", None, None),
    ("I cannot determine this.", None, None),
    ("Answer: 5. Wait, recompute. Answer: 6", None, "6"),
    ("The final answer is 3. Actually \\boxed{4}.", "4", "4"),
])
def test_extraction_rules(region, strict, lenient):
    assert extract_math(region, "strict") == strict
    assert extract_math(region, "lenient") == lenient


@pytest.mark.parametrize("text, joined", [
    ("\\boxed{1}, \\boxed{2}", "1, 2"),
    ("$\\boxed{2}$ and $\\boxed{5}$", "2, 5"),
    ("\\boxed{1}; \\boxed{2}\\quad\\boxed{3}", "1, 2, 3"),
    ("$\\boxed{1}$, and $\\boxed{2}$", "2"),          # ", and" ends a list, as in Math-Verify
    ("I thought \\boxed{12}, but rechecking, \\boxed{14}", "14"),  # prose between: two answers
    ("\\boxed{1} \\boxed{2}", "2"),
    ("\\boxed{a \\boxed{b}}", "b"),                  # a box inside a box is not a list item
])
def test_several_boxes(text, joined):
    assert boxed_list(text) == joined


def test_several_boxes_match_a_list_gold_only():
    comp = "</think>The solutions are $\\boxed{2}$ and $\\boxed{5}$."
    assert grade_one("math", comp, "2, 5", extract="lenient").correct
    assert grade_one("math", comp, "\\{5, 2\\}", extract="lenient").correct
    assert not grade_one("math", comp, "5", extract="lenient").correct
    assert grade_one("math", comp, "5", extract="strict").correct  # strict: the last box


def test_latex_spans_are_found_in_one_pass():
    spans = latex_spans("a $x$ b \\(y\\) c $$z$$ d \\[w\\] e $open\nf \\$5 and $ok$")
    assert [s.content for s in spans] == ["x", "y", "z", "w", "ok"]


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="extraction rule"):
        grade_one("math", "\\boxed{1}", "1", extract="loose")


def _grade_steps(text: str, tmp_path):
    from sparkql.plan.compile import compile_text

    plan = compile_text(text, study_dir=tmp_path)
    return {s.label: s for s in plan.steps if s.kind == "grade"}


STUDY = """
model base = "zoo:base"
{dataset}
{set}
eval pass@k on toy_easy, gsm8k{with}
"""


def test_extract_option_reaches_the_grade_step_only(tmp_path):
    from sparkql.plan.steps import step_key

    plain = _grade_steps(STUDY.format(dataset="", set="", **{"with": ""}), tmp_path)
    assert {s.spec.extract for s in plain.values()} == {"strict"}
    by_eval = _grade_steps(STUDY.format(dataset="", set="", **{"with": " with extract = lenient"}), tmp_path)
    assert {s.spec.extract for s in by_eval.values()} == {"lenient"}
    by_set = _grade_steps(STUDY.format(dataset="", set="set extract = lenient", **{"with": ""}), tmp_path)
    assert {s.spec.extract for s in by_set.values()} == {"lenient"}
    # the generate steps (what is sampled) are the same under either rule: no regeneration
    assert [s.deps for s in plain.values()] == [s.deps for s in by_eval.values()]
    # strict, the default, leaves the key of a grade step as it was before the option existed
    spec = next(iter(plain.values())).spec
    assert "extract" not in spec.model_dump()
    assert step_key("grade", spec) == next(iter(plain.values())).key
    assert next(iter(by_eval.values())).key != next(iter(plain.values())).key


def test_extract_on_a_dataset_and_its_override(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"problem": "1+1?", "answer": "2"}\n')
    text = STUDY.replace("toy_easy, gsm8k", "mine").format(
        dataset=f'dataset mine = "{data}" with extract = lenient', set="", **{"with": ""})
    assert {s.spec.extract for s in _grade_steps(text, tmp_path).values()} == {"lenient"}
    text = STUDY.replace("toy_easy, gsm8k", "mine").format(
        dataset=f'dataset mine = "{data}" with extract = lenient', set="", **{"with": " with extract = strict"})
    assert {s.spec.extract for s in _grade_steps(text, tmp_path).values()} == {"strict"}


def test_a_bad_rule_is_a_spark_error(tmp_path):
    from sparkql.errors import SparkError

    with pytest.raises(SparkError, match="must be one of strict, lenient") as e:
        _grade_steps(STUDY.format(dataset="", set="", **{"with": " with extract = loose"}), tmp_path)
    assert e.value.span is not None
