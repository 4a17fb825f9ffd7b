"""Step kind -> handler. Imported lazily so a plan runs only the code its steps need."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable

# kind -> "module:function"; each function is (step, ctx: RunContext) -> StepOutput
HANDLERS: dict[str, str] = {
    "load_model": "sparkql.runtime.steps.load:run_load_model",
    "edge_scores": "sparkql.runtime.steps.circuit:run_edge_scores",
    "circuit": "sparkql.runtime.steps.circuit:run_circuit",
    "diff": "sparkql.runtime.steps.head_sets:run_head_set",
    "heads": "sparkql.runtime.steps.head_sets:run_head_set",
    "fold_heads": "sparkql.runtime.steps.folds:run_fold_heads",
    "cohort": "sparkql.runtime.steps.cohort:run_cohort",
    "intervene": "sparkql.runtime.steps.intervene:run_intervene",
    "generate": "sparkql.runtime.steps.generate:run_generate",
    "grade": "sparkql.runtime.steps.grade:run_grade",
    "aggregate": "sparkql.runtime.steps.aggregate:run_aggregate",
}


def handler_for(kind: str) -> Callable:
    module, fn = HANDLERS[kind].split(":")
    return getattr(importlib.import_module(module), fn)


def executable_kinds() -> set[str]:
    """Kinds whose handler module exists in this build (for `sparkql run` to say what it cannot do)."""
    out = set()
    for kind, target in HANDLERS.items():
        module = target.split(":")[0]
        if importlib.util.find_spec(module) is not None:
            out.add(kind)
    return out
