"""The `scores` view's control columns on hand-made rows, against a reference computed here:
which draws count as controls of which intervention, their mean, spread and share beaten."""

from __future__ import annotations

import statistics

import pytest

from sparkql.store.api import Store, connect

SAMPLING = dict(dataset="d", n=8, temperature=0.6, top_p=0.95, max_tokens=64, think=True, extract="strict")


def _eval(eid, model, variant, vid, value, **over):
    return {"eval_id": eid, "model_id": model, "variant": variant, "variant_id": vid, **SAMPLING, **over}, \
        {"eval_id": eid, "metric": "pass@k", "k": 1, "value": value, "stderr": 0.01}


def _variant(vid, model, name, heads, op="ablate", factor=0.0, control=None, draw=None, matched=None, top_k=None):
    return {"variant_id": vid, "model_id": model, "name": name, "op": op, "factor": factor, "heads": heads,
            "n_heads": len(heads), "top_k": top_k, "control": control, "draw": draw,
            "matches": "s" if matched else None, "matched": matched}


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "s.duckdb"
    evals, metrics = [], []
    variants = [_variant("vA", "m", "chosen", ["L3H0", "L1H1"], top_k=2),
                _variant("vS", "m", "up", ["L3H0", "L1H1"], op="scale", factor=1.3)]
    for e, x in [_eval("i", "m", "intact", None, 0.80), _eval("a", "m", "chosen", "vA", 0.30),
                 _eval("u", "m", "up", "vS", 0.85)]:
        evals.append(e), metrics.append(x)
    ctl = {"c0": 0.75, "c1": 0.40, "c2": 0.30, "c3": 0.82, "c4": 0.10}  # c2 ties the intervention
    for i, (vid, v) in enumerate(ctl.items()):
        variants.append(_variant(vid, "m", f"ctl #{i}", ["L3H1", "L1H0"], control="ctl", draw=i,
                                 matched=["L1H1", "L3H0"]))
        e, x = _eval("e" + vid, "m", f"ctl #{i}", vid, v)
        evals.append(e), metrics.append(x)
    # not controls of `chosen`: another head set matched, three heads, another sampling, another model
    variants.append(_variant("x1", "m", "other #0", ["L0H0", "L2H1"], control="other", draw=0, matched=["L0H1", "L2H0"]))
    variants.append(_variant("x2", "m", "three #0", ["L0H0", "L2H1", "L2H0"], control="three", draw=0))
    variants.append(_variant("x3", "m", "hot #0", ["L0H0", "L2H1"], control="hot", draw=0))
    variants.append(_variant("x4", "m2", "elsewhere #0", ["L0H0", "L2H1"], control="elsewhere", draw=0))
    for e, x in [_eval("ex1", "m", "other #0", "x1", 0.0), _eval("ex2", "m", "three #0", "x2", 0.0),
                 _eval("ex3", "m", "hot #0", "x3", 0.0, temperature=1.0),
                 _eval("i2", "m2", "intact", None, 0.5), _eval("ex4", "m2", "elsewhere #0", "x4", 0.0)]:
        evals.append(e), metrics.append(x)
    store = Store(path)
    store.write({"models": [{"model_id": "m", "name": "sft", "label": "sft"},
                            {"model_id": "m2", "name": "b", "label": "b"}],
                 "variants": variants, "evals": evals, "metrics": metrics})
    store.close()
    return path, ctl


def test_controls_are_the_matching_draws_under_the_same_sampling(db):
    path, ctl = db
    con = connect(path)
    rows = {r[0]: r[1:] for r in con.execute(
        "SELECT variant, delta, control, controls, control_mean, control_sd, beats_controls FROM scores").fetchall()}
    con.close()
    deltas = [v - 0.80 for v in ctl.values()]
    delta, control, n, mean, sd, beats = rows["chosen"]
    assert delta == pytest.approx(-0.50) and control is None
    assert n == 5
    assert mean == pytest.approx(statistics.mean(deltas))
    assert sd == pytest.approx(statistics.stdev(deltas))
    # -0.50 is below c0, c1, c3 (-0.05, -0.40, +0.02); ties c2 (-0.50, not counted); above c4 (-0.70)
    assert beats == pytest.approx(3 / 5)
    # a scale has no ablation controls; a draw and the intact model compare with nothing
    assert rows["up"][2] is None and rows["intact"][2] is None and rows["ctl #0"][1] == "ctl"
    assert rows["ctl #0"][2] is None
