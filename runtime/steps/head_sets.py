"""Head sets: evaluating head expressions, and the handler of ``diff`` and ``heads`` steps.

:func:`evaluate_head_expr` is shared with the intervention handler. Semantics
(sparkql/plan/steps.py ``HeadExpr``):

* ``circuit``: the heads of circuit step ``ref`` (``nodes`` with kind 'head'
  and in_circuit), scored by their head score (docs/eap_ig.md);
* ``set``: the rows of ``head_sets`` with ``set_key = ref``;
* ``literal``: the listed heads, score 0;
* ``union`` / ``intersect`` / ``minus``: set algebra over ``args``; a head's
  score comes from the left-most operand that has it.

Ranks are 1..n by score, highest first; ties are broken by (layer, head) so
that a set is the same on every run. ``top_k`` keeps the first K ranks.
No torch here.
"""

from __future__ import annotations

from sparkql.plan.steps import HeadExpr, HeadSetSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput

Head = tuple[int, int]


def _leaf(expr: HeadExpr, ctx: RunContext) -> dict[Head, float]:
    op = expr.op
    if op == "circuit":
        if not ctx.query("SELECT count(*) FROM circuits WHERE circuit_id = ?", [expr.ref])[0][0]:
            raise RuntimeError(f"circuit {str(expr.ref)[:12]} has no results in the store (did its step run?)")
        rows = ctx.query(
            "SELECT layer, head, score FROM nodes WHERE circuit_id = ? AND kind = 'head' AND in_circuit", [expr.ref]
        )
        return {(int(l), int(h)): float(s or 0.0) for l, h, s in rows}
    if op == "set":
        done = ctx.query("SELECT count(*) FROM steps WHERE key = ?", [expr.ref])[0][0]
        rows = ctx.query("SELECT layer, head, score FROM head_sets WHERE set_key = ?", [expr.ref])
        if not done and not rows:
            raise RuntimeError(f"head set {str(expr.ref)[:12]} has no results in the store (did its step run?)")
        return {(int(l), int(h)): float(s or 0.0) for l, h, s in rows}
    if op == "literal":
        return {(int(l), int(h)): 0.0 for l, h in expr.heads}
    raise ValueError(f"unknown head expression op {op!r}")


def _combine(op: str, parts: list[dict[Head, float]]) -> dict[Head, float]:
    if not parts:
        return {}
    if op == "union":
        out: dict[Head, float] = {}
        for p in parts:
            for h, s in p.items():
                out.setdefault(h, s)
        return out
    if op == "intersect":
        return {h: s for h, s in parts[0].items() if all(h in p for p in parts[1:])}
    if op == "minus":
        return {h: s for h, s in parts[0].items() if not any(h in p for p in parts[1:])}
    raise ValueError(f"unknown head expression op {op!r}")


def evaluate_head_expr(expr: HeadExpr, ctx: RunContext) -> dict[Head, float]:
    """Evaluate a head expression against the store: {(layer, head): score}. Post-order with an
    explicit stack, so the depth of an expression is never Python's recursion limit."""
    values: list[dict[Head, float]] = []
    stack: list[tuple[HeadExpr, bool]] = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node.op not in ("union", "intersect", "minus"):
            values.append(_leaf(node, ctx))
        elif not ready:
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args))
        else:
            n = len(node.args)
            parts = values[len(values) - n:] if n else []
            del values[len(values) - n:]
            values.append(_combine(node.op, parts))
    (result,) = values
    return result


def rank_heads(scores: dict[Head, float], top_k: int | None = None) -> list[tuple[Head, float, int]]:
    """[(head, score, rank)] by score descending, ties by (layer, head); first ``top_k`` only."""
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    if top_k is not None:
        ordered = ordered[: max(top_k, 0)]
    return [(h, s, i + 1) for i, (h, s) in enumerate(ordered)]


def _circuits_of(expr: HeadExpr) -> tuple[str, str | None] | None:
    """(circuit, base circuit) of a set that is a circuit's heads or a diff of two circuits."""
    if expr.op == "circuit":
        return expr.ref, None
    if expr.op == "minus" and len(expr.args) == 2 and all(a.op == "circuit" for a in expr.args):
        return expr.args[0].ref, expr.args[1].ref
    return None


def set_stability(expr: HeadExpr, ctx: RunContext) -> dict[Head, float] | None:
    """Each head's selection stability over the (top_n, tau) grid around the circuit's own
    cutoffs (sparkql.store.stability), from the stored edges; None for other set expressions."""
    from sparkql.store.stability import stability

    found = _circuits_of(expr)
    if found is None:
        return None
    circuit, base = found
    row = ctx.query("SELECT top_n, tau FROM circuits WHERE circuit_id = ?", [circuit])
    if not row or row[0][0] is None:
        return None
    top_n, tau = int(row[0][0]), float(row[0][1] or 0.0)

    def edges(cid: str) -> list[tuple[str, str, float]]:
        return [(s, d, float(x)) for s, d, x in
                ctx.query("SELECT src, dst, score FROM edges WHERE circuit_id = ? AND score IS NOT NULL", [cid])]

    shares, _ = stability(edges(circuit), top_n, tau, edges(base) if base else None)
    return shares


def run_head_set(step: Step, ctx: RunContext) -> StepOutput:
    spec: HeadSetSpec = step.spec  # type: ignore[assignment]
    ranked = rank_heads(evaluate_head_expr(spec.expr, ctx), spec.top_k)
    stable = set_stability(spec.expr, ctx)
    rows = {
        "set_key": [step.key] * len(ranked),
        "set_name": [spec.name] * len(ranked),
        "model_id": [spec.model.model_id] * len(ranked),
        "layer": [h[0] for h, _, _ in ranked],
        "head": [h[1] for h, _, _ in ranked],
        "score": [s for _, s, _ in ranked],
        "rank": [r for _, _, r in ranked],
        "kind": [spec.kind] * len(ranked),
        "stability": [stable.get(h, 0.0) if stable is not None else None for h, _, _ in ranked],
    }
    top = ", ".join(f"L{h[0]}H{h[1]}" for h, _, _ in ranked[:5])
    return StepOutput(tables={"head_sets": rows}, summary={"heads": len(ranked), "top": top})
