"""The vLLM generation backend (optional extra ``sparkql[vllm]``, GPU only).

UNTESTED ON THIS PROJECT'S MACHINES: they have no GPU, and vLLM needs one. The code
follows vLLM's documented offline API (``LLM.generate`` with token prompts,
``SamplingParams``, ``LLM.apply_model``, ``LLM.reset_prefix_cache``) as of the
V1 engine; :func:`greedy_canary` is the run-time check that it agrees with the
transformers backend, and ``benchmarks/generate.py`` measures it when a GPU is
present.

This module imports neither torch nor vLLM at import time; whether it is used at all is decided
by :func:`sparkql.runtime.generation.backend.choose_backend`.

How it maps the design (docs/evaluation.md):

* **n samples per prompt.** The missing samples of a problem are grouped into
  runs of consecutive sample indices; each run is one request with ``n`` = its
  length and ``seed`` = the first sample's seed. vLLM seeds child i of such a
  request with ``seed + i``, and :func:`sparkql.runtime.generation.transformers_backend.sample_seed`
  is ``base(seed, problem) + i``, so every sample gets the same seed whether it
  is generated with its siblings or alone on resume. (vLLM's sampler is not
  torch.multinomial: the two backends draw different samples from the same
  seeds. They are statistically equivalent, not token-identical.)
* **Every sampling field explicit**: ``generation_config="vllm"`` stops vLLM
  from taking defaults from the model's generation_config.json, and every field
  is passed (top_k 0 = off, which vLLM also reads as off).
* **Weight edits in the workers**: ``LLM.apply_model`` runs
  :func:`_edit_o_proj` on the model inside every worker. With tensor
  parallelism o_proj is a ``RowParallelLinear`` whose input columns are split
  by rank, so a global head is mapped to the rank that holds it. A pristine
  copy of each touched weight is kept in the worker; restoring copies it back.
  After every edit and every restore the prefix cache is reset: cached KV
  blocks of the previous weights must never be reused.
* **Quantized weights are refused**: a column edit of packed int4/fp8 weights
  would not mean "scale this head".
"""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Sequence

from sparkql.errors import SparkError

CHUNK_SAMPLES = 1024
"""Samples per ``LLM.generate`` call: each finished chunk is stored before the next starts."""


# --------------------------------------------------------------------------- model checks


def model_dir(path: str) -> Path:
    from sparkql.runtime.models.loading import local_dir

    return local_dir(path)


def refuse_quantized(d: Path) -> None:
    from sparkql.runtime.models.config import read_config

    cfg = read_config(d)
    q = cfg.get("quantization_config")
    if q:
        method = q.get("quant_method", "?") if isinstance(q, dict) else "?"
        raise SparkError(
            f"{d} holds quantized weights ({method}): head interventions edit o_proj columns and need dense weights",
            hint="use the unquantized checkpoint",
        )


@lru_cache(maxsize=8)
def tokenizer_for(path: str):
    """The model's tokenizer (no weights), for rendering prompts on the vLLM path."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def stop_ids_for(path: str) -> list[int]:
    """EOS ids from generation_config.json, config.json and the tokenizer (as the transformers
    backend uses), passed explicitly because ``generation_config="vllm"`` ignores the file."""
    d = model_dir(path)
    ids: list[int] = []
    for name in ("generation_config.json", "config.json"):
        f = d / name
        if f.is_file():
            eos = json.loads(f.read_text()).get("eos_token_id")
            for e in eos if isinstance(eos, list) else [eos]:
                if e is not None and int(e) not in ids:
                    ids.append(int(e))
    tok = tokenizer_for(path)
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids.append(int(tok.eos_token_id))
    return ids


# --------------------------------------------------------------------------- engines

_ENGINES: dict[tuple[str, str], Any] = {}


def engine_for(path: str, dtype: str = "auto", seed: int = 0):
    """One ``vllm.LLM`` per (model, dtype) per process (building one takes a while)."""
    key = (path, dtype)
    if key in _ENGINES:
        return _ENGINES[key]
    d = model_dir(path)
    refuse_quantized(d)
    # apply_model ships a function to the workers: vLLM V1 pickles it only when allowed.
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    from vllm import LLM

    if dtype == "fp64":
        raise SparkError("vLLM does not run fp64 models", hint="use `set dtype = bf16` (or fp32), or backend = transformers")
    vdtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "auto": "auto"}[dtype]
    llm = LLM(
        model=str(d),
        tokenizer=str(d),
        dtype=vdtype,
        seed=seed,
        generation_config="vllm",  # never take sampling defaults from generation_config.json
        enable_prefix_caching=True,
        gpu_memory_utilization=float(os.environ.get("SPARKQL_VLLM_GPU_UTIL", "0.80")),
        trust_remote_code=False,
        # a model larger than one GPU: vLLM shards it over this many (`sparkql run --tensor-parallel N`
        # sets it on cluster workers, each holding N GPUs); vLLM picks its own executor backend
        tensor_parallel_size=int(os.environ.get("SPARKQL_VLLM_TENSOR_PARALLEL", "1")),
    )
    _ENGINES[key] = llm
    return llm


def release_engines() -> None:
    _ENGINES.clear()
    try:
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass


# --------------------------------------------------------------------------- weight edits in workers


def _o_proj(model, layer: int):
    """The o_proj of ``layer`` inside vLLM's model (Qwen2/Qwen3/Llama/Mistral share the layout)."""
    inner = getattr(model, "model", model)
    return inner.layers[layer].self_attn.o_proj


