"""Helpers for the compiler tests (imported by name: test dirs are not packages)."""

from __future__ import annotations

import json
from pathlib import Path


def compile_in_tree(tree: Path, text: str, name: str = "study.spark"):
    """Compile ``text`` as if it were the file ``tree/name``."""
    from sparkql.plan.compile import compile_text

    return compile_text(text, name, study_dir=tree)


def normalize_plan(plan, tree: Path) -> dict:
    """The plan as JSON with what depends on where the tree lives replaced by stable names:
    step keys by their position (#1, #2, ...), model ids by labels, the tree's path by <tree>."""
    data = json.loads(plan.model_dump_json())
    text = json.dumps(data)
    for i, step in enumerate(plan.steps, 1):
        text = text.replace(step.key, f"#{i}")
    ids = {}
    for step in plan.steps:
        spec = step.spec
        model = getattr(spec, "model", None)
        if model is not None:
            ids[model.model_id] = f"<{model.label}>"
    for mid, label in ids.items():
        text = text.replace(mid, label)
    # A zoo model's fingerprint is its recipe's hash, which changes with the zoo's code.
    for step in plan.steps:
        model = getattr(step.spec, "model", None)
        if model is not None and model.path.startswith("zoo:"):
            text = text.replace(model.fingerprint, "<zoo-recipe>")
    text = text.replace(str(tree), "<tree>")
    repo = str(Path(__file__).resolve().parents[2])
    text = text.replace(repo, "<repo>")
    return json.loads(text)


def dump_ast(tree) -> dict:
    return tree.model_dump(mode="json", exclude_none=True)
