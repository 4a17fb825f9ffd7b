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
from sparkql.runtime.steps.controls import distinct_draws, draw_heads


def run_intervene(step: Step, ctx: RunContext) -> StepOutput:
    from sparkql.runtime.steps.head_sets import evaluate_head_expr, rank_heads

    spec: InterveneSpec = step.spec  # type: ignore[assignment]
    shape = shape_of(spec.model.base or spec.model.path)  # an adapter has its base's shape
    ranked = rank_heads(evaluate_head_expr(spec.heads, ctx), spec.top_k)
    heads = [h for h, _, _ in ranked]
    draw = spec.random
    matched = list(heads)
    summary: dict = {}
    if draw is not None:
        heads, short = draw_heads(shape.n_layers, shape.n_heads, draw.seed, draw.draw, draw.count,
                                  None if draw.count is not None else heads)
        if short:
            ctx.log(f"warning: {spec.variant} on {spec.model.label}: {short} head(s) of `{draw.matches}` have no "
                    "head outside the set in their layer to match; this draw has fewer heads than the set")
        distinct = distinct_draws(shape.n_layers, shape.n_heads, draw.count,
                                  None if draw.count is not None else [h for h, _, _ in ranked])
        if draw.draw == 0 and distinct < 20:
            ctx.log(f"warning: {draw.group} on {spec.model.label} can draw only {distinct} different head set(s); "
                    "more draws repeat them (a model with more heads gives a finer control)")
        summary["distinct"] = distinct
    check_heads(heads, shape.n_layers, shape.n_heads, where=f"model {spec.model.label}")
    if not heads:
        ctx.log(f"warning: {spec.variant} on {spec.model.label} selects no heads; it will equal the intact model")
    elif draw is None and spec.top_k is not None and len(heads) < spec.top_k:
        ctx.log(f"warning: {spec.variant} on {spec.model.label}: top {spec.top_k} asked, the set has "
                f"{len(heads)} head(s)")
    row = {
        "variant_id": step.key,
        "model_id": spec.model.model_id,
        "name": spec.variant,
        "op": spec.op,
        "factor": 0.0 if spec.op == "ablate" else float(spec.factor),
        "heads": [head_name(layer, head) for layer, head in heads],
        "n_heads": len(heads),
        "top_k": spec.top_k if draw is None else None,
        "control": draw.group if draw is not None else None,
        "draw": draw.draw if draw is not None else None,
        "matches": draw.matches if draw is not None else None,
        "matched": sorted(head_name(l, h) for l, h, in matched) if draw is not None and draw.count is None else None,
    }
    shown = ", ".join(row["heads"][:6]) + (" ..." if len(heads) > 6 else "")
    return StepOutput(tables={"variants": [row]}, summary={"heads": len(heads), "top": shown, **summary})