def _edit_o_proj(model, edits: dict[int, list[int]], multiplier: float, n_heads: int, head_dim: int,
                 restore_only: bool = False) -> int:  # pragma: no cover - runs inside vLLM workers
    """Restore every o_proj touched before from its pristine copy, then (unless
    ``restore_only``) set the columns of ``edits`` ({layer: [global head, ...]}) to pristine x
    ``multiplier``. Returns the number of heads edited on this worker."""
    import torch

    done = 0
    with torch.no_grad():
        store = getattr(model, "_sparkql_pristine", None)
        if store is None:
            store = {}
            model._sparkql_pristine = store
        for layer, pristine in store.items():
            _o_proj(model, layer).weight.copy_(pristine)
        if restore_only:
            return 0
        for layer, heads in edits.items():
            mod = _o_proj(model, layer)
            w = mod.weight
            if not w.dtype.is_floating_point:
                raise RuntimeError(f"o_proj of layer {layer} is {w.dtype}: quantized weights cannot be edited per head")
            local_cols = int(getattr(mod, "input_size_per_partition", w.shape[1]))
            if local_cols != w.shape[1]:
                raise RuntimeError("unexpected o_proj layout (packed weights?)")
            tp_rank = int(getattr(mod, "tp_rank", 0) or 0)
            heads_here = local_cols // head_dim
            first = tp_rank * heads_here
            if layer not in store:
                store[layer] = w.detach().clone()
            for h in heads:
                if not first <= h < first + heads_here:
                    continue  # another rank holds this head's columns
                cols = slice((h - first) * head_dim, (h - first + 1) * head_dim)
                if multiplier == 0.0:
                    w[:, cols] = 0
                else:
                    w[:, cols] = store[layer][:, cols] * multiplier
                done += 1
    return done


def apply_variant(llm, variant, n_heads: int, head_dim: int) -> None:
    """Edit the workers' weights for ``variant`` (None: restore), then drop cached prefixes."""
    if variant is None or not variant.heads:
        llm.apply_model(partial(_edit_o_proj, edits={}, multiplier=1.0, n_heads=n_heads, head_dim=head_dim,
                                restore_only=True))
    else:
        counts = llm.apply_model(partial(_edit_o_proj, edits=variant.by_layer(), multiplier=variant.multiplier,
                                         n_heads=n_heads, head_dim=head_dim))
        if sum(counts) < len(set(variant.heads)):
            raise RuntimeError(f"vLLM workers edited {sum(counts)} of {len(set(variant.heads))} heads")
    llm.reset_prefix_cache()


# --------------------------------------------------------------------------- generation


def _runs(requests) -> list[list]:
    """Group requests of one problem with consecutive sample indices (one vLLM request each)."""
    ordered = sorted(requests, key=lambda r: (r.problem_id, r.sample_idx))
    runs: list[list] = []
    for r in ordered:
        if runs and runs[-1][-1].problem_id == r.problem_id and runs[-1][-1].sample_idx + 1 == r.sample_idx \
                and runs[-1][-1].prompt == r.prompt:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


class _Meter:
    def __init__(self) -> None:
        self.tokens = 0
        self.t0 = time.perf_counter()

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.tokens / dt if dt > 0 else 0.0


