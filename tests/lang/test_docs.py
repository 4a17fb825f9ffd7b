"""The README's language reference documents every statement, option and builtin dataset the compiler knows."""

from __future__ import annotations

from pathlib import Path

from sparkql.builtins import BUILTIN_DATASETS
from sparkql.lang import options as O
from sparkql.lang.parser import KEYWORDS

DOC = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_statement_is_documented():
    for kw in KEYWORDS:
        assert f"`{kw} " in DOC or f"`{kw}`" in DOC, kw


def test_every_option_is_documented():
    tables = [O.CIRCUIT_OPTIONS, O.EVAL_OPTIONS, O.GLOBAL_OPTIONS, O.DATASET_OPTIONS, O.CIRCUIT_WITH, O.EVAL_WITH,
              O.MODEL_OPTIONS, O.COHORT_OPTIONS, O.CONTROL_OPTIONS]
    for table in tables:
        for name in table:
            assert f"`{name}`" in DOC, name


def test_every_builtin_dataset_is_documented():
    for name in BUILTIN_DATASETS:
        assert f"`{name}`" in DOC, name
