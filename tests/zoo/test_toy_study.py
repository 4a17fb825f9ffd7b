"""End to end: a reduced toy study through ``sparkql run`` on the tiny zoo fills every
table of docs/store.md with the rows it should (studies/toy.spark at test scale)."""

from __future__ import annotations

import duckdb
from click.testing import CliRunner

from sparkql import zoo

STUDY = '''
model base = "zoo:base"
model sft = "zoo:sft/checkpoint-*"
model grpo = "zoo:grpo/checkpoint-*"
set dtype = fp32
circuit toy_pairs on sft[*] diff base using eap_ig(steps = 2, top_n = 30, tau = 0, examples = 4) as emergent_sft
circuit toy_pairs on grpo[*] diff base using eap_ig(steps = 2, top_n = 30, tau = 0, examples = 4) as emergent_grpo
cohort emergent_sft
cohort emergent_grpo
ablate emergent_sft top 2 on sft[-1] as sft_ablated
scale heads L0H0, L1H1 by 0.5 on base as base_down
eval pass@k on toy_hard for base, sft[-1], grpo[-1], sft_ablated, base_down with n = 2, k = [1, 2], temperature = 0.6, max_tokens = 48, instruction = "", examples = 6
'''


def test_reduced_toy_study_fills_the_store(tiny_zoo, tmp_path):
    from sparkql.cli.main import cli

    study = tmp_path / "toy.spark"
    study.write_text(STUDY)
    db = tmp_path / "toy.duckdb"
    result = CliRunner().invoke(cli, ["run", str(study), "--db", str(db), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    con = duckdb.connect(str(db), read_only=True)

    def q(sql):
        return con.execute(sql).fetchall()

    lay = zoo.layout()
    n_models = 1 + len(lay["sft"]) + len(lay["grpo"])
    assert q("SELECT count(*) FROM runs") == [(1,)]
    models = q("SELECT name, step, architecture, n_kv_heads FROM models ORDER BY name, step")
    assert sorted((n, s) for n, s, _, _ in models) == sorted(
        [("base", None)] + [("sft", s) for s in lay["sft"]] + [("grpo", s) for s in lay["grpo"]])
    assert {(a, k) for _, _, a, k in models} == {("Qwen2ForCausalLM", zoo.model_shape()["n_kv_heads"])}

    # one circuit per model, every edge of the graph scored (docs/eap_ig.md): counted here from the
    # shape, every upstream node (embedding, earlier heads and MLPs) into each head's q, k and v,
    # into each MLP (plus its own layer's heads) and into the logits
    assert q("SELECT count(*), min(n_examples), max(n_examples) FROM circuits") == [(n_models, 4, 4)]
    shape = zoo.model_shape()
    n_layers, n_heads = shape["n_layers"], shape["n_heads"]
    upstream = [1 + layer * (n_heads + 1) for layer in range(n_layers)]
    n_edges = sum(3 * n_heads * u + u + n_heads for u in upstream) + 1 + n_layers * (n_heads + 1)
    per_circuit = q("SELECT count(*), count(*) FILTER (WHERE in_circuit) FROM edges GROUP BY circuit_id")
    assert len(per_circuit) == n_models
    assert all(total == n_edges and 0 < kept <= 30 for total, kept in per_circuit)
    assert q("SELECT count(DISTINCT circuit_id) FROM nodes WHERE in_circuit AND kind = 'head'") == [(n_models,)]

    # cohorts: one row per checkpoint of each series, beside its loss / reward curve
    cohorts = dict(q("SELECT set_name, count(*) FROM cohort_checkpoints GROUP BY set_name"))
    assert cohorts == {"emergent_sft": len(lay["sft"]), "emergent_grpo": len(lay["grpo"])}
    keys = {k for (k,) in q("SELECT DISTINCT key FROM rewards")}
    assert "loss" in keys and any("reward" in k for k in keys)

    # variants and evals: 3 intact models + 2 variants, every sample present and graded
    variants = dict(q("SELECT name, n_heads FROM variants"))
    assert variants["base_down"] == 2 and set(variants) == {"sft_ablated", "base_down"}
    assert q("SELECT count(*) FROM evals") == [(5,)]
    assert q("SELECT count(*), count(correct) FROM samples") == [(5 * 6 * 2, 5 * 6 * 2)]
    pass1 = q("SELECT value FROM metrics WHERE metric = 'pass@k' AND k = 1")
    assert len(pass1) == 5 and all(0.0 <= v <= 1.0 for (v,) in pass1)

    # the end-of-run summary: emergent heads per series and the intact-vs-variant table
    assert "emergent heads" in result.output
    assert "emergent_sft" in result.output and "emergent_grpo" in result.output
    assert "intact vs variants" in result.output
    assert "sft_ablated" in result.output and "base_down" in result.output
