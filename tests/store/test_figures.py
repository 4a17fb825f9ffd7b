"""Figures from a small store: valid PNGs of the expected pixel size, SVGs with the expected labels,
and a one-line skip note for each figure whose data is absent."""

from __future__ import annotations

import struct

import pytest

from sparkql.cli.main import main as cli_main
from sparkql.figures import SIZES, draw_all
from sparkql.store.api import Store, connect


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def add_evals(db):
    """Intact and ablated evals of one model on one dataset, with pass@k / success@k / accuracy."""
    s = Store(db)
    s.write({"variants": [{"variant_id": "v1", "model_id": "ckpt0400", "name": "ablate emergent top 2",
                           "op": "ablate", "factor": 0.0, "heads": ["L3H2", "L1H1"], "n_heads": 2}]})
    evals, metrics = [], []
    for eid, variant, vid, base in (("e-intact", "intact", None, 0.40), ("e-abl", "ablate emergent top 2", "v1", 0.30)):
        evals.append({"eval_id": eid, "model_id": "ckpt0400", "variant": variant, "variant_id": vid,
                      "dataset": "aime24", "n": 8, "temperature": 0.6, "top_p": 0.95, "top_k": 0, "min_p": 0.0,
                      "max_tokens": 64, "seed": 0, "think": True, "n_problems": 30})
        for k in (1, 2, 4, 8):
            metrics.append({"eval_id": eid, "metric": "pass@k", "k": k, "value": min(base * k ** 0.5, 1.0), "stderr": 0.02})
            metrics.append({"eval_id": eid, "metric": "success@k", "k": k, "value": min(base * k ** 0.4, 1.0), "stderr": 0.03})
        metrics.append({"eval_id": eid, "metric": "accuracy", "k": None, "value": base, "stderr": 0.02})
    s.write({"evals": evals, "metrics": metrics})
    s.close()


