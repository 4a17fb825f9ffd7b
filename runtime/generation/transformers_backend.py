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

Batching: requests are sorted by prompt length and decoded with left padding and
a KV cache (``DynamicCache``); the samples of one problem share one prefill of
its prompt; a finished row is dropped from the batch (its cache rows too), and
when half the rows are done, waiting requests are prefilled and merged into the
running batch (continuous batching; caches left-padded to a common length), so
short answers neither wait for long ones nor leave the batch half empty. A batch
that runs out of memory is restarted at half the size.
Attention runs as SDPA during generation (the models are loaded ``eager`` for
the circuit code; eager is restored afterwards).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from sparkql.plan.steps import SamplingParams
from sparkql.runtime.generation.prompting import encode_prompt


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
    token_ids: tuple[int, ...] = ()
    """The generated token ids, the stop token included (the vLLM backend's greedy canary compares
    them: re-tokenizing a completion need not give back its ids)."""


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


@dataclass
class _Row:
    """One sample being decoded."""

    req: GenRequest
    gen: torch.Generator
    budget: int
    tokens: list[int]
    finish: str = "length"


def _lpad(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """``x`` with ``n`` zeros prepended along ``dim`` (left padding of a cache or a mask)."""
    if n == 0:
        return x
    shape = list(x.shape)
    shape[dim] = n
    return torch.cat([x.new_zeros(shape), x], dim=dim)


class _Batch:
    """Rows decoded together with one KV cache (left padded), their masks, positions and last
    logits. New requests can join a running batch (:meth:`admit`): their prompts are prefilled
    on their own and their cache rows are merged in, left-padded to a common length, so a batch
    is refilled as rows finish instead of running at a shrinking size."""

    def __init__(self, model, tokenizer, sampling: SamplingParams, device: torch.device, stops: torch.Tensor):
        self.model, self.tok, self.sampling, self.device, self.stops = model, tokenizer, sampling, device, stops
        self.max_ctx = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self.rows: list[_Row] = []
        self.finished_before_failure: list[_Row] = []
        self.cache = None
        self.attn = self.next_pos = self.logits = None

    @property
    def mergeable(self) -> bool:
        """Plain full-attention caches only (sliding-window layers keep a rolling window)."""
        from transformers.cache_utils import DynamicLayer

        return self.cache is None or all(type(layer) is DynamicLayer for layer in self.cache.layers)

    def admit(self, requests: Sequence[GenRequest]) -> list[_Row]:
        """Prefill ``requests`` and add them to the batch; returns rows that cannot generate a
        single token (no context left), finished at once."""
        from transformers import DynamicCache

        # The n samples of a problem share one prompt: prefill each distinct prompt once and
        # give every sample its own copy of the prompt's KV cache (a gather with repeated indices).
        uniq: dict[str, int] = {}
        row_of = [uniq.setdefault(r.prompt, len(uniq)) for r in requests]
        enc = _left_padded([encode_prompt(self.tok, t) for t in uniq], self.tok)
        u_attn = enc["attention_mask"].to(self.device)
        lens = u_attn.sum(dim=1).tolist()
        new_rows, dead, keep = [], [], []
        for i, r in enumerate(requests):
            n = int(lens[row_of[i]])
            # Each row's own budget: max_tokens, and what its own prompt leaves of the context.
            budget = self.sampling.max_tokens if not self.max_ctx else max(0, min(self.sampling.max_tokens, self.max_ctx - n))
            row = _Row(r, torch.Generator(device=self.device).manual_seed(r.seed), budget, [])
            if budget > 0:
                new_rows.append(row)
                keep.append(row_of[i])
            else:
                dead.append(row)
        if not new_rows:
            return dead
        cache = DynamicCache(config=self.model.config)
        u_pos = (u_attn.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=enc["input_ids"].to(self.device), attention_mask=u_attn, position_ids=u_pos,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        expand = torch.tensor(keep, device=self.device)
        cache.batch_select_indices(expand)
        attn, pos, logits = u_attn[expand], u_pos[expand][:, -1:] + 1, out.logits[expand]
        if self.cache is None:
            self.cache, self.attn, self.next_pos, self.logits = cache, attn, pos, logits
        else:
            t_old, t_new = self.attn.shape[1], attn.shape[1]
            length = max(t_old, t_new)
            for old, new in zip(self.cache.layers, cache.layers):
                old.keys = torch.cat([_lpad(old.keys, length - t_old, 2), _lpad(new.keys, length - t_new, 2)])
                old.values = torch.cat([_lpad(old.values, length - t_old, 2), _lpad(new.values, length - t_new, 2)])
            self.attn = torch.cat([_lpad(self.attn, length - t_old, 1), _lpad(attn, length - t_new, 1)])
            self.next_pos = torch.cat([self.next_pos, pos])
            self.logits = torch.cat([self.logits, logits])
        self.rows += new_rows
        return dead

    def step(self) -> list[_Row]:
        """Sample one token for every row; returns the rows that finished."""
        toks = next_tokens(self.logits[:, -1, :], self.sampling, [r.gen for r in self.rows])
        stop_l = torch.isin(toks, self.stops).tolist()
        keep, done = [], []
        for i, (row, t, s) in enumerate(zip(self.rows, toks.tolist(), stop_l)):
            row.tokens.append(t)
            if s:
                row.finish = "stop"
                done.append(row)
            elif len(row.tokens) >= row.budget:
                done.append(row)
            else:
                keep.append(i)
        if not keep:
            self.rows, self.cache = [], None
            self.attn = self.next_pos = self.logits = None
            return done
        if len(keep) < len(self.rows):
            sel = torch.tensor(keep, device=self.device)
            self.cache.batch_select_indices(sel)
            self.attn, self.next_pos, toks = self.attn[sel], self.next_pos[sel], toks[sel]
            self.rows = [self.rows[i] for i in keep]
        self.attn = torch.cat([self.attn, self.attn.new_ones(len(self.rows), 1)], dim=1)
        try:
            out = self.model(input_ids=toks[:, None], attention_mask=self.attn, position_ids=self.next_pos,
                             past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        except torch.OutOfMemoryError:
            self.finished_before_failure = done  # complete samples: the caller keeps them
            raise
        self.logits = out.logits
        self.next_pos = self.next_pos + 1
        return done

    def result(self, row: _Row) -> GenResult:
        body = row.tokens[:-1] if row.finish == "stop" else row.tokens
        text = self.tok.decode(body, skip_special_tokens=False)
        return GenResult(row.req.problem_id, row.req.sample_idx, row.req.prompt, text, row.finish, len(row.tokens),
                         tuple(row.tokens))


def _stop_tensor(model, tokenizer, stop_ids, device) -> torch.Tensor:
    ids = stop_ids if stop_ids is not None else stop_token_ids(model, tokenizer)
    return torch.tensor(sorted(set(ids)), device=device, dtype=torch.long)


class Throughput:
    """Generated tokens and tokens/s, fed to a progress handle when there is one."""

    def __init__(self, progress_task: Any = None):
        self.task = progress_task
        self.tokens = 0
        self.t0 = time.perf_counter()

    def add(self, n: int) -> None:
        self.tokens += n
        if self.task is not None and hasattr(self.task, "update"):
            # `eta` is the free text column of the run's progress display (runtime/execution/progress.py)
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
                          progress_task: Any = None, stop_ids: Iterable[int] | None = None,
                          refill: bool = True) -> tuple[list[GenResult], Throughput]:
    """Generate every request with the transformers backend, at most ``batch_size`` rows at a
    time, refilling the batch with waiting requests as rows finish (``refill``). ``on_batch``
    receives finished samples in groups (the generate step stores them at once, so a killed
    run keeps them). ``stop_ids`` overrides the model's EOS tokens."""
    model, tok = loaded.model, loaded.tokenizer
    device = loaded.device
    bs = batch_size or default_batch_size(device)
    # Similar lengths share a batch: less padding, and rows finish closer together.
    lengths = [len(encode_prompt(tok, r.prompt)) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: (lengths[i], requests[i].problem_id, requests[i].sample_idx))
    meter = Throughput(progress_task)
    results: list[GenResult] = []
    pending = deque(requests[i] for i in order)
    buffer: list[GenResult] = []

    def emit(force: bool = False) -> None:
        # Finished samples are handed over in groups (one store transaction per group).
        if buffer and (force or len(buffer) >= bs):
            done = list(buffer)
            buffer.clear()
            results.extend(done)
            if progress_task is not None:
                progress_task.advance(len(done))
            if on_batch is not None:
                on_batch(done)

    with _Attn(model), torch.no_grad():
        batch = _Batch(model, tok, sampling, device, _stop_tensor(model, tok, stop_ids, device))
        while pending or batch.rows:
            try:
                # Refill when half the rows are done: new prompts join the running batch.
                if pending and (not batch.rows or (refill and batch.mergeable and len(batch.rows) <= bs // 2)):
                    take = [pending.popleft() for _ in range(min(bs - len(batch.rows), len(pending)))]
                    try:
                        buffer.extend(batch.result(r) for r in batch.admit(take))
                    except BaseException:
                        pending.extendleft(reversed(take))
                        raise
                n = len(batch.rows)
                if n:
                    buffer.extend(batch.result(r) for r in batch.step())
                    meter.add(n)
            except torch.OutOfMemoryError:
                # Start the rows in flight again with half the batch: each sample's own seed makes
                # the retry produce the same samples (up to the batch-composition caveat above).
                if bs == 1:
                    from sparkql.errors import SparkError

                    raise SparkError(f"out of memory generating one sample of {sampling.max_tokens} tokens on {device}",
                                     hint="lower max_tokens, use `set dtype = bf16`, or a bigger device") from None
                buffer.extend(batch.result(r) for r in batch.finished_before_failure)
                pending.extendleft(reversed([r.req for r in batch.rows]))
                batch = _Batch(model, tok, sampling, device, batch.stops)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                bs = max(1, bs // 2)
            emit()
        emit(force=True)
    return results, meter


def _left_padded(ids: list[list[int]], tok) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids`` and ``attention_mask`` of token lists (as the tokenizer pads)."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    width = max((len(x) for x in ids), default=0)
    input_ids = torch.full((len(ids), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        if x:
            input_ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[i, width - len(x):] = 1
    return {"input_ids": input_ids, "attention_mask": mask}
