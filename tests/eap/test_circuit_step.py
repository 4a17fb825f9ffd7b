"""End to end: a .spark study over a tiny model directory and a JSONL of clean/corrupt pairs
(plus a problem dataset corrupted by digits, with a sampled answer opening) through
`sparkql run`; the store gets circuits, edges (every edge), nodes and head_sets; a second run
is a no-op; stored scores equal a direct engine run on the same pairs."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from sparkql.cli.main import cli
from sparkql.runtime.eap.graph import Graph


@pytest.fixture(scope="module")
def study(tiny_qwen2, tmp_path_factory):
    d = tmp_path_factory.mktemp("circuit_e2e")
    pairs = [("12+34=46. 12+34=", "25+34=59. 25+34=", "46"), ("21+13=34. 21+13=", "41+13=54. 41+13=", "34"),
             ("30+11=41. 30+11=", "17+11=28. 17+11=", "41"), ("1+1=2. 1+1=", "11+1=12. 11+1=", "2")]  # last: unequal
    with open(d / "pairs.jsonl", "w") as f:
        for c, x, a in pairs:
            f.write(json.dumps({"clean": c, "corrupt": x, "answer": a}) + "\n")
    with open(d / "probs.jsonl", "w") as f:
        for q, a in [("What is 12+34?", "46"), ("What is 7*8?", "56"), ("Name a colour.", "red")]:
            f.write(json.dumps({"question": q, "answer": a}) + "\n")
    (d / "s.spark").write_text(
        f'model base = "{tiny_qwen2}"\n'
        'dataset pairs = "pairs.jsonl" (clean = "clean", corrupt = "corrupt", answer = "answer")\n'
        'dataset probs = "probs.jsonl" (problem = "question", answer = "answer")\n'
        "set dtype = fp64\nset device = cpu\n"
        "circuit pairs on base using eap_ig(steps = 4, top_n = 60, tau = 0, metric = kl) as found\n"
        "circuit probs on base using eap_ig(steps = 3, top_n = 60, tau = 0, metric = logit_diff, "
        "corrupt = digits, prefix = sample, prefix_tokens = 3, max_tokens = 200) as found_probs\n"
    )
    db = d / "r.duckdb"
    first = CliRunner().invoke(cli, ["run", str(d / "s.spark"), "--db", str(db), "-q"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(cli, ["run", str(d / "s.spark"), "--db", str(db), "-q"])
    return d, db, first, second


def test_tables_written(study):
    d, db, first, _ = study
    g = Graph(2, 4)
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT dataset, n_examples, n_dropped, n_edges, n_edges_in_circuit, n_heads_in_circuit, "
                       "faithfulness, metric_clean, metric_corrupt, ig_steps, metric, corrupt FROM circuits "
                       "ORDER BY dataset").fetchall()
    assert [r[0] for r in rows] == ["pairs", "probs"]
    pairs, probs = rows
    assert pairs[1:4] == (3, 1, g.n_edges) and "dropped 1 of 4 pairs" in first.output
    # the third problem has no digit to redraw: dropped as unchanged, not as unequal length
    assert probs[1:4] == (2, 0, g.n_edges) and probs[9:] == (3, "logit_diff", "digits")
    for r in rows:
        assert 0 < r[4] and r[5] > 0 and r[6] is not None and r[7] != r[8]
    cid = con.execute("SELECT circuit_id FROM circuits WHERE dataset = 'pairs'").fetchone()[0]
    n, n_in, n_pairs = con.execute(
        "SELECT count(*), count(*) FILTER (in_circuit), count(DISTINCT (src, dst)) FROM edges WHERE circuit_id = ?",
        [cid]).fetchone()
    assert n == n_pairs == g.n_edges and 0 < n_in <= 60
    nodes = con.execute("SELECT node, kind, layer, head, score, in_circuit FROM nodes WHERE circuit_id = ? "
                        "ORDER BY node", [cid]).fetchall()
    assert len(nodes) == len(g.nodes)
    kinds = {r[0]: r[1:4] for r in nodes}
    assert kinds["a1.h3"] == ("head", 1, 3) and kinds["m0"] == ("mlp", 0, None) and kinds["input"][0] == "input"
    # head scores: sum of |score| over kept edges in and out, recomputed in SQL
    sql_scores = dict(con.execute("""
        SELECT node, sum(abs(score)) FROM (
            SELECT src AS node, score FROM edges WHERE circuit_id = ? AND in_circuit
            UNION ALL
            SELECT regexp_replace(dst, '<[qkv]>$', ''), score FROM edges WHERE circuit_id = ? AND in_circuit)
        GROUP BY node""", [cid, cid]).fetchall())
    for node, kind, _, _, score, inc in nodes:
        assert inc == (node in sql_scores)
        assert score == pytest.approx(sql_scores.get(node, 0.0), rel=1e-9, abs=1e-15)
    heads = con.execute("SELECT set_name, count(*) FROM head_sets GROUP BY set_name ORDER BY 1").fetchall()
    n_heads = con.execute("SELECT n_heads_in_circuit FROM circuits ORDER BY dataset").fetchall()
    assert heads == [("found", n_heads[0][0]), ("found_probs", n_heads[1][0])]


def test_second_run_is_a_no_op(study):
    d, db, _, second = study
    assert second.exit_code == 0, second.output
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM circuits").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM edges").fetchone()[0] == 2 * Graph(2, 4).n_edges
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    assert "EAP-IG" not in second.output and "circuit" in second.output


def test_stored_scores_equal_the_engine(study, tiny_qwen2):
    from sparkql.runtime.eap.engine import EapIg, Example
    from sparkql.runtime.models.loading import load_model

    d, db, _, _ = study
    lm = load_model(tiny_qwen2, "fp64", "cpu")
    tok = lm.tokenizer
    rows = [json.loads(line) for line in (d / "pairs.jsonl").read_text().splitlines()][:3]
    exs = [Example(tok(r["clean"])["input_ids"], tok(r["corrupt"])["input_ids"]) for r in rows]
    res = EapIg(lm).run(exs, steps=4)
    g = res.graph
    con = duckdb.connect(str(db), read_only=True)
    stored = dict(((s, t), x) for s, t, x in con.execute(
        "SELECT src, dst, score FROM edges JOIN circuits USING (circuit_id) WHERE dataset = 'pairs'").fetchall())
    src, dst = g.edge_names()
    mine = res.edge_scores()
    assert np.allclose([stored[(s, t)] for s, t in zip(src, dst)], mine, rtol=1e-12, atol=0)


def test_export_json_has_the_eap_ig_layout(study, tmp_path):
    d, db, _, _ = study
    out = tmp_path / "c.json"
    con = duckdb.connect(str(db), read_only=True)
    cid = con.execute("SELECT circuit_id FROM circuits WHERE dataset = 'pairs'").fetchone()[0]
    con.close()
    res = CliRunner().invoke(cli, ["export", "circuit", cid[:10], "--db", str(db), "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data) == {"cfg", "nodes", "edges", "sparkql"}
    assert data["cfg"] == {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": False, "d_model": 32}
    g = Graph(2, 4)
    assert set(data["nodes"]) == set(g.nodes)
    src, dst = g.edge_names()
    assert list(data["edges"]) == [f"{s}->{t}" for s, t in zip(src, dst)]  # EAP-IG's naming, every edge
    assert all(set(v) == {"score", "in_graph"} for v in data["edges"].values())
    con = duckdb.connect(str(db), read_only=True)
    n_in, top = con.execute("SELECT count(*) FILTER (in_circuit), max(abs(score)) FROM edges WHERE circuit_id = ?",
                            [cid]).fetchone()
    assert sum(v["in_graph"] for v in data["edges"].values()) == n_in
    assert max(abs(v["score"]) for v in data["edges"].values()) == top
    assert data["nodes"]["logits"]["in_graph"] and data["sparkql"]["circuit_id"] == cid


def test_export_dot_and_svg(study, tmp_path, monkeypatch):
    import shutil

    from sparkql.errors import SparkError
    from sparkql.runtime.eap import export as ex

    d, db, _, _ = study
    con = duckdb.connect(str(db), read_only=True)
    cid, n_in = con.execute("SELECT circuit_id, n_edges_in_circuit FROM circuits WHERE dataset = 'pairs'").fetchone()
    label, model_id = con.execute("SELECT m.label, m.model_id FROM circuits c JOIN models m USING (model_id) "
                                  "WHERE c.circuit_id = ?", [cid]).fetchone()
    dot = ex.circuit_dot(con, cid)
    assert dot.startswith("digraph") and dot.count(" -> ") == n_in and '"logits"' in dot
    title = dot.splitlines()[1]  # the graph's label: what a reader calls the model, not its hash
    assert title.startswith(f'  label="pairs on {label} ') and model_id not in title
    if shutil.which("dot"):
        out = ex.export_circuit(con, cid, "svg", tmp_path / "c.svg")
        svg = out.read_text()
        assert "<svg" in svg and f"pairs on {label}" in svg and model_id not in svg
    monkeypatch.setattr(ex.shutil, "which", lambda name: None)
    with pytest.raises(SparkError, match="Graphviz") as err:
        ex.export_circuit(con, cid, "svg", tmp_path / "c2.svg")
    assert "install" in err.value.hint
    with pytest.raises(SparkError, match="no circuit"):
        ex.export_circuit(con, "zzzz", "json", tmp_path / "x.json")


def test_changing_top_n_or_tau_reselects_without_scoring(study, monkeypatch):
    """A study that changes only the selection (top_n, tau) reuses the stored edge scores: no
    EAP-IG forward+backward, no clean/corrupted pre-pass, no sampled opening; only the new
    circuit's faithfulness passes (3 forwards per batch). `sparkql plan` shows the scores cached."""
    import sparkql.runtime.eap.engine as E
    import sparkql.runtime.eap.faithfulness as F
    import sparkql.runtime.eap.prompts as P

    d, db, _, _ = study
    text = (d / "s.spark").read_text()
    (d / "t.spark").write_text(text.replace("steps = 4, top_n = 60, tau = 0,", "steps = 4, top_n = 25, tau = 0.001,")
                               .replace("steps = 3, top_n = 60, tau = 0,", "steps = 3, top_n = 7, tau = 0,"))
    plan = CliRunner().invoke(cli, ["plan", str(d / "t.spark"), "--db", str(db), "--json"])
    assert plan.exit_code == 0, plan.output
    steps = json.loads(plan.output)["steps"]
    assert {s["kind"]: s["cached"] for s in steps if s["kind"] == "edge_scores"} == {"edge_scores": True}
    assert [s["cached"] for s in steps if s["kind"] == "circuit"] == [False, False]

    calls = {"chunk": 0, "prepass": 0, "opening": 0, "faith": 0}

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(E.EapIg, "_chunk", counting("chunk", E.EapIg._chunk))
    monkeypatch.setattr(E.EapIg, "_prepass", counting("prepass", E.EapIg._prepass))
    monkeypatch.setattr(P, "greedy_opening", counting("opening", P.greedy_opening))
    monkeypatch.setattr(F.PatchedForward, "__call__", counting("faith", F.PatchedForward.__call__))
    res = CliRunner().invoke(cli, ["run", str(d / "t.spark"), "--db", str(db), "-q"])
    assert res.exit_code == 0, res.output
    assert calls["chunk"] == calls["prepass"] == calls["opening"] == 0
    assert calls["faith"] == 2 * 3  # two circuits, one batch each: clean, corrupted, patched
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM scorings").fetchone()[0] == 2
    new, old = con.execute("SELECT circuit_id, top_n, scores_id FROM circuits WHERE dataset = 'pairs' "
                           "ORDER BY top_n").fetchall()
    assert new[1] == 25 and old[1] == 60 and new[2] == old[2]
    same = con.execute("SELECT count(*) FROM edges a JOIN edges b USING (src, dst) WHERE a.circuit_id = ? "
                       "AND b.circuit_id = ? AND a.score = b.score", [new[0], old[0]]).fetchone()[0]
    assert same == Graph(2, 4).n_edges
    assert con.execute("SELECT n_edges_in_circuit FROM circuits WHERE circuit_id = ?", [new[0]]).fetchone()[0] <= 25
    # what the scores were computed with is stored with every circuit
    assert con.execute("SELECT DISTINCT dtype, device FROM circuits").fetchall() == [("fp64", "cpu")]
    assert con.execute("SELECT DISTINCT dtype, device FROM scorings").fetchall() == [("fp64", "cpu")]


