"""The ``fold_heads`` step (``with folds = K``, docs/eap_ig.md): selection frequency over
leave-one-fold-out resamples of a circuit's pairs.

Each fold's edge scores were stored by an ``edge_scores`` step of their own (keyed and cached
like any scoring). This step applies the circuit's selection (top-n by |score|, pruning, tau;
sparkql.store.stability.select_heads, the same selection as the circuit step's) to each fold's
scores and counts, per head, the folds in which it is in the circuit; with a base, the folds in
which it is in the model's circuit and not in the base's circuit of the same fold. Rows: every
head selected in at least one fold or on every pair (``in_full``). No torch here.
"""

from __future__ import annotations

from sparkql.plan.steps import FoldHeadsSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput

Head = tuple[int, int]


def fold_edges(ctx: RunContext, scores_id: str) -> list[tuple[str, str, float]]:
    """A scoring's edges in the order they were stored (the graph's: ties in |score| keep it)."""
    rows = ctx.query("SELECT src, dst, score FROM edge_scores WHERE scores_id = ? ORDER BY rowid", [scores_id])
    if not rows:
        raise RuntimeError(f"the edge scores {scores_id[:12]} are not in the store (did the fold's scoring run?)")
    return [(s, d, float(x)) for s, d, x in rows]


def circuit_heads(ctx: RunContext, circuit_id: str) -> set[Head]:
    rows = ctx.query("SELECT layer, head FROM nodes WHERE circuit_id = ? AND kind = 'head' AND in_circuit", [circuit_id])
    return {(int(l), int(h)) for l, h in rows}


def fold_selections(ctx: RunContext, keys: list[str], top_n: int, tau: float) -> list[set[Head]]:
    from sparkql.store.stability import select_heads

    return [select_heads(fold_edges(ctx, k), top_n, tau) for k in keys]


def frequencies(selections: list[set[Head]], full: set[Head]) -> dict[Head, tuple[int, bool]]:
    """{head: (folds in which it is selected, in the full selection)} over every head selected somewhere."""
    heads = set(full).union(*selections)
    return {h: (sum(h in s for s in selections), h in full) for h in sorted(heads)}


def run_fold_heads(step: Step, ctx: RunContext) -> StepOutput:
    spec: FoldHeadsSpec = step.spec  # type: ignore[assignment]
    k = len(spec.scores_keys)
    mine = fold_selections(ctx, spec.scores_keys, spec.top_n, spec.tau)
    full = circuit_heads(ctx, spec.circuit_key)
    parts = [("circuit", frequencies(mine, full), None if spec.base else spec.set_key)]
    if spec.base is not None:
        theirs = fold_selections(ctx, spec.base_scores_keys, spec.top_n, spec.tau)
        emergent = [a - b for a, b in zip(mine, theirs)]
        parts.append(("emergent", frequencies(emergent, full - circuit_heads(ctx, spec.base_circuit_key)),
                      spec.set_key))
    cols = ["fold_key", "kind", "model_id", "base_model_id", "circuit_id", "base_circuit_id", "set_key", "set_name",
            "layer", "head", "n_folds", "folds", "frequency", "in_full"]
    rows: dict[str, list] = {c: [] for c in cols}
    for kind, freq, set_key in parts:
        for (layer, head), (n, in_full) in freq.items():
            theirs = kind == "emergent"  # a base belongs to the emergent rows only
            for c, v in zip(cols, (step.key, kind, spec.model.model_id, spec.base.model_id if theirs else None,
                                   spec.circuit_key, spec.base_circuit_key if theirs else None, set_key,
                                   spec.set_name if set_key else None, layer, head, n, k, n / k, in_full)):
                rows[c].append(v)
    kind, freq, _ = parts[-1]
    ranked = sorted(freq.items(), key=lambda kv: (-kv[1][0], not kv[1][1], kv[0]))
    summary = {
        "folds": k,
        kind: len([h for h, (n, _) in freq.items() if n]),
        "in_every_fold": len([h for h, (n, _) in freq.items() if n == k]),
        "top": ", ".join(f"L{l}H{h} {n}/{k}" for (l, h), (n, _) in ranked[:5]),
    }
    return StepOutput(tables={"fold_heads": rows}, summary=summary)
