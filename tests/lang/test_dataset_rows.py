"""Dataset rows are checked once, the same way at `sparkql check` and at run time (issue 14): a
mapped field that is missing, null or of the wrong type is refused with the file, the row and the
field, or dropped with a warning under `bad_rows = skip`, never turned into the text "None"."""

from __future__ import annotations

import json

import pytest

from sparkql.errors import SparkError
from sparkql.runtime.datasets import load_rows

from lang_helpers import compile_in_tree

M = 'model base = "models/Qwen2.5-Math-1.5B-Instruct"\n'
ROWS = [
    {"id": "a", "question": "What is 1 + 1?", "answer": "2"},
    {"id": "b", "question": None, "answer": "3"},
    {"id": "c", "question": "What is 2 + 2?", "answer": 4},          # a number answer is fine
    {"id": "d", "question": "What is 3 + 3?"},                        # no answer
    {"id": "e", "question": {"text": "x"}, "answer": "5"},
    {"id": "f", "question": "What is 4 + 4?", "answer": False},
    {"id": "g", "question": "What is 5 + 5?", "answer": "10"},
]
GOOD = ["a", "c", "g"]


@pytest.fixture
def messy(study_tree, tmp_path):
    f = tmp_path / "messy.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return f


def _eval_plan(tree, path, opts=""):
    return compile_in_tree(tree, M + f'dataset d = "{path}"{opts}\neval pass@k on d for base with n = 1, k = 1\n')


def test_the_first_bad_row_is_refused_with_file_line_and_field(study_tree, messy):
    with pytest.raises(SparkError) as info:
        _eval_plan(study_tree, messy)
    assert info.value.message == f'{messy}: line 2: field "question" (role problem) is null'
    assert "bad_rows = skip" in info.value.hint


def test_skip_drops_exactly_the_bad_rows_and_says_so(study_tree, messy):
    plan = _eval_plan(study_tree, messy, " with bad_rows = skip")
    (warning,) = plan.warnings
    assert warning.startswith("study.spark:2:13: warning: dataset `d`: 4 of 7 rows of messy.jsonl dropped "
                              "(bad_rows = skip): line 2: ")  # located, with its caret, like an error
    gen = next(s for s in plan.steps if s.kind == "generate")
    assert gen.spec.dataset.bad_rows == "skip"
    # the run reads the same rows the check counted: the good ones, ids and values as written
    rows = load_rows(gen.spec.dataset, roles=("problem", "answer", "id"))
    assert [r["id"] for r in rows] == GOOD
    assert [r["answer"] for r in rows] == ["2", 4, "10"]
    assert next(s for s in plan.steps if s.kind == "generate").cost.tokens == len(GOOD) * 1 * 32768


def test_the_option_at_its_default_keeps_every_key(study_tree, messy):
    clean = messy.with_name("clean.jsonl")
    clean.write_text("".join(json.dumps(r) + "\n" for r in ROWS if r["id"] in GOOD))
    keys = [s.key for s in _eval_plan(study_tree, clean).steps]
    assert keys == [s.key for s in _eval_plan(study_tree, clean, " with bad_rows = error").steps]
    assert keys != [s.key for s in _eval_plan(study_tree, clean, " with bad_rows = skip").steps]


def test_a_file_spoiled_after_check_is_refused_at_run_time(study_tree, messy):
    clean = messy.with_name("later.jsonl")
    clean.write_text("".join(json.dumps(r) + "\n" for r in ROWS if r["id"] in GOOD))
    ref = next(s for s in _eval_plan(study_tree, clean).steps if s.kind == "generate").spec.dataset
    clean.write_text(clean.read_text() + json.dumps({"id": "z", "question": None, "answer": "1"}) + "\n")
    with pytest.raises(SparkError, match=r'later.jsonl: line 4: field "question" \(role problem\) is null'):
        load_rows(ref, roles=("problem", "answer"))
