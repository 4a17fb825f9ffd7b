"""Step kind -> handler. Imported lazily so a plan runs only the code its steps need."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable

# kind -> "module:function"; each function is (step, ctx: RunContext) -> StepOutput
HANDLERS: dict[str, str] = {
    "load_model": "sparkql.runtime.load_step:run_load_model",
    "circuit": "sparkql.runtime.circuit_step:run_circuit",
    "diff": "sparkql.runtime.head_sets:run_head_set",
    "heads": "sparkql.runtime.head_sets:run_head_set",
    "cohort": "sparkql.runtime.cohort_step:run_cohort",
    "intervene": "sparkql.runtime.intervene_step:run_intervene",
    "generate": "sparkql.runtime.generate_step:run_generate",
    "grade": "sparkql.runtime.grade_step:run_grade",
    "aggregate": "sparkql.runtime.aggregate_step:run_aggregate",
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
