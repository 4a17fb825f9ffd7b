"""How much memory and work an EAP-IG circuit takes, from the model's shape and token counts.

Torch-free arithmetic, ONE model for two users: the engine sizes its chunks with it (the
``memory`` option is a hard budget), and ``sparkql plan`` prints the predicted peak, the chunk
count and the FLOPs before anything runs.

What a chunk of R stacked (example, step) rows of S tokens allocates, in the model's element
size ``es`` (fp32 reductions in 4 bytes), per layer and token:

* kept for the backward (weights are frozen, so linear layers keep no inputs): the two norms'
  inputs (2 D), the norm output the engine reads (D), q/k/v projection outputs the engine reads
  (H dh + 2 K dh), RoPE'd queries and the repeat_kv copies of keys and values (3 H dh), the
  attention probabilities (H S), and the MLP's gate, activation and up projections (3 I);
* a margin for what the structure misses (transients, allocator slack): :data:`SLACK`,
  calibrated by measuring peak resident memory on a CPU (``tests/eap/test_memory_budget.py``
  checks that a run stays within its budget for several budgets; ``benchmarks/eap_ig.py``
  prints prediction against measurement);
* one layer at a time during the backward: its gradients and the engine's reductions
  (per-head gradients in fp32, 6 H dh + 3 D + H S), and the last position's logits (R x V).

Per example in flight (an example whose rows the chunk holds): its activation differences,
(n_sources, S, D) in fp32. Plus the score accumulator and a fixed overhead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sparkql.errors import SparkError

GiB = 2**30
MiB = 2**20

SLACK = 1.15
"""Measured peak resident memory per row / what a row keeps for the backward, on a CPU with
large blocks returned at once (runtime/eap/engine.py: return_freed_memory): 0.87-0.98 on
random Qwen2 shapes 4x512 (256 tokens) and 8x512 (64 tokens); 1.15 leaves a margin."""
FIXED = 80 * MiB
"""The trace's own overhead (nnsight, autograd graph, Python objects) and the pre-pass's
leftovers: measured 30-60 MiB above one row and one example's differences."""
CPU_DEFAULT_CAP = 1 * GiB
"""Default CPU budget: larger chunks buy no speed on a CPU (a 22M-parameter model took 12.9-13.5
CPU s with a 700 MiB budget and 14.8-16.4 s with 4.7 GiB), so the default stops at 1 GiB (or
one row's need, when a row needs more)."""


def graph_sources(n_layers: int, n_heads: int) -> int:
    """Upstream nodes of the EAP-IG graph: the input, every query head's output, every MLP."""
    return 1 + n_layers * (n_heads + 1)


def graph_dests(n_layers: int, n_heads: int) -> int:
    """Downstream nodes: each head's q, k and v input, every MLP, the logits."""
    return n_layers * (3 * n_heads + 1) + 1


@dataclass(frozen=True)
class Shape:
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    elem: int = 4
    """Bytes per element of the model's dtype."""

    @property
    def n_sources(self) -> int:
        return graph_sources(self.n_layers, self.n_heads)

    @property
    def n_dests(self) -> int:
        return graph_dests(self.n_layers, self.n_heads)

    @property
    def params(self) -> int:
        """Weights (embeddings and lm_head counted once each)."""
        L, D, H, K, dh, I = self.n_layers, self.hidden, self.n_heads, self.n_kv_heads, self.head_dim, self.intermediate
        return L * (D * H * dh * 2 + 2 * D * K * dh + 3 * D * I) + 2 * self.vocab * D


