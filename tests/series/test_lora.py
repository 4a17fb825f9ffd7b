"""A LoRA checkpoint series (adapters made with peft on a tiny Qwen2, TRL's trainer_state.json beside
them) through `sparkql run`: its circuits equal those of the same checkpoints merged by hand
(W + alpha/r * B @ A, computed here from the safetensors files without peft) and saved as full
models; the cohort reads the reward the study names; an intervention and an eval run on it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import duckdb
import pytest
import torch
from safetensors.torch import load_file, save_file

from sparkql.cli.common import run_cli
from sparkql.cli.main import cli
from sparkql.errors import SparkError

from .trl_layout import RUNS

STEPS = [2, 4]
R, ALPHA = 4, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]

STUDY = """model base = "base"
model lora = "lora/checkpoint-*"
model full = "full/checkpoint-*"
set tau = 0.0
set top_n = 60
circuit toy_pairs on lora[*] diff base as em_lora using eap_ig(steps = 3, examples = 2)
circuit toy_pairs on full[*] diff base as em_full using eap_ig(steps = 3, examples = 2)
cohort em_lora with reward = "rewards/digits_reward/mean"
ablate em_lora[-1] top 2 on lora[-1] as ablated
eval pass@k on toy_hard for lora[-1], ablated with n = 1, examples = 2, max_tokens = 6, instruction = ""
"""


def make_adapter(base: Path, out: Path, seed: int, with_tokenizer: bool) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    cfg = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():  # a visible update: B and A drawn at a scale that moves the circuits
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.3)
    peft_model.save_pretrained(out)
    if with_tokenizer:  # TRL saves the tokenizer into every checkpoint; a plain peft save does not
        AutoTokenizer.from_pretrained(base).save_pretrained(out)


def merge_by_hand(base: Path, adapter: Path, out: Path) -> None:
    """The full model an adapter stands for, from the files alone: W + alpha / r * B @ A."""
    shutil.copytree(base, out)
    weights = load_file(base / "model.safetensors")
    lora = load_file(adapter / "adapter_model.safetensors")
    n = 0
    for key in list(weights):
        stem = key.removesuffix(".weight")
        a, b = f"base_model.model.{stem}.lora_A.weight", f"base_model.model.{stem}.lora_B.weight"
        if a in lora:
            weights[key] = weights[key] + (ALPHA / R) * (lora[b] @ lora[a])
            n += 1
    assert n == 2 * len(TARGETS)  # 2 layers x q, k, v, o
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from sparkql.runtime.models.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("lora_series")
    base = make_tiny_model(root / "base", "qwen2", seed=0)
    for i, s in enumerate(STEPS):
        ck = root / "lora" / f"checkpoint-{s}"
        make_adapter(base, ck, seed=10 + i, with_tokenizer=(s == 2))
        state = RUNS / "grpo_lora" / f"checkpoint-{s}" / "trainer_state.json"  # TRL's own log of a LoRA run
        shutil.copyfile(state, ck / "trainer_state.json")
        merge_by_hand(base, ck, root / "full" / f"checkpoint-{s}")
        shutil.copyfile(state, root / "full" / f"checkpoint-{s}" / "trainer_state.json")
    return root


@pytest.fixture(scope="module")
def store(tree):
    (tree / "s.spark").write_text(STUDY)
    db = tree / "s.duckdb"
    try:
        code = run_cli(cli, ["run", str(tree / "s.spark"), "--db", str(db), "-q"])
    except SystemExit as e:
        code = e.code
    assert code in (0, None)
    return duckdb.connect(str(db), read_only=True)


def _circuit(con, name: str, step: int):
    cid = con.execute("SELECT c.circuit_id FROM circuits c JOIN models m USING (model_id) WHERE m.name = ? AND m.step = ?",
                      [name, step]).fetchone()[0]
    edges = con.execute("SELECT src, dst, score, in_circuit FROM edges WHERE circuit_id = ? ORDER BY src, dst",
                        [cid]).fetchall()
    heads = con.execute("SELECT layer, head FROM nodes WHERE circuit_id = ? AND kind = 'head' AND in_circuit "
                        "ORDER BY layer, head", [cid]).fetchall()
    return edges, heads


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_lora_circuits_equal_the_hand_merged_full_models(store, step):
    lora_edges, lora_heads = _circuit(store, "lora", step)
    full_edges, full_heads = _circuit(store, "full", step)
    assert len(lora_edges) == len(full_edges) > 0
    assert [e[:2] for e in lora_edges] == [e[:2] for e in full_edges]
    scale = max(abs(e[2]) for e in full_edges)
    # float32 sums in another order (peft adds the update per layer): last-bit differences only
    assert [e[2] for e in lora_edges] == pytest.approx([e[2] for e in full_edges], abs=1e-5 * scale, rel=1e-4)
    assert [e[3] for e in lora_edges] == [e[3] for e in full_edges]
    assert lora_heads == full_heads


@pytest.mark.slow
def test_the_adapters_change_the_model(store):
    """Not a vacuous equality: the merged checkpoints' circuits differ from the base's."""
    base_id = store.execute("SELECT circuit_id FROM circuits c JOIN models m USING (model_id) WHERE m.name = 'base'"
                            ).fetchone()[0]
    base = dict(((s, d), sc) for s, d, sc in store.execute(
        "SELECT src, dst, score FROM edges WHERE circuit_id = ?", [base_id]).fetchall())
    lora, _ = _circuit(store, "lora", 4)
    assert max(abs(sc - base.get((s, d), 0.0)) for s, d, sc, _ in lora) > 1e-3


@pytest.mark.slow
def test_models_rows_cohort_and_eval_of_the_lora_series(store, tree):
    rows = store.execute("SELECT step, dir, n_layers, n_heads, architecture FROM models WHERE name = 'lora' ORDER BY step"
                         ).fetchall()
    assert rows == [(s, str((tree / "lora" / f"checkpoint-{s}").resolve()), 2, 4, "Qwen2ForCausalLM") for s in STEPS]
    got = store.execute("SELECT step, reward, reward_key FROM cohort_checkpoints ORDER BY step").fetchall()
    hist = json.loads((RUNS / "grpo_lora" / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    key = "rewards/digits_reward/mean"
    want = [sum(e[key] for e in hist if lo < e["step"] <= hi) / 2 for lo, hi in ((0, 2), (2, 4))]
    assert [g[0] for g in got] == STEPS and {g[2] for g in got} == {key}
    assert [g[1] for g in got] == pytest.approx(want)
    variants = store.execute("SELECT variant FROM evals e JOIN models m USING (model_id) WHERE m.name = 'lora' "
                             "ORDER BY variant").fetchall()
    assert variants == [("ablated",), ("intact",)]
    assert store.execute("SELECT count(*) FROM samples").fetchone()[0] == 4


@pytest.mark.slow
def test_load_model_merges_like_the_hand_merge_and_the_vllm_copy_matches(tree, tmp_path, monkeypatch):
    """load_model on an adapter checkpoint gives the hand-merged weights; the merged directory written
    for vLLM (which loads weights from a directory) is a full model with the same logits."""
    from sparkql.plan.steps import ModelRef
    from sparkql.runtime.models.lora import materialize_merged
    from sparkql.runtime.models.loading import load_model

    ck = tree / "lora" / "checkpoint-4"
    lm = load_model(ck, dtype="fp32", device="cpu", base=str(tree / "base"))
    full = load_model(tree / "full" / "checkpoint-4", dtype="fp32", device="cpu")
    ours, ref = lm.model.state_dict(), full.model.state_dict()
    assert set(ours) == set(ref)
    assert max((ours[k] - ref[k]).abs().max().item() for k in ref) < 1e-6
    # without a base, the adapter's own base_model_name_or_path (a local directory here) is used
    assert load_model(ck, dtype="fp32", device="cpu").model.state_dict()["lm_head.weight"].equal(ours["lm_head.weight"])
    # the tokenizer: the checkpoint's own when saved there, else the base's
    assert lm.tokenizer("<think>1+2")["input_ids"] == full.tokenizer("<think>1+2")["input_ids"]

    monkeypatch.setenv("SPARKQL_MERGED_DIR", str(tmp_path / "merged"))
    ref_model = ModelRef(name="lora", label="lora[step=4]", path=str(ck), step=4, fingerprint="fp", model_id="m4",
                         base=str(tree / "base"))
    d = materialize_merged(ref_model)
    assert (d / "config.json").is_file() and (d / "model.safetensors").is_file()
    assert materialize_merged(ref_model) == d  # written once
    copy = load_model(d, dtype="fp32", device="cpu")
    ids = torch.tensor([full.tokenizer("12+3=")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(copy.model(ids).logits, full.model(ids).logits, atol=1e-5)


def test_without_peft_an_adapter_is_a_spark_error_with_the_install_hint(tree, monkeypatch):
    from sparkql.runtime.models.lora import merge_adapter

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(SparkError) as info:
        merge_adapter(object(), tree / "lora" / "checkpoint-2")
    assert 'pip install "sparkql[peft]"' in info.value.hint
