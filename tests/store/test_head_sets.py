"""Head-set expressions: circuit heads, stored sets, literals and set algebra, ranks and top_k."""

from __future__ import annotations

import duckdb
import pytest

from sparkql.plan.steps import HeadExpr, HeadSetSpec, ModelRef, Step, step_key
from sparkql.runtime.steps.head_sets import evaluate_head_expr, rank_heads, run_head_set
from sparkql.store.migrations import ensure_schema
from sparkql.store.write import insert


class Ctx:
    def __init__(self, con):
        self.con = con

    def query(self, sql, params=None):
        return self.con.execute(sql, params or []).fetchall()


@pytest.fixture
def ctx():
    con = duckdb.connect(":memory:")
    ensure_schema(con)
    insert(con, "circuits", {"circuit_id": ["A", "B"]})
    nodes = []
    for cid, active in (("A", {(0, 0): 5.0, (0, 1): 3.0, (1, 2): 3.0, (2, 0): 1.0}), ("B", {(0, 1): 9.0, (2, 0): 7.0})):
        for l in range(3):
            for h in range(3):
                nodes.append({"circuit_id": cid, "node": f"a{l}.h{h}", "layer": l, "head": h, "kind": "head",
                              "score": active.get((l, h), 0.5), "in_circuit": (l, h) in active})
        nodes.append({"circuit_id": cid, "node": "m0", "layer": 0, "kind": "mlp", "score": 99.0, "in_circuit": True})
    insert(con, "nodes", nodes)
    insert(con, "head_sets", [{"set_key": "S", "set_name": "picked", "layer": 1, "head": 1, "score": 4.0, "rank": 1}])
    insert(con, "steps", [{"key": "EMPTY", "kind": "heads"}])  # a completed step whose set is empty
    yield Ctx(con)
    con.close()


C = lambda ref: HeadExpr(op="circuit", ref=ref)  # noqa: E731
SET = lambda ref: HeadExpr(op="set", ref=ref)  # noqa: E731
LIT = lambda *hs: HeadExpr(op="literal", heads=list(hs))  # noqa: E731


def test_leaves(ctx):
    assert evaluate_head_expr(C("A"), ctx) == {(0, 0): 5.0, (0, 1): 3.0, (1, 2): 3.0, (2, 0): 1.0}
    assert evaluate_head_expr(SET("S"), ctx) == {(1, 1): 4.0}
    assert evaluate_head_expr(SET("EMPTY"), ctx) == {}
    assert evaluate_head_expr(LIT((5, 1), (7, 3)), ctx) == {(5, 1): 0.0, (7, 3): 0.0}
    with pytest.raises(RuntimeError, match="no results"):
        evaluate_head_expr(C("missing"), ctx)
    with pytest.raises(RuntimeError, match="no results"):
        evaluate_head_expr(SET("missing"), ctx)


def test_algebra_takes_scores_from_the_leftmost_operand(ctx):
    union = HeadExpr(op="union", args=[C("B"), C("A"), SET("S")])
    assert evaluate_head_expr(union, ctx) == {(0, 1): 9.0, (2, 0): 7.0, (0, 0): 5.0, (1, 2): 3.0, (1, 1): 4.0}
    inter = HeadExpr(op="intersect", args=[C("A"), C("B")])
    assert evaluate_head_expr(inter, ctx) == {(0, 1): 3.0, (2, 0): 1.0}
    minus = HeadExpr(op="minus", args=[C("A"), C("B")])  # the emergent set of A vs base B
    assert evaluate_head_expr(minus, ctx) == {(0, 0): 5.0, (1, 2): 3.0}
    nested = HeadExpr(op="minus", args=[HeadExpr(op="union", args=[LIT((0, 0)), C("B")]), LIT((2, 0))])
    assert evaluate_head_expr(nested, ctx) == {(0, 0): 0.0, (0, 1): 9.0}


def test_ranks_break_ties_by_layer_and_head_and_top_k_keeps_the_best():
    scores = {(1, 2): 3.0, (0, 1): 3.0, (0, 0): 5.0, (2, 0): 1.0}
    assert rank_heads(scores) == [((0, 0), 5.0, 1), ((0, 1), 3.0, 2), ((1, 2), 3.0, 3), ((2, 0), 1.0, 4)]
    assert [h for h, _, _ in rank_heads(scores, top_k=2)] == [(0, 0), (0, 1)]
    assert rank_heads(scores, top_k=0) == []


def test_run_head_set_writes_ranked_rows(ctx):
    model = ModelRef(name="m", label="m", path="/m", fingerprint="f", model_id="mid")
    spec = HeadSetSpec(kind="diff", name="emergent", model=model,
                       expr=HeadExpr(op="minus", args=[C("A"), C("B")]), top_k=1)
    step = Step(key=step_key("diff", spec), kind="diff", label="emergent on m", spec=spec)
    out = run_head_set(step, ctx)
    rows = out.tables["head_sets"]
    assert rows == {"set_key": [step.key], "set_name": ["emergent"], "model_id": ["mid"], "layer": [0], "head": [0],
                    "score": [5.0], "rank": [1], "kind": ["diff"],
                    "stability": [None]}  # these circuits have no stored cutoffs: no stability
    assert out.summary == {"heads": 1, "top": "L0H0"}
