"""The transformers backend: greedy equals HF generate, per-sample seeds, explicit sampling fields."""

from __future__ import annotations

import pytest
import torch

from sparkql.errors import SparkError
from sparkql.plan.steps import SamplingParams
from sparkql.runtime.generation.transformers_backend import (
    GenRequest,
    filter_logits,
    generate_transformers,
    next_tokens,
    sample_seed,
)
from sparkql.runtime.models.loading import load_model
from sparkql.runtime.generation.prompting import render_prompt

PROBLEMS = {"p1": "What is 2 + 3?", "p2": "A much longer problem: compute 17 * 23 - 4 and say why, briefly.", "p3": "9?"}


@pytest.fixture(scope="module")
def loaded(tiny_qwen2):
    return load_model(tiny_qwen2, dtype="fp64", device="cpu")


def requests(loaded, n=1, seed=0, think=True):
    out = []
    for pid, text in PROBLEMS.items():
        prompt = render_prompt(loaded.tokenizer, text, think=think)
        out += [GenRequest(pid, i, prompt, sample_seed(seed, pid, i)) for i in range(n)]
    return out


def by_key(results):
    return {(r.problem_id, r.sample_idx): r for r in results}


def test_greedy_matches_hf_generate(loaded):
    sp = SamplingParams(n=1, temperature=0, max_tokens=12)
    reqs = requests(loaded)
    ours = by_key(generate_transformers(loaded, reqs, sp, batch_size=3)[0])
    for r in reqs:
        ids = loaded.tokenizer(r.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        ref = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                                    eos_token_id=loaded.tokenizer.eos_token_id, pad_token_id=loaded.tokenizer.pad_token_id)
        ref_text = loaded.tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=False)
        got = ours[(r.problem_id, r.sample_idx)]
        assert got.n_tokens == ref.shape[1] - ids.shape[1]
        expected = ref_text.removesuffix(loaded.tokenizer.eos_token) if got.finish_reason == "stop" else ref_text
        assert got.completion == expected


def test_batched_equals_one_at_a_time_with_sampling(loaded):
    """Each sample's stream comes from its own seed: batch size and composition do not matter
    (fp64 here, so the padding's rounding differences cannot flip a token)."""
    sp = SamplingParams(n=3, temperature=1.0, top_p=0.95, top_k=0, max_tokens=10, seed=5)
    reqs = requests(loaded, n=3, seed=5)
    batched = by_key(generate_transformers(loaded, reqs, sp, batch_size=9)[0])
    single = by_key(generate_transformers(loaded, reqs, sp, batch_size=1)[0])
    assert batched.keys() == single.keys()
    for k in batched:
        assert batched[k].completion == single[k].completion, k
    # and the seeds do make the samples of one problem differ
    assert len({batched[("p2", i)].completion for i in range(3)}) > 1


def test_resume_subset_regenerates_the_same_samples(loaded):
    sp = SamplingParams(n=2, temperature=0.8, max_tokens=8, seed=1)
    reqs = requests(loaded, n=2, seed=1)
    full = by_key(generate_transformers(loaded, reqs, sp, batch_size=4)[0])
    missing = [r for r in reqs if r.sample_idx == 1]
    again = by_key(generate_transformers(loaded, missing, sp, batch_size=4)[0])
    for k, v in again.items():
        assert v.completion == full[k].completion


def test_generation_config_does_not_leak(loaded):
    """A generation_config with top_k=1 (greedy in disguise) must not change sampling."""
    sp = SamplingParams(n=4, temperature=1.0, top_p=1.0, top_k=0, max_tokens=6, seed=0)
    reqs = requests(loaded, n=4)
    before = by_key(generate_transformers(loaded, reqs, sp, batch_size=12)[0])
    gc = loaded.model.generation_config
    saved = (gc.top_k, gc.temperature, gc.do_sample)
    gc.top_k, gc.temperature, gc.do_sample = 1, 0.01, True
    try:
        after = by_key(generate_transformers(loaded, reqs, sp, batch_size=12)[0])
    finally:
        gc.top_k, gc.temperature, gc.do_sample = saved
    assert {k: v.completion for k, v in before.items()} == {k: v.completion for k, v in after.items()}


def test_finish_reasons_and_token_counts(loaded):
    sp = SamplingParams(n=1, temperature=0, max_tokens=5)
    for r in generate_transformers(loaded, requests(loaded), sp)[0]:
        assert r.finish_reason in ("stop", "length")
        assert 1 <= r.n_tokens <= 5
        if r.finish_reason == "length":
            assert r.n_tokens == 5