def test_every_figure_from_the_hand_made_study(hand_store, tmp_path):
    db, _ = hand_store
    out = tmp_path / "figs"
    con = connect(db)
    try:
        results = {r.name: r for r in draw_all(con, out)}
        intact_delta = con.execute("SELECT delta FROM scores WHERE variant <> 'intact' AND metric = 'pass@k' AND k = 1").fetchone()[0]
    finally:
        con.close()
    assert intact_delta == pytest.approx(-0.10)
    # the hand-made study has no random controls: that figure alone is skipped (drawn in the next test)
    assert results.pop("controls").skipped
    assert all(r.skipped is None for r in results.values()), {n: r.skipped for n, r in results.items()}
    expect = {
        "cohort_emergent": ("cohort", ["newly activated", "maintained (base)", "cohort 100", "cohort 400",
                                       "rewards/accuracy_reward", "r with newly activated = 0.64"]),
        "frequency_emergent": ("frequency", ["activation frequency: emergent", "layer", "head"]),
        "emergent_map": ("emergent_map", ["emergent (4)", "cumulative (sets per head)"]),
        "passk": ("passk", ["pass@k", "success@k", "ckpt[step=400] / intact / aime24",
                            "ckpt[step=400] / ablate emergent top 2 / aime24"]),
        # nine metric columns: the ninth (success@8, 0.4 and 0.3 times 8 ** 0.4) wraps into a second panel
        "scores": ("scores", ["aime24", "pass@1", "40.0", "30.0 (-10.0)", "success@8", "91.9", "68.9 (-23.0)"]),
        "stability": ("stability", ["emergent: emergent at what share of cutoffs", "checkpoint step"]),
    }
    for stem, (kind, labels) in expect.items():
        if kind == "scores":  # as tall as its panels need, never less than the standard size
            w, h = png_size(out / f"{stem}.png")
            assert w == SIZES[kind][0] and h >= SIZES[kind][1]
        else:
            assert png_size(out / f"{stem}.png") == SIZES[kind], stem
        svg = (out / f"{stem}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
        for label in labels:
            assert label in svg, (stem, label)
    csv_text = (out / "scores.csv").read_text().splitlines()
    assert csv_text[0] == "model,variant,dataset,metric,k,value,delta_vs_intact"
    assert len(csv_text) == 1 + 2 * 9


def test_controls_figure_draws_the_draws_beside_the_intervention(hand_store, tmp_path):
    import shutil

    db = shutil.copy(hand_store[0], tmp_path / "controls.duckdb")
    s = Store(db)
    variants, evals, metrics = [], [], []
    for i, value in enumerate((0.38, 0.25, 0.36)):  # deltas -0.02, -0.15, -0.04 against intact 0.40
        variants.append({"variant_id": f"c{i}", "model_id": "ckpt0400", "name": f"ctl #{i}", "op": "ablate",
                         "factor": 0.0, "heads": ["L0H0", "L2H1"], "n_heads": 2, "control": "ctl", "draw": i})
        evals.append({"eval_id": f"e-c{i}", "model_id": "ckpt0400", "variant": f"ctl #{i}", "variant_id": f"c{i}",
                      "dataset": "aime24", "n": 8, "temperature": 0.6, "top_p": 0.95, "top_k": 0, "min_p": 0.0,
                      "max_tokens": 64, "seed": 0, "think": True, "n_problems": 30})
        metrics.append({"eval_id": f"e-c{i}", "metric": "pass@k", "k": 1, "value": value, "stderr": 0.02})
    s.write({"variants": variants, "evals": evals, "metrics": metrics})
    s.close()
    con = connect(db)
    try:
        (res,) = draw_all(con, tmp_path / "figs", only=["controls"])
    finally:
        con.close()
    assert res.skipped is None
    assert png_size(tmp_path / "figs" / "controls.png") == SIZES["controls"]
    svg = (tmp_path / "figs" / "controls.svg").read_text()
    # the ablation's -0.10 is below -0.02 and -0.04, above -0.15
    for label in ("beats 67% of 3", "random controls", "ablate emergent top 2"):
        assert label in svg, label


def test_stability_figure_shows_the_fold_counts(hand_store, tmp_path):
    """`with folds = K` rows (fold_heads) joined to an emergent set's heads: each cell shows n/K."""
    import shutil

    db = shutil.copy(hand_store[0], tmp_path / "folds.duckdb")
    con = connect(db)
    try:
        heads = con.execute("SELECT set_key, model_id, layer, head FROM head_stability WHERE kind = 'diff'").fetchall()
    finally:
        con.close()
    assert heads
    s = Store(db)
    s.write({"fold_heads": [{"fold_key": "f1", "kind": "emergent", "model_id": m, "set_key": k, "layer": l, "head": h,
                             "n_folds": 2, "folds": 3, "frequency": 2 / 3, "in_full": True} for k, m, l, h in heads]})
    s.close()
    con = connect(db)
    try:
        (res,) = draw_all(con, tmp_path / "figs", only=["stability"])
        got = con.execute("SELECT DISTINCT fold_stability, folds FROM head_stability WHERE kind = 'diff'").fetchall()
    finally:
        con.close()
    assert res.skipped is None and got == [(2 / 3, 3)]
    svg = (tmp_path / "figs" / "stability.svg").read_text()
    assert "2/3" in svg and "emergent in n of K folds" in svg


def test_empty_store_skips_every_figure_with_a_note(tmp_path, capsys):
    db = tmp_path / "empty.duckdb"
    Store(db).close()
    with pytest.raises(SystemExit) as e:
        cli_main(["figures", "--db", str(db), "--out", str(tmp_path / "figs")])
    assert e.value.code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7 and all(line.startswith("- ") and "skipped" in line for line in lines)
    assert not list((tmp_path / "figs").glob("*.png")) if (tmp_path / "figs").exists() else True


def test_cohort_figure_with_many_cohorts_uses_a_colour_bar(tmp_path):
    from sparkql.figures import cohort_figure

    s = Store(tmp_path / "many.duckdb")
    circuits = ["base"] + [f"c{i}" for i in range(12)]
    s.write({"circuits": {"circuit_id": circuits}})
    # checkpoint i: the base head L0H0 and emergent heads L1H0..L1Hi (a new cohort each checkpoint)
    rows = [{"circuit_id": "base", "node": "a0.h0", "layer": 0, "head": 0, "kind": "head", "in_circuit": True}]
    for i in range(12):
        rows += [{"circuit_id": f"c{i}", "node": f"a1.h{h}", "layer": 1, "head": h, "kind": "head", "in_circuit": True}
                 for h in range(i + 1)]
    s.write({"nodes": rows, "cohort_members": [
        {"cohort_key": "k", "set_name": "sft", "idx": i, "model_id": f"m{i}", "step": 100 * (i + 1),
         "circuit_id": f"c{i}", "base_circuit_id": "base"} for i in range(12)]})
    with s.transaction() as con:
        con.execute("INSERT INTO cohort_checkpoints BY NAME SELECT cohort_key, set_name, idx, model_id, step, "
                    "circuit_id, n_active, newly_activated, maintained, n_base FROM cohort_checkpoints_live")
        con.execute("INSERT INTO cohort_heads BY NAME SELECT * FROM cohort_heads_live")
    s.close()
    con = connect(tmp_path / "many.duckdb")
    try:
        res = cohort_figure(con, tmp_path / "figs")
    finally:
        con.close()
    assert res.skipped is None
    assert png_size(tmp_path / "figs" / "cohort_sft.png") == SIZES["cohort"]
    svg = (tmp_path / "figs" / "cohort_sft.svg").read_text()
    assert "cohort (step first emerged)" in svg and "cohort 100" not in svg
    assert "no trainer_state.json log" in svg
