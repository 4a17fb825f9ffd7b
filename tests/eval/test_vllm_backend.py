"""The vLLM backend's logic without vLLM (no GPU here): backend choice, quantized refusal, the
worker-side o_proj edit on a model with vLLM's layout, and request grouping/seeding through a
stand-in ``vllm`` module. vLLM itself is NOT exercised by these tests."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from sparkql.errors import SparkError
from sparkql.plan.steps import SamplingParams
from sparkql.runtime.generation import vllm_backend as V
from sparkql.runtime.generation.transformers_backend import GenRequest, sample_seed
from sparkql.runtime.models.interventions import HeadEditor, Variant
from sparkql.runtime.models.loading import load_model


def test_quantized_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq"}}))
    with pytest.raises(SparkError, match="quantized"):
        V.refuse_quantized(tmp_path)


class FakeLLM:
    """Stands in for vllm.LLM: apply_model runs on one in-process 'worker' model."""

    def __init__(self, model=None, **kwargs):
        self.kwargs = kwargs
        self.worker_model = load_model(model, dtype="fp32", device="cpu").model if model else None
        self.resets = 0
        self.calls = []
        self.finish = "length"

    def apply_model(self, func):
        return [func(self.worker_model)]

    def reset_prefix_cache(self):
        self.resets += 1
        return True

    def generate(self, prompts, params, use_tqdm=False):
        self.calls.append((prompts, params))
        outs = []
        for p in params:
            comps = [types.SimpleNamespace(index=i, text=f"seed={p.kw['seed'] + i}", token_ids=[1, 2, 3],
                                           finish_reason=self.finish) for i in range(p.kw["n"])]
            outs.append(types.SimpleNamespace(outputs=comps[::-1]))  # vLLM does not promise order
        return outs


class FakeSamplingParams:
    def __init__(self, **kw):
        self.kw = kw


@pytest.fixture()
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM = FakeLLM
    mod.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(V, "_ENGINES", {})
    return mod


def test_worker_edit_matches_head_editor_and_restores(tiny_qwen3):
    """HF's Qwen3 has vLLM's module layout (model.layers[l].self_attn.o_proj)."""
    lm = load_model(tiny_qwen3, dtype="fp32", device="cpu")
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    variant = Variant("s", "scale", ((0, 1), (1, 3)), 1.3)
    llm = FakeLLM()
    llm.worker_model = lm.model
    V.apply_variant(llm, variant, lm.n_heads, lm.head_dim)
    edited = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    V.apply_variant(llm, None, lm.n_heads, lm.head_dim)
    assert llm.resets == 2  # the prefix cache is dropped after the edit and after the restore
    for n, p in lm.model.named_parameters():
        assert torch.equal(p, before[n]), n
    with HeadEditor(lm).applied(variant):
        for n, p in lm.model.named_parameters():
            assert torch.equal(p, edited[n]), n


def test_worker_edit_maps_heads_to_tensor_parallel_ranks():
    """With 2 ranks of 2 heads each, global head 3 is local head 1 of rank 1; head 0 is not here."""
    dh = 4
    full = torch.randn(8, 4 * dh)
    o = torch.nn.Linear(2 * dh, 8, bias=False)
    o.weight.data = full[:, 2 * dh:].clone()
    o.tp_rank, o.input_size_per_partition = 1, 2 * dh
    attn = types.SimpleNamespace(o_proj=o)
    model = types.SimpleNamespace(model=types.SimpleNamespace(layers=[types.SimpleNamespace(self_attn=attn)]))
    done = V._edit_o_proj(model, {0: [0, 3]}, 0.0, n_heads=4, head_dim=dh)
    assert done == 1
    assert torch.equal(o.weight[:, dh:], torch.zeros(8, dh))
    assert torch.equal(o.weight[:, :dh], full[:, 2 * dh:3 * dh])
    V._edit_o_proj(model, {}, 1.0, n_heads=4, head_dim=dh, restore_only=True)
    assert torch.equal(o.weight, full[:, 2 * dh:])


def test_requests_grouped_with_consecutive_seeds(fake_vllm, tiny_qwen2, monkeypatch):
    lm = load_model(tiny_qwen2, dtype="fp32", device="cpu")
    prompt = "<|im_start|>user\nhi<|im_end|>\n"
    # problem a misses samples 0-2, problem b misses 1 and 3 (a resumed eval)
    reqs = [GenRequest("a", i, prompt, sample_seed(7, "a", i)) for i in (0, 1, 2)] + \
           [GenRequest("b", i, prompt, sample_seed(7, "b", i)) for i in (1, 3)]
    sp = SamplingParams(n=4, temperature=0.6, top_p=0.95, top_k=0, min_p=0.0, max_tokens=5, seed=7)
    batches = []
    results, meter = V.generate_vllm(str(tiny_qwen2), reqs, sp, Variant("a", "ablate", ((1, 1),)), dtype="fp32",
                                     n_heads=lm.n_heads, head_dim=lm.head_dim, on_batch=batches.append, canary=False)
    llm = V._ENGINES[(str(tiny_qwen2), "fp32")]
    assert llm.kwargs["generation_config"] == "vllm"
    (prompts, params), = llm.calls
    assert [p.kw["n"] for p in params] == [3, 1, 1]
    assert all(p.kw["top_k"] == -1 and p.kw["temperature"] == 0.6 and p.kw["max_tokens"] == 5 for p in params)
    # every sample's text names the seed vLLM would give it: its own sample_seed
    assert {(r.problem_id, r.sample_idx): r.completion for r in results} == {
        (q.problem_id, q.sample_idx): f"seed={q.seed}" for q in reqs}
    assert all(r.finish_reason == "length" for r in results)
    assert meter.tokens == 15 and len(batches) == 1
    assert llm.resets == 2  # edit, then restore
    pristine = dict(lm.model.named_parameters())
    for n, p in llm.worker_model.named_parameters():
        assert torch.equal(p, pristine[n]), n  # the worker's weights are restored after the run


def test_aborted_requests_are_not_stored(fake_vllm, tiny_qwen2):
    lm = load_model(tiny_qwen2, dtype="fp32", device="cpu")
    llm = V.engine_for(str(tiny_qwen2), "fp32")
    llm.finish = "abort"
    stored = []
    sp = SamplingParams(n=1, temperature=0.6, max_tokens=5)
    with pytest.raises(RuntimeError, match="abort"):
        V.generate_vllm(str(tiny_qwen2), [GenRequest("a", 0, "hi", 1)], sp, None, dtype="fp32", n_heads=lm.n_heads,
                        head_dim=lm.head_dim, on_batch=stored.append, canary=False)
    assert stored == []
    with pytest.raises(SparkError, match="fp64"):
        V.engine_for(str(tiny_qwen2), "fp64")
