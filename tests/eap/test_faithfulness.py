"""Faithfulness (docs/eap_ig.md): the patched forward reproduces the model, the full graph
scores 1 and the empty graph 0, and patching every out-edge of one head equals replacing
that head's output with its corrupted output in the real HF model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparkql.runtime.eap.faithfulness import PatchedForward, faithfulness
from sparkql.runtime.models.loading import load_model

from .bruteforce import perturb_norms, random_examples


@pytest.fixture(scope="module", params=["tiny_qwen2", "tiny_qwen3", "tiny_llama"])
def lm(request):
    lm = load_model(request.getfixturevalue(request.param), "fp64", "cpu")
    perturb_norms(lm.model, seed=7)
    return lm


def _batch(examples):
    S = max(len(e.clean) for e in examples)
    clean = torch.zeros(len(examples), S, dtype=torch.long)
    corrupt = torch.zeros_like(clean)
    for i, e in enumerate(examples):
        clean[i, : len(e.clean)] = torch.tensor(e.clean)
        corrupt[i, : len(e.corrupt)] = torch.tensor(e.corrupt)
    last = torch.tensor([len(e.clean) - 1 for e in examples])
    return clean, corrupt, last


def test_patched_forward_reproduces_the_model(lm):
    exs = random_examples(int(lm.config["vocab_size"]), [6, 4], seed=1)
    clean, _, last = _batch(exs)
    logits, _ = PatchedForward(lm)(clean, last)
    with torch.no_grad():
        ref = lm.model(clean).logits[torch.arange(2), last]
    assert torch.allclose(logits, ref, rtol=0, atol=1e-10 * ref.abs().max())


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_full_graph_is_one_and_empty_graph_is_zero(lm, metric):
    exs = random_examples(int(lm.config["vocab_size"]), [6, 4, 5], seed=2)
    g = PatchedForward(lm).p.graph
    t, f = [3, 4, 5], [6, 7, 8]
    full = faithfulness(lm, exs, g.mask.copy(), metric, t, f, batch=2)
    empty = faithfulness(lm, exs, np.zeros_like(g.mask), metric, t, f, batch=2)
    assert full.metric_clean != full.metric_corrupt
    assert full.value == pytest.approx(1.0, abs=1e-12)
    assert empty.value == pytest.approx(0.0, abs=1e-9)
    if metric == "kl":
        assert full.metric_clean == 0.0 and empty.metric_circuit > 0


def test_patching_a_heads_out_edges_equals_replacing_its_output(lm):
    """Circuit = every edge except those out of head a0.h1: the same as running the HF model
    with a0.h1's output (its slice of o_proj's input) taken from the corrupted run."""
    exs = random_examples(int(lm.config["vocab_size"]), [6], seed=3)
    clean, corrupt, last = _batch(exs)
    fw = PatchedForward(lm)
    p, g = fw.p, fw.p.graph
    notin = torch.zeros(g.mask.shape, dtype=torch.bool)
    notin[g.head_source(0, 1)] = torch.as_tensor(g.mask[g.head_source(0, 1)])
    _, zc = fw(corrupt, last)
    patched, _ = fw(clean, last, notin, zc)
    o = p.mod("o_proj", 0)
    cols = slice(p.dh, 2 * p.dh)
    store = {}
    h1 = o.register_forward_pre_hook(lambda m, a: store.__setitem__("x", a[0][..., cols].clone()))
    with torch.no_grad():
        lm.model(corrupt)
    h1.remove()

    def swap(m, a):
        x = a[0].clone()
        x[..., cols] = store["x"]
        return (x,)

    h2 = o.register_forward_pre_hook(swap)
    try:
        with torch.no_grad():
            ref = lm.model(clean).logits[:, -1]
    finally:
        h2.remove()
    # HF's RMSNorm reduces in float32 even in a float64 model, over differently shaped tensors
    # here and there: agreement to ~1e-8 of the logits' scale is the floor
    assert torch.allclose(patched, ref, rtol=0, atol=1e-6 * ref.abs().max())
    with torch.no_grad():
        assert not torch.allclose(patched, lm.model(clean).logits[:, -1], atol=1e-6)


def test_patched_forward_applies_a_sliding_window(tmp_path):
    """Mistral attends within a window: the functional forward must mask the same keys."""
    from transformers import AutoModelForCausalLM

    from sparkql.runtime.models.adapters import FAMILIES
    from sparkql.runtime.models.loading import LoadedModel
    from sparkql.runtime.models.tiny import tiny_config

    cfg = tiny_config("mistral", vocab_size=50)
    cfg.sliding_window = 3
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").double().eval()
    lm = LoadedModel(ref=None, path=tmp_path, model=model, tokenizer=None, adapter=FAMILIES["mistral"],
                     config=cfg.to_dict(), device=torch.device("cpu"), dtype=torch.float64)
    ids = torch.randint(0, 50, (2, 9))
    last = torch.tensor([8, 8])
    logits, _ = PatchedForward(lm)(ids, last)
    with torch.no_grad():
        ref = model(ids).logits[:, -1]
        cfg.sliding_window = None
        full = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").double().eval()
        full.load_state_dict(model.state_dict())
        unwindowed = full(ids).logits[:, -1]
    assert torch.allclose(logits, ref, rtol=0, atol=1e-10 * ref.abs().max())
    assert not torch.allclose(ref, unwindowed, atol=1e-6)  # the window matters here
