"""Sampling completions: the transformers backend (the default and the reference).

Why a decoding loop of our own instead of ``model.generate``:

* **Every sampling field is explicit.** ``generate`` merges the model's
  ``generation_config.json`` (Qwen ships top_k=20, top_p=0.8, repetition
  penalty...) and transformers' own defaults (top_k=50) into whatever is not
  passed. Here nothing is read from ``generation_config`` except the stop
  (EOS) token ids; temperature, top_p, top_k (0 = off), min_p and
  max_new_tokens come from :class:`sparkql.plan.steps.SamplingParams` alone.
  ``temperature == 0`` is greedy (argmax).
* **Per-sample seeds.** ``generate`` draws every row of a batch from one
  global RNG, so a sample's tokens depend on which other samples share its
  batch and in what order. Here each sample owns a ``torch.Generator`` seeded
  from ``(seed, problem_id, sample_idx)`` (:func:`sample_seed`) and draws
  exactly one number per generated token from it, so its random stream is the
  same whatever batch it lands in: a resumed eval generates only the missing
  samples and they are the samples a full run would have produced.

  Honest caveat: batch composition still changes the *logits* in the last
  bits (left padding changes the shapes, and BLAS kernels sum in shape-
  dependent orders; bf16 on GPU more so). When the chosen token sits on a
  boundary (a near-tie under greedy, a cumulative-probability edge under
  sampling) such a difference can flip it, and the completion diverges from
  there. Expect bitwise-reproducible samples for the same batch composition
  and device, and statistically identical (but not always token-identical)
  samples otherwise.

Batching: requests are sorted by prompt length and run in batches with left
padding and a KV cache (``DynamicCache``); the samples of one problem share one
prefill of its prompt; a finished row is dropped from the batch (its cache rows
too), so short answers do not pay for long ones.
Attention runs as SDPA during generation (the models are loaded ``eager`` for
the circuit code; eager is restored afterwards).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from sparkql.plan.steps import SamplingParams


@dataclass(frozen=True)
class GenRequest:
    problem_id: str
    sample_idx: int
    prompt: str
    seed: int
    """The per-sample seed (:func:`sample_seed`)."""


@dataclass(frozen=True)
class GenResult:
    problem_id: str
    sample_idx: int
    prompt: str
    completion: str
    finish_reason: str
    """stop (an EOS token) | length (max_tokens, or the model's context, reached)"""
    n_tokens: int
    """Generated tokens, the stop token included."""


def sample_seed(seed: int, problem_id: str, sample_idx: int) -> int:
    """The seed of one sample: ``base(seed, problem) + sample_idx``, with a 62-bit base from
    sha256. The "+ index" form is vLLM's own rule for the n samples of one request (child i
    gets the request's seed + i), so a request for a run of consecutive missing samples of a
    problem seeds each of them exactly as a request per sample would."""
    digest = hashlib.sha256(f"{seed}\x00{problem_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") & ((1 << 62) - 1)) + int(sample_idx)


def stop_token_ids(model, tokenizer) -> list[int]:
    """EOS ids from the generation config, the model config and the tokenizer (Qwen instruct
    models stop on both <|im_end|> and <|endoftext|>). Only stop tokens are read from
    generation_config, never sampling settings."""
    ids: list[int] = []
    for src in (getattr(model, "generation_config", None), getattr(model, "config", None), tokenizer):
        eos = getattr(src, "eos_token_id", None)
        if eos is None:
            continue
        for e in eos if isinstance(eos, (list, tuple)) else [eos]:
            if e is not None and int(e) not in ids:
                ids.append(int(e))
    return ids


def filter_logits(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Probabilities after temperature, top-k, top-p and min-p (in transformers' order), rows
    renormalized. ``logits``: (batch, vocab) float32."""
    x = logits / p.temperature
    if p.top_k and p.top_k > 0 and p.top_k < x.shape[-1]:
        kth = torch.topk(x, p.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if p.top_p < 1.0:
        sorted_p, idx = torch.sort(probs, dim=-1, descending=True)
        cum = torch.cumsum(sorted_p, dim=-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (cum - sorted_p) >= p.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
    if p.min_p > 0.0:
        floor = p.min_p * probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < floor, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True)


def next_tokens(logits: torch.Tensor, p: SamplingParams, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token per row: argmax when greedy, else a draw from the row's own generator."""
    if p.temperature == 0:
        return torch.argmax(logits, dim=-1)
    probs = filter_logits(logits.float(), p)
    return torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)])


class _Attn:
    """Switch a model to SDPA attention for generation and back afterwards."""

    def __init__(self, model, impl: str = "sdpa"):
        self.model, self.impl, self.prev = model, impl, None

    def __enter__(self):
        prev = getattr(self.model.config, "_attn_implementation", None)
        if prev and prev != self.impl and hasattr(self.model, "set_attn_implementation"):
            try:
                self.model.set_attn_implementation(self.impl)
                self.prev = prev
            except (ValueError, ImportError):  # pragma: no cover - a model without SDPA support
                self.prev = None
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            self.model.set_attn_implementation(self.prev)