def shape_from_config(config: dict, elem: int = 4) -> Shape:
    H = int(config["num_attention_heads"])
    D = int(config["hidden_size"])
    return Shape(
        n_layers=int(config["num_hidden_layers"]), n_heads=H,
        n_kv_heads=int(config.get("num_key_value_heads") or H),
        head_dim=int(config.get("head_dim") or D // H), hidden=D,
        intermediate=int(config.get("intermediate_size") or 4 * D),
        vocab=int(config.get("vocab_size") or 32000), elem=elem,
    )


def row_bytes(s: Shape, seq: int) -> int:
    """Peak bytes one stacked row of ``seq`` tokens adds to a chunk."""
    L, D, H, K, dh, I = s.n_layers, s.hidden, s.n_heads, s.n_kv_heads, s.head_dim, s.intermediate
    kept = 3 * D + 4 * H * dh + 2 * K * dh + 3 * I
    per_layer = seq * (SLACK * kept + H * seq) * s.elem
    backward = seq * (6 * H * dh + 3 * D + H * seq) * 4  # one layer's gradients, fp32 reductions
    return int(L * per_layer + backward + 4 * s.vocab * 4)


def example_bytes(s: Shape, seq: int) -> int:
    """An example in flight: its activation differences (n_sources, seq, D), fp32."""
    return int(s.n_sources * seq * s.hidden * max(4, s.elem))


def prepass_bytes(s: Shape, seq: int, n: int) -> int:
    """The clean+corrupted forward of ``n`` examples (no gradients): kept head inputs and MLP
    outputs of every layer, one layer's transients, and the differences it produces."""
    kept = 2 * n * seq * s.n_layers * (s.n_heads * s.head_dim + s.hidden) * s.elem
    transient = 2 * n * seq * (3 * s.intermediate + 2 * s.hidden + 2 * s.n_heads * seq) * 4
    return int(kept + transient + n * example_bytes(s, seq))


def fixed_bytes(s: Shape) -> int:
    return int(FIXED + 2 * s.n_sources * s.n_dests * 8)


def chunk_peak(s: Shape, seq: int, rows: int, steps: int) -> int:
    """Predicted peak of a chunk of ``rows`` rows (examples of ``seq`` tokens, ``steps`` rows each)."""
    in_flight = min(math.ceil(rows / steps) + 1, rows)
    return fixed_bytes(s) + rows * row_bytes(s, seq) + in_flight * example_bytes(s, seq)


@dataclass(frozen=True)
class Chunking:
    rows: int
    """Stacked rows per chunk."""
    chunks: int
    peak: int
    """Predicted peak bytes above the model's weights (the largest of the chunks and the pre-pass)."""
    prepass_group: int
    """Examples per clean+corrupted pre-pass batch."""
    smallest_budget: int
    """The smallest budget that fits one row (and a one-example pre-pass)."""


def plan_chunks(s: Shape, seq: int, steps: int, n_examples: int, budget: int) -> Chunking:
    """The largest chunk that fits ``budget`` (at least one row; ``peak`` says whether it fits)."""
    total = max(1, n_examples * steps)
    # the pre-pass runs while at most one earlier example is still in flight
    smallest = max(chunk_peak(s, seq, 1, steps), fixed_bytes(s) + example_bytes(s, seq) + prepass_bytes(s, seq, 1))
    lo, hi = 1, total
    while lo < hi:  # largest rows with chunk_peak <= budget
        mid = (lo + hi + 1) // 2
        if chunk_peak(s, seq, mid, steps) <= budget:
            lo = mid
        else:
            hi = mid - 1
    rows = lo
    room = budget - fixed_bytes(s) - example_bytes(s, seq)
    group = max(1, min(n_examples, int(room // max(1, prepass_bytes(s, seq, 1)))))
    peak = max(chunk_peak(s, seq, rows, steps),
               fixed_bytes(s) + example_bytes(s, seq) + prepass_bytes(s, seq, group))
    return Chunking(rows=rows, chunks=math.ceil(total / rows), peak=peak, prepass_group=group,
                    smallest_budget=smallest)


def faithfulness_row_bytes(s: Shape, seq: int) -> int:
    """One example of the patched forward: the source outputs of its clean, corrupted and patched
    runs (n_sources, seq, D, twice alive) and their difference, every destination's own residual
    for one layer (3 H + 1 wide), attention scores."""
    D, H = s.hidden, s.n_heads
    return int(seq * (3 * s.n_sources * D + 2 * (3 * H + 1) * D + 3 * H * seq + 3 * s.intermediate) * s.elem
               + 2 * s.vocab * 4)


def faithfulness_batch(s: Shape, seq: int, n_examples: int, budget: int) -> int:
    """Examples per faithfulness batch within ``budget`` (at least 1)."""
    room = budget - FIXED - 2 * s.n_sources * s.n_dests * 4
    return max(1, min(n_examples, int(room // max(1, faithfulness_row_bytes(s, seq)))))


def default_budget(device_type: str, free: int, one_row: int = 0) -> int:
    """Without ``memory``: 70% of free GPU memory; on a CPU the smaller of 40% of free memory and
    :data:`CPU_DEFAULT_CAP` (raised to one row's need when a row needs more)."""
    if device_type == "cuda":
        return int(0.7 * free)
    return int(min(0.4 * free, max(CPU_DEFAULT_CAP, one_row)))


def fb_flops(s: Shape, tokens: int, attended: int) -> float:
    """FLOPs of a forward+backward over ``tokens`` tokens attending over ``attended`` positions on
    average: frozen weights, so the backward computes input gradients only, about the forward's
    cost (twice the forward in all)."""
    return 2.0 * forward_flops(s, tokens, attended)


def forward_flops(s: Shape, tokens: int, attended: int) -> float:
    """2 x weights x tokens (the lm_head only at last positions: left out) plus attention."""
    return 2.0 * (s.params - s.vocab * s.hidden) * tokens + 4.0 * s.n_layers * s.n_heads * s.head_dim * tokens * attended


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB)):
        if n >= size or unit == "MiB":
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return str(n)


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(text: str) -> int:
    """``8GiB``, ``512MB``, ``2g``, ``1e9`` -> bytes; SparkError on anything else."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise SparkError(f"cannot read memory budget {text!r}", hint="write it like `set memory = 8GiB` (units: MB, GB, MiB, GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
