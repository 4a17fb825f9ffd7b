"""What `sparkql plan` says about a circuit before it runs: prompt tokens, FLOPs, predicted peak
memory and chunk count (torch-free: the compiler path imports it).

Token counts come from the model's own ``tokenizer.json`` read with the ``tokenizers`` library
(no transformers) when it has one, else from the text's length (4 characters a token); problem
prompts get the chat template's and instruction's tokens on top (estimated), and every count is
capped by ``max_tokens``. FLOPs and memory come from :mod:`sparkql.plan.sizing`, the model the
engine itself sizes its chunks with.
"""

from __future__ import annotations

import dataclasses

import json
import math
from dataclasses import dataclass
from pathlib import Path

from sparkql.plan import sizing
from sparkql.plan.steps import Plan, Step

TEMPLATE_TOKENS = 24
"""Chat-template tokens around a problem (role headers, the thinking marker): an estimate."""
INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


@dataclass(frozen=True)
class CircuitEstimate:
    tokens: int
    """Clean prompt tokens over the examples scored."""
    longest: int
    examples: int
    flops: float
    """EAP-IG: m forward+backward passes and one clean+corrupted forward per example."""
    faith_flops: float
    """The circuit's faithfulness: three forward passes per example."""
    peak: int | None
    """Predicted peak above the model's weights (None: the budget is decided at run time)."""
    chunks: int | None
    budget: int | None
    exact_tokens: bool
    """Counted with the model's tokenizer (not estimated from characters)."""


def _config(path: str, base: str | None) -> dict | None:
    if path.startswith("zoo:"):
        from sparkql import zoo

        m = zoo.recipe(None)["model"]
        return {"num_hidden_layers": m["n_layers"], "num_attention_heads": m["n_heads"],
                "num_key_value_heads": m["n_kv_heads"], "head_dim": m["head_dim"], "hidden_size": m["hidden_size"],
                "intermediate_size": m["intermediate_size"], "vocab_size": 64}
    for d in ([base] if base else []) + [path]:
        f = Path(d) / "config.json"
        if not d.startswith("zoo:") and f.is_file():
            try:
                return json.loads(f.read_text())
            except (OSError, ValueError):
                return None
    return None


def _counter(dirs: list[str]):
    """A token counter from the first loadable tokenizer.json, else (text -> len / 4)."""
    for d in dirs:
        f = Path(d) / "tokenizer.json"
        if d and not d.startswith("zoo:") and f.is_file():
            try:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(f))
                return (lambda text: len(tok.encode(text, add_special_tokens=False).ids)), True
            except Exception:  # a damaged or foreign tokenizer.json: fall back to the estimate
                pass
    if any(d.startswith("zoo:") for d in dirs if d):
        return len, True  # the zoo's tokenizer is one token per character
    return (lambda text: math.ceil(len(text) / 4)), False


def estimate_circuit(step: Step, budget: int | None) -> CircuitEstimate | None:
    """The estimate of an ``edge_scores`` step (None when the model's config cannot be read yet)."""
    from sparkql.runtime.datasets import load_rows

    spec = step.spec
    cfg = _config(spec.model.path, spec.model.base)
    if cfg is None:
        return None
    params = spec.params
    elem = {"fp32": 4, "fp64": 8, "bf16": 2, "fp16": 2}.get(params.dtype, 4)
    shape = sizing.shape_from_config(cfg, elem=elem)
    try:
        rows = load_rows(spec.dataset)
    except Exception:  # check reports unreadable datasets; the plan only estimates
        return None
    verbatim = "clean" in spec.dataset.roles
    key = "clean" if verbatim else "problem"
    count, exact = _counter([spec.model.tokenizer or "", spec.model.path, spec.model.base or ""])
    extra = 0 if verbatim else TEMPLATE_TOKENS + count(INSTRUCTION) + (params.prefix_sample or 0)
    if not verbatim and params.prefix:
        extra += count(params.prefix)
    lens = []
    for r in rows:
        if params.examples is not None and len(lens) >= params.examples:
            break
        text = r.get(key)
        if text is None:
            continue
        n = count(str(text)) + extra
        lens.append(min(n, params.max_tokens) if params.max_tokens else n)
    if not lens:
        return None
    m = params.ig_steps
    flops = sum(m * sizing.fb_flops(shape, n, n / 2) + 2 * sizing.forward_flops(shape, n, n / 2) for n in lens)
    faith = sum(3 * sizing.forward_flops(shape, n, n / 2) for n in lens)
    longest = max(lens)
    peak = chunks = None
    if budget is not None:
        plan = sizing.plan_chunks(shape, longest, m, len(lens), budget)
        peak, chunks = plan.peak, plan.chunks
        peak = max(peak, sizing.FIXED + min(len(lens), sizing.faithfulness_batch(shape, longest, len(lens), budget))
                   * sizing.faithfulness_row_bytes(shape, longest))
    return CircuitEstimate(tokens=sum(lens), longest=longest, examples=len(lens), flops=flops, faith_flops=faith,
                           peak=peak, chunks=chunks, budget=budget, exact_tokens=exact)


def budget_of(step: Step) -> int | None:
    """The step's memory budget in bytes: ``memory`` as written, else the default of a CPU run
    (a GPU's default is a share of the memory free when the run starts: None)."""
    from sparkql.runtime.models.device import concrete_device

    if step.exec.memory:
        return sizing.parse_memory(step.exec.memory)
    if concrete_device(step.exec.device) == "cuda":
        return None
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        free = 4 * 2**30
    return sizing.default_budget("cpu", free)


def plan_estimates(plan: Plan) -> dict[str, CircuitEstimate]:
    """Estimates of every ``edge_scores`` step, and the same (for faithfulness) under each circuit key."""
    out: dict[str, CircuitEstimate] = {}
    for s in plan.steps:
        if s.kind == "edge_scores":
            est = estimate_circuit(s, budget_of(s))
            if est is not None and s.spec.fold is not None:
                # a fold's scoring runs EAP-IG on the pairs outside it: (K-1)/K of them, near enough
                # (its peak stays the whole set's: an upper bound)
                share = (s.spec.fold.k - 1) / s.spec.fold.k
                est = dataclasses.replace(est, flops=est.flops * share,
                                          examples=est.examples - est.examples // s.spec.fold.k)
            if est is not None:
                out[s.key] = est
    for s in plan.steps:
        if s.kind == "circuit" and s.spec.scores_key in out:
            out[s.key] = out[s.spec.scores_key]
    return out


def fmt_flops(f: float) -> str:
    for unit, size in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if f >= size:
            return f"{f / size:.1f} {unit}"
    return f"{f:.0f} FLOP"