def test_plan_sizes_the_circuits(study):
    """`sparkql plan` prints each scoring's FLOPs, predicted peak and chunk count, from the same
    memory model the engine chunks with (sparkql/plan/sizing.py), on the model's own token counts."""
    from sparkql.plan.compile import compile_file
    from sparkql.plan.sizing import fb_flops, plan_chunks, shape_from_config
    from sparkql.runtime.eap.estimate import estimate_circuit

    d, db, _, _ = study
    plan = compile_file(d / "s.spark")
    step = next(s for s in plan.steps if s.kind == "edge_scores" and s.spec.dataset.name == "pairs")
    est = estimate_circuit(step, 2**30)
    con = duckdb.connect(str(db), read_only=True)
    pairs = con.execute("SELECT len(clean) FROM scored_pairs JOIN scorings USING (scores_id) "
                        "WHERE dataset = 'pairs' ORDER BY idx").fetchall()
    con.close()
    # the estimate counts every row (the scoring dropped one of unequal length), with the same tokenizer
    assert est.examples == 4 and est.longest == max(n for (n,) in pairs)
    cfg = json.loads((Path(step.spec.model.path) / "config.json").read_text())
    shape = shape_from_config(cfg, elem=8)
    assert est.chunks == plan_chunks(shape, est.longest, 4, 4, 2**30).chunks
    assert est.flops > 4 * fb_flops(shape, min(n for (n,) in pairs), 1)
    out = CliRunner().invoke(cli, ["plan", str(d / "s.spark"), "--db", str(d / "none.duckdb")], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "FLOP" in out.output and "PEAK/CHUNKS" in out.output and "counted with the model's tokenizer" in out.output