def generate_vllm(model_path: str, requests: Sequence, sampling, variant=None, *, dtype: str = "auto",
                  n_heads: int, head_dim: int, on_batch: Callable[[list], None] | None = None,
                  progress_task: Any = None, canary: bool = True):
    """Generate ``requests`` (GenRequest) with vLLM, the variant applied in the workers.
    Returns (results, meter) like :func:`sparkql.runtime.generation.transformers_backend.generate_transformers`."""
    from vllm import SamplingParams as VSamplingParams

    from sparkql.runtime.generation.transformers_backend import GenResult

    llm = engine_for(model_path, dtype, seed=sampling.seed)
    tok = tokenizer_for(model_path)
    stops = stop_ids_for(model_path)
    if canary and os.environ.get("SPARKQL_VLLM_CANARY", "1") != "0" and requests:
        greedy_canary(model_path, requests[0].prompt, variant, dtype=dtype, n_heads=n_heads, head_dim=head_dim)
    meter = _Meter()
    results: list = []
    runs = _runs(requests)
    apply_variant(llm, variant, n_heads, head_dim)
    try:
        chunk: list[list] = []
        size = 0
        for i, run in enumerate(runs):
            chunk.append(run)
            size += len(run)
            if size < CHUNK_SAMPLES and i < len(runs) - 1:
                continue
            prompts = [{"prompt_token_ids": tok(r[0].prompt, add_special_tokens=False)["input_ids"]} for r in chunk]
            params = [VSamplingParams(
                n=len(r), temperature=sampling.temperature, top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else -1,  # -1 = off in every vLLM version
                min_p=sampling.min_p, max_tokens=sampling.max_tokens, seed=r[0].seed,
                stop_token_ids=stops, skip_special_tokens=False, repetition_penalty=1.0,
                presence_penalty=0.0, frequency_penalty=0.0,
            ) for r in chunk]
            outs = llm.generate(prompts, params, use_tqdm=False)
            done = []
            for run, out in zip(chunk, outs):
                for comp in sorted(out.outputs, key=lambda c: c.index):
                    req = run[comp.index]
                    if comp.finish_reason not in ("stop", "length"):  # "abort": never store it as an answer
                        raise RuntimeError(f"vLLM ended sample {req.problem_id}/{req.sample_idx} with {comp.finish_reason!r}")
                    finish = comp.finish_reason
                    done.append(GenResult(req.problem_id, req.sample_idx, req.prompt, comp.text, finish,
                                          len(comp.token_ids)))
                    meter.tokens += len(comp.token_ids)
            results.extend(done)
            if progress_task is not None:
                progress_task.advance(len(done))
                progress_task.update(tokens=meter.tokens, tok_s=round(meter.rate, 1),
                                     eta=f"{meter.tokens} tok  {meter.rate:.1f} tok/s")
            if on_batch is not None:
                on_batch(done)
            chunk, size = [], 0
    finally:
        apply_variant(llm, None, n_heads, head_dim)
    return results, meter


def greedy_canary(model_path: str, prompt: str, variant, *, dtype: str, n_heads: int, head_dim: int,
                  tokens: int = 16) -> float:
    """Greedy-decode ``prompt`` with vLLM and with the transformers backend (both with the
    variant applied) and compare. Raises when the outputs part within the first few characters
    (a weight edit that did not land, a wrong head layout); returns the share of the shorter
    output on which they agree. Later drift under bf16 is expected and only reported."""
    from sparkql.plan.steps import SamplingParams
    from sparkql.runtime.generation.transformers_backend import GenRequest, generate_transformers
    from sparkql.runtime.models.interventions import HeadEditor
    from sparkql.runtime.models.loading import load_model

    sp = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=tokens, seed=0)
    req = GenRequest("canary", 0, prompt, 0)
    llm = engine_for(model_path, dtype)
    tok = tokenizer_for(model_path)
    apply_variant(llm, variant, n_heads, head_dim)
    try:
        from vllm import SamplingParams as VSamplingParams

        out = llm.generate([{"prompt_token_ids": tok(prompt, add_special_tokens=False)["input_ids"]}],
                           VSamplingParams(n=1, temperature=0.0, max_tokens=tokens, stop_token_ids=stop_ids_for(model_path),
                                           skip_special_tokens=False), use_tqdm=False)
        v_text = out[0].outputs[0].text
    finally:
        apply_variant(llm, None, n_heads, head_dim)
    try:
        ref = load_model(model_path, dtype=dtype, device="cuda")
    except (SparkError, RuntimeError) as e:  # no room beside vLLM's reservation: skipped, loudly
        import warnings

        warnings.warn(f"greedy canary skipped: {getattr(e, 'message', e)}", stacklevel=2)
        return float("nan")
    try:
        with HeadEditor(ref).applied(variant):
            t_text = generate_transformers(ref, [req], sp, batch_size=1)[0][0].completion
    finally:
        del ref
        import torch

        torch.cuda.empty_cache()
    # Compare the texts (re-tokenizing a completion need not give back its token ids).
    n = min(len(v_text), len(t_text))
    agree = next((i for i, (a, b) in enumerate(zip(v_text, t_text)) if a != b), n)
    if n and agree < min(8, n):
        raise RuntimeError(
            f"vLLM and transformers disagree after {agree} characters of greedy output on the canary prompt "
            f"(vLLM {v_text[:40]!r} vs transformers {t_text[:40]!r}); the weight edit may not have reached "
            "the vLLM workers; use backend = transformers"
        )
    return agree / n if n else 1.0