def test_filter_logits_fields():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]], dtype=torch.float64))
    p = lambda **kw: filter_logits(logits, SamplingParams(**{"temperature": 1.0, "top_p": 1.0, **kw}))  # noqa: E731
    torch.testing.assert_close(p(), torch.tensor([[0.5, 0.25, 0.15, 0.1]], dtype=torch.float64))
    torch.testing.assert_close(p(top_k=2), torch.tensor([[2 / 3, 1 / 3, 0, 0]], dtype=torch.float64))
    # top_p = 0.7: 0.5 < 0.7 so the second token is needed; 0.75 >= 0.7 so the third is not
    torch.testing.assert_close(p(top_p=0.7), torch.tensor([[2 / 3, 1 / 3, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(p(min_p=0.3), torch.tensor([[0.5, 0.25, 0.15, 0] ], dtype=torch.float64) / 0.9)
    assert p(top_k=0)[0, 3] > 0  # top_k = 0 is off, not "keep none"
    sharp = filter_logits(logits, SamplingParams(temperature=0.5, top_p=1.0))
    assert sharp[0, 0] > 0.5


def test_sampling_follows_the_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    logits = torch.log(probs)[None].repeat(3000, 1)
    gens = [torch.Generator().manual_seed(sample_seed(0, "x", i)) for i in range(3000)]
    toks = next_tokens(logits, SamplingParams(temperature=1.0, top_p=1.0), gens)
    freq = torch.bincount(toks, minlength=3).double() / 3000
    torch.testing.assert_close(freq, probs, atol=0.03, rtol=0)


def test_context_budget_is_per_row(loaded):
    """A prompt near the context limit (512 positions) stops at the limit with `length`, without
    cutting short the other rows of its batch."""
    tok = loaded.tokenizer
    overhead = len(tok(render_prompt(tok, ""), add_special_tokens=False)["input_ids"])
    long_prompt = render_prompt(tok, "x" * (500 - overhead))  # one token per character
    n_long = len(tok(long_prompt, add_special_tokens=False)["input_ids"])
    assert n_long == 500
    sp = SamplingParams(n=1, temperature=0, max_tokens=40)
    reqs = [GenRequest("long", 0, long_prompt, 1), GenRequest("short", 0, render_prompt(tok, "1+1?"), 2)]
    got = by_key(generate_transformers(loaded, reqs, sp, batch_size=2)[0])
    assert got[("long", 0)].n_tokens <= 512 - n_long
    if got[("long", 0)].finish_reason == "length":
        assert got[("long", 0)].n_tokens == 512 - n_long
    alone = by_key(generate_transformers(loaded, reqs[1:], sp, batch_size=1)[0])
    assert got[("short", 0)].completion == alone[("short", 0)].completion


def test_out_of_memory_halves_the_batch(loaded, monkeypatch):
    """A batch that does not fit is started again at half the size; the samples are the same and
    each is stored once."""
    import sparkql.runtime.generation.transformers_backend as G

    sp = SamplingParams(n=2, temperature=0.9, max_tokens=5, seed=4)
    reqs = requests(loaded, n=2, seed=4)
    expected = by_key(generate_transformers(loaded, reqs, sp, batch_size=2)[0])
    real_step = G._Batch.step

    def small_memory(self):
        if len(self.rows) > 2:
            raise torch.OutOfMemoryError("simulated")
        return real_step(self)

    monkeypatch.setattr(G._Batch, "step", small_memory)
    stored = []
    got = generate_transformers(loaded, reqs, sp, batch_size=6, on_batch=stored.extend)[0]
    assert {k: v.completion for k, v in by_key(got).items()} == {k: v.completion for k, v in expected.items()}
    assert sorted((r.problem_id, r.sample_idx) for r in stored) == sorted(expected)

    def no_memory(self):
        raise torch.OutOfMemoryError("x")

    monkeypatch.setattr(G._Batch, "step", no_memory)
    with pytest.raises(SparkError, match="out of memory"):
        generate_transformers(loaded, reqs[:1], sp, batch_size=1)


def test_refilled_batches_give_the_samples_of_one_at_a_time(loaded):
    """Rows finish at different steps (frequent stop tokens), new requests join the running
    batch with their caches merged (left padding); every sample still equals its generation
    alone (fp64)."""
    tok = loaded.tokenizer
    stops = [tok.convert_tokens_to_ids(c) for c in ("e", "a", "Ġ")] + [tok.eos_token_id]
    sp = SamplingParams(n=3, temperature=1.0, top_p=1.0, max_tokens=12, seed=9)
    reqs = requests(loaded, n=3, seed=9)
    refilled = by_key(generate_transformers(loaded, reqs, sp, batch_size=4, stop_ids=stops)[0])
    single = by_key(generate_transformers(loaded, reqs, sp, batch_size=1, stop_ids=stops)[0])
    assert {k: (v.completion, v.finish_reason) for k, v in refilled.items()} == \
        {k: (v.completion, v.finish_reason) for k, v in single.items()}
    lengths = {v.n_tokens for v in refilled.values()}
    assert len(lengths) > 2 and any(v.finish_reason == "stop" for v in refilled.values())


def test_out_of_memory_in_a_decode_step_keeps_the_samples_that_finished(loaded):
    """Rows that finished in the step whose forward pass ran out of memory are kept; the others
    start again at half the batch; nothing is lost or duplicated."""
    import types

    tok = loaded.tokenizer
    stops = [tok.convert_tokens_to_ids(c) for c in ("e", "a", "Ġ")] + [tok.eos_token_id]
    sp = SamplingParams(n=3, temperature=1.0, top_p=1.0, max_tokens=12, seed=9)
    reqs = requests(loaded, n=3, seed=9)
    expected = by_key(generate_transformers(loaded, reqs, sp, batch_size=1, stop_ids=stops)[0])

    class Flaky(torch.nn.Module):
        """The model, except that decode steps over more than 3 rows run out of memory twice."""

        def __init__(self, model):
            super().__init__()
            self.inner, self.fails = model, 2

        def forward(self, **kw):
            ids = kw["input_ids"]
            if ids.shape[1] == 1 and ids.shape[0] > 3 and self.fails:
                self.fails -= 1
                raise torch.OutOfMemoryError("simulated")
            return self.inner(**kw)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

    flaky = Flaky(loaded.model)
    fake = types.SimpleNamespace(model=flaky, tokenizer=tok, device=loaded.device)
    stored = []
    got = generate_transformers(fake, reqs, sp, batch_size=8, stop_ids=stops, on_batch=stored.extend)[0]
    assert flaky.fails == 0
    assert sorted((r.problem_id, r.sample_idx) for r in stored) == sorted(expected)
    assert {k: v.completion for k, v in by_key(got).items()} == {k: v.completion for k, v in expected.items()}
