"""Every study in studies/ and every fixture in fixtures/valid compiles; AST and plan snapshots;
round trips parse(fmt(x)) == x and Plan JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkql.lang.fmt import format_study
from sparkql.lang.parser import parse
from sparkql.plan.steps import Plan

from lang_helpers import compile_in_tree, dump_ast, normalize_plan

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted(p for p in (REPO / "studies").glob("*.spark"))
VALID = sorted((Path(__file__).parent / "fixtures" / "valid").glob("*.spark"))
ALL = [pytest.param(p, id=f"studies/{p.name}") for p in STUDIES] + [pytest.param(p, id=f"valid/{p.name}") for p in VALID]


def test_the_catalogue_is_not_empty():
    assert {p.name for p in STUDIES} >= {"grpo.spark", "sft.spark", "distill.spark", "think.spark"}
    assert len(VALID) >= 8


@pytest.mark.parametrize("path", ALL)
def test_study_compiles_to_snapshotted_ast_and_plan(path, study_tree, snapshot):
    text = path.read_text()
    plan = compile_in_tree(study_tree, text, path.name)
    assert plan.steps, "a study compiles to at least one step"
    assert dump_ast(parse(text, path.name)) == snapshot(name="ast")
    assert normalize_plan(plan, study_tree) == snapshot(name="plan")


@pytest.mark.parametrize("path", ALL)
def test_fmt_round_trips(path):
    text = path.read_text()
    formatted = format_study(text)
    assert parse(formatted) == parse(text)
    assert format_study(formatted) == formatted, "fmt is idempotent"


@pytest.mark.parametrize("path", ALL)
def test_plan_json_round_trips(path, study_tree):
    plan = compile_in_tree(study_tree, path.read_text(), path.name)
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


@pytest.mark.parametrize("path", ALL)
def test_plan_is_topologically_ordered_and_keys_are_unique(path, study_tree):
    plan = compile_in_tree(study_tree, path.read_text(), path.name)
    seen: set[str] = set()
    for step in plan.steps:
        assert step.key not in seen
        assert all(d in seen for d in step.deps), f"{step.label} depends on a later step"
        seen.add(step.key)


def test_studies_are_canonically_formatted():
    for p in STUDIES:
        assert format_study(p.read_text()) == p.read_text(), f"run: sparkql fmt -w {p}"
