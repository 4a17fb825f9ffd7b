"""EAP-IG engine == brute force of the definition (docs/eap_ig.md), fused == unfused,
and the GQA ungrouping identity, on tiny random Qwen2 (GQA + biases), Qwen3 (q/k norm,
head_dim != hidden/heads) and Llama models in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparkql.runtime.eap.engine import EapIg, parse_memory, rms_vjp, undo_rope, _walk
from sparkql.runtime.eap.graph import Graph
from sparkql.runtime.models.loading import load_model

from .bruteforce import Reference, perturb_norms, random_examples, relerr

# Measured floor of max|engine - brute force| / max|score| with stock transformers: 7e-8 to
# 8e-7 over these models and metrics (transformers computes RoPE tables, RMSNorm and the
# attention softmax in float32 even for a float64 model; the brute force does everything in
# float64). With those made float64 (test_..._to_rounding_...) the error is ~1e-15. Bar: 1e-6.
TOL = 1e-6


@pytest.fixture(scope="module", params=["tiny_qwen2", "tiny_qwen3", "tiny_llama"])
def lm(request):
    lm = load_model(request.getfixturevalue(request.param), "fp64", "cpu")
    perturb_norms(lm.model, seed=3)
    return lm


def test_graph_size_matches_qwen25_1_5b():
    g = Graph(28, 12)
    assert (g.n_sources, g.n_dests, g.n_edges) == (365, 1037, 183_555)
    src, dst = g.edge_names()
    assert len(src) == 183_555
    names = set(zip(src.tolist(), dst.tolist()))
    assert ("a3.h2", "a4.h0<k>") in names and ("a4.h0", "m4") in names and ("m27", "logits") in names
    assert ("a4.h0", "a4.h1<q>") not in names and ("m4", "m4") not in names and ("m4", "a4.h0<v>") not in names


@pytest.mark.parametrize("metric", ["kl", "logit_diff", "prob"])
def test_scores_equal_brute_force(lm, metric):
    vocab = int(lm.config["vocab_size"])
    examples = random_examples(vocab, [6, 4], seed=1)
    steps = 3
    res = EapIg(lm).run(examples, steps=steps, metric=metric, chunk_rows=4)  # chunks straddle examples
    ref = Reference(lm.model).scores(examples, steps, metric, res.targets, res.foils)
    assert np.abs(ref).max() > 1e-4, "degenerate reference"
    err = relerr(res.scores, ref)
    print(f"{lm.adapter.family} {metric}: max rel err {err:.2e}")
    assert err < TOL
    # every edge got a score and nothing outside the graph did
    g = res.graph
    assert np.count_nonzero(res.scores[~g.mask]) == 0
    assert np.count_nonzero(res.edge_scores()) == g.n_edges


def test_brute_force_detects_a_wrong_engine(lm):
    """The comparison can fail: scores for the grid k = 0..m-1 (the reference library's) differ."""
    vocab = int(lm.config["vocab_size"])
    examples = random_examples(vocab, [5], seed=2)
    ref = Reference(lm.model)
    a = ref.scores(examples, 2)
    shifted = [type(examples[0])(examples[0].clean, examples[0].corrupt)]
    res = EapIg(lm).run(shifted, steps=4)  # k=1..4 of 4 shares only k=2,4 with k=1..2 of 2
    assert relerr(res.scores, a) > 100 * TOL


def test_fused_equals_unfused(lm):
    vocab = int(lm.config["vocab_size"])
    examples = random_examples(vocab, [7, 5, 7], seed=4)
    eng = EapIg(lm)
    fused = eng.run(examples, steps=5, memory="1GiB")
    unfused = eng.run(examples, steps=5, fused=False)
    assert fused.chunk_rows >= 15 and fused.n_chunks == 1
    assert unfused.n_chunks == 15
    assert relerr(fused.scores, unfused.scores) < 1e-12
    # a budget for 4 rows: chunks split examples, and the scores do not change
    from sparkql.plan.sizing import chunk_peak

    budget = chunk_peak(eng.shape, 7, 4, 5) + 1  # the memory model's peak for 4 rows of the longest example
    small = eng.run(examples, steps=5, memory=int(budget))
    assert small.chunk_rows == 4 and small.n_chunks == 4
    assert relerr(small.scores, unfused.scores) < 1e-12


def test_gqa_group_sum_equals_shared_projection_gradient(tiny_qwen2, tiny_qwen3):
    """Per-query-head key/value gradients (repeat_kv output, RoPE undone, k_norm VJP, mapped
    through the kv head's rows), summed over a group, equal the gradient at the input of the
    shared k_proj / v_proj (read by a backward hook on the projection itself)."""
    for path in (tiny_qwen2, tiny_qwen3):
        lm = load_model(path, "fp64", "cpu")
        perturb_norms(lm.model, seed=5)
        eng = EapIg(lm)
        p, nm = eng.p, eng.nm
        emb = torch.randn(2, 6, p.D, dtype=torch.float64, requires_grad=True)
        shared = {}
        hooks = [
            p.mod(f"{w}_proj", 1).register_full_backward_hook(lambda m, gi, go, w=w: shared.__setitem__(w, gi[0]))
            for w in "kv"
        ]
        box = []
        try:
            with nm.trace(inputs_embeds=emb):
                cos, sin = _walk(nm, "model.rotary_emb").output
                lk = _walk(nm, "model.layers.1.self_attn.k_proj").output
                inner = getattr(_walk(nm, "model.layers.1.self_attn").source, eng.attn_call).source
                ks = inner.key_states_0.output
                vs = inner.value_states_0.output
                loss = nm.output.logits[:, -1].logsumexp(-1).sum()
                with loss.backward():
                    gv = vs.grad
                    gk = ks.grad
                    box.append((gk, gv, lk, cos, sin))
        finally:
            for h in hooks:
                h.remove()
        gk, gv, lk, cos, sin = box[0]
        gk = undo_rope(gk, cos[:, None], sin[:, None]).transpose(1, 2)  # (R, S, H, dh)
        if p.has("k_norm"):
            w, eps = p.norm("k_norm", 1)
            lin = lk.view(2, 6, p.K, p.dh)[:, :, p.kv_index]
            gk = rms_vjp(gk, lin, w, eps)
        gv = gv.transpose(1, 2)
        for which, gh in (("k", gk), ("v", gv)):
            W, _ = p.proj(which, 1)  # (H, dh, D), kv rows repeated per query head
            per_head = torch.einsum("rshi,hid->rshd", gh, W)
            grouped = per_head.view(2, 6, p.K, p.rep, p.D).sum(3).sum(2)
            err = float(((grouped - shared[which]).abs().max() / shared[which].abs().max()).detach())
            # exact up to float64 rounding; Qwen3's k_norm runs in float32 inside transformers,
            # which leaves ~1e-7 between its real Jacobian and the float64 VJP
            assert err < (1e-6 if p.has("k_norm") else 1e-12), (which, err)
            # and the heads of a group do differ (the ungrouping is not trivial)
            assert not torch.allclose(per_head[:, :, 0], per_head[:, :, 1])


def test_parse_memory():
    assert parse_memory("8GiB") == 8 * 2**30
    assert parse_memory("512MB") == 512_000_000
    from sparkql.errors import SparkError

    with pytest.raises(SparkError):
        parse_memory("lots")


@pytest.fixture
def hf_in_float64(monkeypatch):
    """Make transformers compute RMSNorm, RoPE tables and attention softmax in float64 (it
    uses float32 for them even in a float64 model): with that, the engine must match the
    brute force to rounding, which shows the ~1e-7 floor above is transformers', not ours."""
    import importlib

    def norm_forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rope_forward(self, x, position_ids):
        cfg = self.config
        dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        inv = 1.0 / (cfg.rope_parameters["rope_theta"] ** (torch.arange(0, dh, 2, dtype=torch.float64) / dh))
        freqs = position_ids[..., None].to(torch.float64) * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    for fam, prefix in (("qwen2", "Qwen2"), ("qwen3", "Qwen3"), ("llama", "Llama")):
        mod = importlib.import_module(f"transformers.models.{fam}.modeling_{fam}")
        monkeypatch.setattr(getattr(mod, f"{prefix}RMSNorm"), "forward", norm_forward)
        monkeypatch.setattr(getattr(mod, f"{prefix}RotaryEmbedding"), "forward", rope_forward)
    softmax = torch.nn.functional.softmax

    def softmax64(x, dim=None, _stacklevel=3, dtype=None):
        return softmax(x, dim=dim, dtype=torch.float64 if x.dtype == torch.float64 else dtype)

    monkeypatch.setattr(torch.nn.functional, "softmax", softmax64)


@pytest.mark.parametrize("path", ["tiny_qwen2", "tiny_qwen3", "tiny_llama"])
def test_scores_equal_brute_force_to_rounding_when_hf_runs_in_float64(path, request, hf_in_float64):
    lm = load_model(request.getfixturevalue(path), "fp64", "cpu")
    perturb_norms(lm.model, seed=3)
    examples = random_examples(int(lm.config["vocab_size"]), [6, 4], seed=1)
    for metric in ("kl", "prob"):
        res = EapIg(lm).run(examples, steps=3, metric=metric, chunk_rows=4)
        ref = Reference(lm.model).scores(examples, 3, metric, res.targets, res.foils)
        err = relerr(res.scores, ref)
        print(f"{lm.adapter.family} {metric} (HF in float64): max rel err {err:.2e}")
        assert err < 1e-10


def test_progress_counts_example_steps(tiny_qwen2):
    lm = load_model(tiny_qwen2, "fp32", "cpu")

    class Task:
        def __init__(self, total):
            self.total, self.done, self.closed = total, 0, False

        def advance(self, n=1):
            self.done += n

        def close(self):
            self.closed = True

    class Progress:
        tasks = []

        def task(self, description, total=None):
            self.tasks.append((description, Task(total)))
            return self.tasks[-1][1]

    prog = Progress()
    examples = random_examples(int(lm.config["vocab_size"]), [5, 6, 4], seed=6)
    EapIg(lm).run(examples, steps=4, chunk_rows=5, progress=prog, description="EAP-IG d on m")
    (desc, task), = prog.tasks
    assert desc == "EAP-IG d on m" and task.total == 12 and task.done == 12 and task.closed