@torch.no_grad()
def generate_batch(model, tokenizer, requests: Sequence[GenRequest], sampling: SamplingParams,
                   device: torch.device | str, stop_ids: Iterable[int] | None = None,
                   on_tokens: Callable[[int], None] | None = None) -> list[GenResult]:
    """Generate one batch (left padding, KV cache). Results in the order of ``requests``."""
    from transformers import DynamicCache

    device = torch.device(device)
    stops = torch.tensor(sorted(set(stop_ids if stop_ids is not None else stop_token_ids(model, tokenizer))),
                         device=device, dtype=torch.long)
    # The n samples of a problem share one prompt: prefill each distinct prompt once and give
    # every sample its own copy of the prompt's KV cache (a gather with repeated indices).
    uniq: dict[str, int] = {}
    row_of = [uniq.setdefault(r.prompt, len(uniq)) for r in requests]
    enc = tokenizer(list(uniq), return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=False)  # the chat template already wrote any BOS
    ids = enc["input_ids"].to(device)
    attn = enc["attention_mask"][torch.tensor(row_of)].to(device)
    b = len(requests)
    # Each row's own budget: max_tokens, and what is left of the model's context after its
    # own prompt (left padding does not count: positions are per row).
    max_ctx = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    lens = attn.sum(dim=1).tolist()
    budgets = [sampling.max_tokens if not max_ctx else max(0, min(sampling.max_tokens, max_ctx - int(n))) for n in lens]

    gens = [torch.Generator(device=device).manual_seed(r.seed) for r in requests]
    out_tokens: list[list[int]] = [[] for _ in requests]
    finish = ["length"] * b
    active = [i for i in range(b) if budgets[i] > 0]  # request index of each live row
    if not active:
        return [GenResult(r.problem_id, r.sample_idx, r.prompt, "", "length", 0) for r in requests]

    cache = DynamicCache(config=model.config)
    u_attn = enc["attention_mask"].to(device)
    u_pos = (u_attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=u_attn, position_ids=u_pos, past_key_values=cache, use_cache=True,
                logits_to_keep=1)
    expand = torch.tensor([row_of[i] for i in active], device=device)
    cache.batch_select_indices(expand)
    logits = out.logits[expand]
    attn = attn[torch.tensor(active, device=device)]
    next_pos = u_pos[expand][:, -1:] + 1
    for step in range(max(budgets)):
        toks = next_tokens(logits[:, -1, :], sampling, [gens[i] for i in active])
        is_stop = torch.isin(toks, stops)
        toks_l, stop_l = toks.tolist(), is_stop.tolist()
        keep = []
        for row, (req_i, t, s) in enumerate(zip(active, toks_l, stop_l)):
            out_tokens[req_i].append(t)
            if s:
                finish[req_i] = "stop"
            elif len(out_tokens[req_i]) < budgets[req_i]:
                keep.append(row)
        if on_tokens is not None:
            on_tokens(len(active))
        if not keep:
            break
        if len(keep) < len(active):
            sel = torch.tensor(keep, device=device)
            cache.batch_select_indices(sel)
            attn, next_pos, toks = attn[sel], next_pos[sel], toks[sel]
            active = [active[r] for r in keep]
        attn = torch.cat([attn, attn.new_ones(len(active), 1)], dim=1)
        out = model(input_ids=toks[:, None], attention_mask=attn, position_ids=next_pos, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
        logits = out.logits
        next_pos = next_pos + 1

    results = []
    for r, toks_i, fin in zip(requests, out_tokens, finish):
        body = toks_i[:-1] if fin == "stop" else toks_i
        text = tokenizer.decode(body, skip_special_tokens=False)
        results.append(GenResult(r.problem_id, r.sample_idx, r.prompt, text, fin, len(toks_i)))
    return results


class Throughput:
    """Generated tokens and tokens/s, fed to a progress handle when there is one."""

    def __init__(self, progress_task: Any = None):
        self.task = progress_task
        self.tokens = 0
        self.t0 = time.perf_counter()

    def add(self, n: int) -> None:
        self.tokens += n
        if self.task is not None and hasattr(self.task, "update"):
            # `eta` is the free text column of the run's progress display (runtime/progress.py)
            self.task.update(tokens=self.tokens, tok_s=round(self.rate, 1),
                             eta=f"{self.tokens} tok  {self.rate:.1f} tok/s")

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.tokens / dt if dt > 0 else 0.0


def default_batch_size(device: torch.device) -> int:
    return 64 if device.type == "cuda" else 16


def generate_transformers(loaded, requests: Sequence[GenRequest], sampling: SamplingParams,
                          batch_size: int | None = None, on_batch: Callable[[list[GenResult]], None] | None = None,
                          progress_task: Any = None) -> tuple[list[GenResult], Throughput]:
    """Generate every request with the transformers backend; ``on_batch`` receives each finished
    batch (the generate step stores it at once, so a killed run keeps it)."""
    model, tok = loaded.model, loaded.tokenizer
    device = loaded.device
    bs = batch_size or default_batch_size(device)
    stops = stop_token_ids(model, tok)
    # Similar lengths share a batch: less padding, and rows finish closer together.
    lengths = [len(x) for x in tok([r.prompt for r in requests], add_special_tokens=False)["input_ids"]] if requests else []
    order = sorted(range(len(requests)), key=lambda i: (lengths[i], requests[i].problem_id, requests[i].sample_idx))
    meter = Throughput(progress_task)
    results: list[GenResult] = []
    def run(batch: list[GenRequest]) -> None:
        try:
            done = generate_batch(model, tok, batch, sampling, device, stops, on_tokens=meter.add)
        except torch.OutOfMemoryError:
            # Halve the batch and go on: each sample's seed makes the retry produce the samples
            # the big batch would have (up to the batch-composition caveat above).
            if len(batch) == 1:
                from sparkql.errors import SparkError

                raise SparkError(f"out of memory generating one sample of {sampling.max_tokens} tokens on {device}",
                                 hint="lower max_tokens, use `set dtype = bf16`, or a bigger device") from None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(batch) // 2
            run(batch[:half])
            run(batch[half:])
            return
        results.extend(done)
        if progress_task is not None:
            progress_task.advance(len(done))
        if on_batch is not None:
            on_batch(done)

    with _Attn(model):
        for start in range(0, len(order), bs):
            run([requests[i] for i in order[start:start + bs]])
    return results, meter
