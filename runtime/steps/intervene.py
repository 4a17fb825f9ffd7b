"""The ``intervene`` step: resolve a variant's concrete heads into the ``variants`` table.

The weights are not touched here: a variant is a description (model, op, factor, heads),
applied as o_proj edits by each generate step that evaluates it
(:mod:`sparkql.runtime.models.interventions`). Resolving once, into the store, makes the heads
of ``ablate emergent top 10`` visible to SQL and fixed for every eval that uses them.
"""

from __future__ import annotations

from sparkql.plan.steps import InterveneSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput
from sparkql.runtime.models.config import shape_of
from sparkql.runtime.models.interventions import check_heads, head_name


def run_intervene(step: Step, ctx: RunContext) -> StepOutput:
    from sparkql.runtime.steps.head_sets import evaluate_head_expr, rank_heads

    spec: InterveneSpec = step.spec  # type: ignore[assignment]
    ranked = rank_heads(evaluate_head_expr(spec.heads, ctx), spec.top_k)
    heads = [h for h, _, _ in ranked]
    shape = shape_of(spec.model.base or spec.model.path)  # an adapter has its base's shape
    check_heads(heads, shape.n_layers, shape.n_heads, where=f"model {spec.model.label}")
    if not heads:
        ctx.log(f"warning: {spec.variant} on {spec.model.label} selects no heads; it will equal the intact model")
    row = {
        "variant_id": step.key,
        "model_id": spec.model.model_id,
        "name": spec.variant,
        "op": spec.op,
        "factor": 0.0 if spec.op == "ablate" else float(spec.factor),
        "heads": [head_name(layer, head) for layer, head in heads],
        "n_heads": len(heads),
    }
    shown = ", ".join(row["heads"][:6]) + (" ..." if len(heads) > 6 else "")
    return StepOutput(tables={"variants": [row]}, summary={"heads": len(heads), "top": shown})
