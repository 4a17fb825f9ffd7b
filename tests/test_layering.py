"""The house's layering holds: each part imports only what docs/architecture.md allows.

Read statically (every ``import`` in a module, function-level ones included), so a lazy import
inside a function cannot hide a layering break. The table below is the one in
docs/architecture.md; change both together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers", "nnsight", "vllm", "textual", "textual_plotext", "peft", "ray"}

# part -> (sparkql modules it may import (prefixes), heavy libraries it may import)
ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    "sparkql.lang": ({"sparkql.errors", "sparkql.lang", "sparkql.plan.steps", "sparkql.plan.fingerprint",
                      "sparkql.builtins", "sparkql.zoo", "sparkql.runtime.models.adapters",
                      "sparkql.runtime.models.config", "sparkql.runtime.models.checkpoint",
                      "sparkql.runtime.models.device", "sparkql.runtime.datasets"}, set()),
    "sparkql.plan": ({"sparkql.errors", "sparkql.lang", "sparkql.plan", "sparkql.zoo"}, set()),
    "sparkql.store": ({"sparkql.errors", "sparkql.store"}, set()),
    "sparkql.runtime.datasets": ({"sparkql.errors", "sparkql.plan.steps", "sparkql.builtins"}, set()),
    "sparkql.runtime.grading": ({"sparkql.errors", "sparkql.plan.steps", "sparkql.store", "sparkql.runtime.grading"}, set()),
    "sparkql.runtime.models": ({"sparkql.errors", "sparkql.plan.steps", "sparkql.runtime.models", "sparkql.runtime.zoo"},
                               {"torch", "transformers", "peft"}),
    "sparkql.runtime.eap": ({"sparkql.errors", "sparkql.plan.steps", "sparkql.plan.sizing", "sparkql.zoo", "sparkql.runtime.eap", "sparkql.runtime.models",
                             "sparkql.runtime.datasets", "sparkql.runtime.generation.prompting"},
                            {"torch", "transformers", "nnsight"}),
    "sparkql.runtime.generation": ({"sparkql.errors", "sparkql.plan.steps", "sparkql.runtime.generation",
                                    "sparkql.runtime.models", "sparkql.runtime.datasets"},
                                   {"torch", "transformers", "vllm"}),
    "sparkql.runtime.execution": ({"sparkql.errors", "sparkql.plan.steps", "sparkql.plan.waves",
                                   "sparkql.plan.fingerprint", "sparkql.store", "sparkql.runtime.execution",
                                   "sparkql.runtime.models.loading", "sparkql.__version__"}, {"ray"}),
    "sparkql.runtime.steps": ({"sparkql.errors", "sparkql.plan.steps", "sparkql.store", "sparkql.runtime"}, set()),
    "sparkql.runtime.zoo": ({"sparkql.errors", "sparkql.plan.steps", "sparkql.zoo", "sparkql.runtime.zoo",
                             "sparkql.runtime.models"}, {"torch", "transformers"}),
    "sparkql.tui": ({"sparkql.errors", "sparkql.store", "sparkql.tui", "sparkql.runtime.grading.qualitative"},
                    {"textual", "textual_plotext"}),
}
# The documented exceptions: the one runtime module that compiles study text (``sparkql.run``).
EXCEPTIONS = {"sparkql.runtime.execution.api": {"sparkql.plan.compile"}}


def module_files():
    roots = {"sparkql": REPO / "sparkql", "sparkql.runtime": REPO / "runtime", "sparkql.tui": REPO / "tui"}
    for prefix, root in roots.items():
        for f in root.rglob("*.py"):
            rel = f.relative_to(root).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            yield ".".join((prefix, *rel)), f


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from x.y import z` is recorded as x.y.z: z may be a module (`from sparkql import zoo`),
            # and a function's name under an allowed module is still under it
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def part_of(module: str) -> str | None:
    return max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len, default=None)


def violations() -> list[str]:
    bad = []
    for module, path in module_files():
        part = part_of(module)
        if part is None:
            continue
        sparkql_ok, heavy_ok = ALLOWED[part]
        sparkql_ok = sparkql_ok | EXCEPTIONS.get(module, set())
        for imp in imports_of(path):
            top = imp.split(".")[0]
            if top in HEAVY and top not in heavy_ok:
                bad.append(f"{module} imports {imp} ({part} may not import {top})")
            if top == "sparkql" and not any(imp == a or imp.startswith(a + ".") for a in sparkql_ok):
                bad.append(f"{module} imports {imp} (not allowed for {part})")
    return bad


def test_every_part_imports_only_what_the_architecture_allows():
    assert violations() == []


def test_every_module_belongs_to_a_documented_part():
    """A new folder under runtime/ must be added to the table (and to docs/architecture.md)."""
    orphans = [m for m, _ in module_files() if m.startswith("sparkql.runtime.") and part_of(m) is None]
    assert orphans == []


@pytest.mark.parametrize("forbidden", ["import torch", "from sparkql.lang import parser", "import textual"])
def test_the_checker_catches_a_break(tmp_path, forbidden):
    """The checker itself can fail: a grading module importing torch, the parser or textual."""
    f = tmp_path / "bad.py"
    f.write_text(forbidden + "\n")
    sparkql_ok, heavy_ok = ALLOWED["sparkql.runtime.grading"]
    found = imports_of(f)
    assert any(i.split(".")[0] in HEAVY - heavy_ok or
               (i.startswith("sparkql") and not any(i.startswith(a) for a in sparkql_ok)) for i in found)


def test_architecture_doc_lists_every_part():
    doc = (REPO / "docs" / "architecture.md").read_text()
    for part in ALLOWED:
        short = part.removeprefix("sparkql.")
        # runtime/ and tui/ sit at the top of the repository; the rest under sparkql/
        folder = short.replace(".", "/") if short.startswith(("runtime", "tui")) else "sparkql/" + short
        assert f"`{folder}" in doc, f"docs/architecture.md does not describe {folder}"
