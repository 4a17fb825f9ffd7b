"""EAP-IG edge scores with fused IG batching (docs/eap_ig.md).

For clean/corrupted token sequences of equal length (embeddings e, e'), m
steps and a metric L, every edge u->v of :class:`~sparkql.runtime.eap.graph.Graph`
gets::

    score(u->v) = mean over examples of
                  sum over positions of (z_u - z'_u) . (1/m) sum_{k=1..m} dL/dx_v  at  e' + (k/m)(e - e')

where dL/dx_v is the gradient with respect to v's own copy of the residual
stream (ungrouped GQA: each query head has its own key and value inputs).

How it is computed (the fused path):

* The rows (example, step k) are stacked on the batch axis, right-padded to
  the chunk's longest example (causal attention: padding after the last real
  token never influences it, and the loss never reads a padded position), and
  cut into chunks sized from a memory budget. The loss is the metric summed over
  the chunk's rows, so ONE forward and ONE backward per chunk give every row's
  gradients.
* Per-head gradients come without replicating the residual stream. For a
  query head we read the gradient at the q_proj output (autograd has already
  gone back through RoPE and Qwen3's q_norm); for keys and values the gradient
  at the per-query-head tensors *after* ``repeat_kv`` (the ungrouping), with
  RoPE undone for keys (its VJP is the inverse rotation) and Qwen3's k_norm VJP
  applied. Mapping a head's gradient g (at its projection output) back through
  its projection rows W_h and the RMSNorm (n = w * x / r) gives::

      dL/dx_v = w * (W_h^T g) / r  -  x * (g . (W_h n)) / (D r^2)

  Both terms are linear in g, so the sum over a example's steps is taken
  BEFORE expanding to the model width: S = sum_k g_k / r_k (head_dim wide) and
  c_k = g_k . (lin_k - b) / (D r_k^2) (one number per head and position;
  W_h n_k is the projection output without its bias), giving per example and
  layer ``G_v = w * (S @ W_h) - sum_k c_k x_k``. The MLP and logits inputs use
  the same RMSNorm VJP on the norm-output gradient, summed over steps.
* The contraction with the activation differences (z_u - z'_u) is then one
  einsum per layer and example in the chunk, not one per step.

Activation differences come from one batched clean+corrupted forward per
group of examples (which also gives the clean distribution the KL metric
needs); they are kept only while the example's rows are in flight.

nnsight: activations and gradients are read through ``nnsight.NNsight``
wrapping the loaded HF model. The per-query-head keys/values after
``repeat_kv`` live inside transformers' ``eager_attention_forward``; nnsight
0.8's operation-level ``.source`` reaches them (``attention_interface_N.source.
key_states_0``), which is why models are loaded with eager attention. Gradients
are read inside ``with loss.backward():`` in reverse forward order and reduced
as they arrive, so no layer's gradients outlive its processing.

The unfused reference path (``fused=False``) runs the m interpolation steps of
each example as m separate single-row forward+backward passes with a
contraction per pass: the naive algorithm, used by tests and the benchmark.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from sparkql.errors import SparkError
from sparkql.runtime.eap.graph import Graph


_PER_ROW_KEEP: bool | None = None


def _per_row_logits_to_keep() -> bool:
    """Whether this transformers reads a 2-D integer ``logits_to_keep`` as one position per row
    (5.20 and later). Older releases (vLLM's CPU build pins 5.19) index the sequence dimension
    with the whole tensor, which would give every row every other row's position."""
    global _PER_ROW_KEEP
    if _PER_ROW_KEEP is None:
        try:
            from transformers.modeling_utils import slice_logits_to_keep
        except ImportError:
            _PER_ROW_KEEP = False
        else:
            probe = slice_logits_to_keep(torch.zeros(2, 3, 1), torch.tensor([[0], [2]]))
            _PER_ROW_KEEP = tuple(probe.shape) == (2, 1, 1)
    return _PER_ROW_KEEP


def last_logits_args(last: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """``logits_to_keep`` that computes the logits of each row's last position ``last[r]``, and
    the index that takes them, (R, V), from the model's output logits."""
    if _per_row_logits_to_keep():
        return last[:, None], (slice(None), 0, slice(None))
    # the distinct last positions for every row (R x P logits, P = distinct lengths), then each row's own
    keep, which = torch.unique(last, return_inverse=True)
    return keep, (torch.arange(len(last), device=last.device), which, slice(None))

METRICS = ("kl", "logit_diff", "prob")


# ----------------------------------------------------------------------------- inputs


@dataclass
class Example:
    """One clean/corrupted pair of equal token length."""

    clean: list[int]
    corrupt: list[int]
    target: int | None = None
    """Answer token for ``logit_diff``/``prob`` (None: the clean run's greedy token)."""
    foil: int | None = None
    """Wrong token for ``logit_diff`` (None: the corrupted run's greedy token, or its runner-up
    when that equals the target)."""

    def __post_init__(self) -> None:
        if len(self.clean) != len(self.corrupt):
            raise ValueError("clean and corrupt must have the same token length")
        if not self.clean:
            raise ValueError("empty example")


@dataclass
class EapResult:
    graph: Graph
    scores: np.ndarray
    """``(n_sources, n_dests)`` float64; zero where :attr:`Graph.mask` is False."""
    n_examples: int
    steps: int
    metric: str
    metric_clean: float
    """Mean metric over examples on the clean prompts."""
    metric_corrupt: float
    seconds: float
    chunk_rows: int
    n_chunks: int
    targets: list[int] = field(default_factory=list)
    foils: list[int] = field(default_factory=list)
    budget: int = 0
    """The memory budget (bytes) chunks were sized to."""
    peak_bytes: int | None = None
    """Measured peak of the scoring above what was allocated before it (GPU only; None on a CPU)."""

    def edge_scores(self) -> np.ndarray:
        """Scores of every edge in :attr:`Graph.edge_index` order."""
        src, dst = self.graph.edge_index
        return self.scores[src, dst]


# ----------------------------------------------------------------------------- memory


from sparkql.plan.sizing import parse_memory  # noqa: E402,F401 (torch-free; `8GiB` -> bytes)


def available_memory(device: torch.device) -> int:
    """Free memory on ``device`` (bytes): cudaMemGetInfo, or MemAvailable on the host."""
    if device.type == "cuda":  # pragma: no cover - GPU only
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return 4 * 2**30


# ----------------------------------------------------------------------------- model parts


def _walk(root: Any, path: str) -> Any:
    """``model.layers.3.self_attn`` on a module or an nnsight Envoy."""
    obj = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def rms_vjp(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Gradient at the input of RMSNorm ``y = w * x / sqrt(mean(x^2) + eps)`` (last dim), given
    the gradient ``g`` at its output: ``w g / r - x (g . n) / (D r^2)`` with ``n = w x / r``."""
    d = x.shape[-1]
    r = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    wg = g * w if w is not None else g
    return wg / r - x * ((wg * x).sum(-1, keepdim=True) / (d * r.pow(3)))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def undo_rope(g: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """VJP of ``y = x cos + rotate_half(x) sin``: ``g cos - rotate_half(g sin)`` (rotate_half^T = -rotate_half).
    g: (..., s, dh) with cos/sin broadcastable."""
    return g * cos - rotate_half(g * sin)


class Parts:
    """The tensors of a loaded model the engine needs, found through the family adapter."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.model = lm.model
        self.adapter = lm.adapter
        self.L = lm.n_layers
        self.H = lm.n_heads
        self.K = lm.n_kv_heads
        self.dh = lm.head_dim
        self.rep = self.H // self.K
        self.D = int(lm.config["hidden_size"])
        self.graph = Graph(self.L, self.H)
        self.dtype = next(self.model.parameters()).dtype
        self.device = next(self.model.parameters()).device
        # Reductions run in float64 for float64 models and in float32 otherwise.
        self.cdt = torch.float64 if self.dtype == torch.float64 else torch.float32
        self.kv_index = torch.arange(self.H, device=self.device) // self.rep

    def mod(self, part: str, layer: int | None = None) -> torch.nn.Module:
        return self.model.get_submodule(self.adapter.path(part, layer))

    def has(self, part: str) -> bool:
        return getattr(self.adapter, part) is not None

    def norm(self, part: str, layer: int | None = None) -> tuple[torch.Tensor, float]:
        m = self.mod(part, layer)
        eps = getattr(m, "variance_epsilon", None) or getattr(m, "eps", 1e-6)
        return m.weight.to(self.cdt), float(eps)

    def proj(self, which: str, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weights (heads, dh, D) and bias (heads, dh) of q/k/v_proj, per query head (kv weights
        repeated over each group: the ungrouping)."""
        lin = self.mod(f"{which}_proj", layer)
        n = self.H if which == "q" else self.K
        w = lin.weight.to(self.cdt).view(n, self.dh, -1)
        b = lin.bias.to(self.cdt).view(n, self.dh) if lin.bias is not None else None
        if which != "q":
            w = w[self.kv_index]
            b = b[self.kv_index] if b is not None else None
        return w, b

    def o_heads(self, layer: int) -> torch.Tensor:
        """o_proj columns per head: (H, D, dh)."""
        w = self.mod("o_proj", layer).weight.to(self.cdt)
        return w.view(self.D, self.H, self.dh).permute(1, 0, 2)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mod("embed")(ids)

    def lm_head_bias(self) -> None:
        return None


class _Frozen:
    """Parameters stop requiring grad for the duration (only the input embeddings need it),
    and are restored after."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __enter__(self):
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self.flags:
            p.requires_grad_(False)
        return self

    def __exit__(self, *exc):
        for p, f in self.flags:
            p.requires_grad_(f)


def envoy_for(model: torch.nn.Module, parts: Parts):
    """An ``nnsight.NNsight`` wrapper of the model, built once per model object, with every
    attention module's forward source-instrumented (must happen outside a trace). Kept on the
    model object itself (a reference cycle the garbage collector frees with the model, so a
    released model is not kept alive by a cache)."""
    import nnsight

    cached = model.__dict__.get("_sparkql_envoy")
    if cached is not None:
        return cached
    nm = nnsight.NNsight(model)
    names = _walk(nm, parts.adapter.path("attn", 0)).source.names
    calls = sorted((n for n in names if re.fullmatch(r"attention_interface_\d+", n)), key=lambda n: int(n.rsplit("_", 1)[1]))
    if not calls:  # pragma: no cover - a transformers release that renamed the attention call
        raise SparkError(
            "this transformers version's attention forward has no `attention_interface` call that EAP-IG can trace",
            hint="use the transformers version pinned in constraints.txt",
        )
    for l in range(parts.L):
        _walk(nm, parts.adapter.path("attn", l)).source  # install before tracing
    object.__setattr__(model, "_sparkql_envoy", (nm, calls[-1]))
    return nm, calls[-1]


# ----------------------------------------------------------------------------- metric


def metric_rows(logits: torch.Tensor, metric: str, logp_clean: torch.Tensor | None, target: torch.Tensor,
                foil: torch.Tensor) -> torch.Tensor:
    """Per-row metric on last-position logits (R, V): kl = KL(P_clean || P) summed over the
    vocabulary; logit_diff = logit[target] - logit[foil]; prob = P[target]."""
    logits = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
    if metric == "kl":
        logp = torch.log_softmax(logits, -1)
        lc = logp_clean.to(logp.dtype)
        return (lc.exp() * (lc - logp)).sum(-1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    if metric == "logit_diff":
        return logits[rows, target] - logits[rows, foil]
    if metric == "prob":
        return torch.softmax(logits, -1)[rows, target]
    raise SparkError(f"unknown metric {metric!r}", hint="metrics: " + ", ".join(METRICS))


# ----------------------------------------------------------------------------- engine


_MALLOPT_DONE = False


def return_freed_memory() -> None:
    """On a CPU (glibc), serve every allocation of 1 MiB or more by its own mmap, returned to the
    system when freed. glibc's default raises that threshold as large blocks are freed, so a
    chunk's activations land on the heap, which fragments and keeps its peak: a 0.5 GiB budget
    then peaked at 550-570 MiB resident, 340 MiB with this (same CPU time within noise). Peak
    memory then follows the memory model (sparkql/plan/sizing.py). Once per process; a no-op
    without glibc."""
    global _MALLOPT_DONE
    if _MALLOPT_DONE:
        return
    _MALLOPT_DONE = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD (fixing it also stops the dynamic raise)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


class EapIg:
    """EAP-IG on one loaded model (:class:`sparkql.runtime.models.loading.LoadedModel`)."""

    def __init__(self, lm: Any) -> None:
        self.p = Parts(lm)
        if self.p.device.type == "cpu":
            return_freed_memory()
        self.nm, self.attn_call = envoy_for(lm.model, self.p)

    @property
    def dtype_name(self) -> str:
        return {torch.float32: "fp32", torch.float64: "fp64", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.p.dtype]

    @property
    def device_type(self) -> str:
        return self.p.device.type

    # -- memory model (sparkql/plan/sizing.py: the same model `sparkql plan` prints) -----------
    @property
    def shape(self):
        from sparkql.plan.sizing import shape_from_config

        return shape_from_config(self.p.lm.config, elem=torch.finfo(self.p.dtype).bits // 8)

    def bytes_per_row(self, seq: int) -> int:
        from sparkql.plan.sizing import row_bytes

        return row_bytes(self.shape, seq)

    # -- clean / corrupted pre-pass ----------------------------------------------------
    @torch.no_grad()
    def _prepass(self, examples: Sequence[Example], metric: str) -> list[dict]:
        """Clean and corrupted runs of ``examples`` in one batch: activation differences of
        every source (n_sources, s, D), the clean log-distribution, targets and foils, and the
        metric on both runs."""
        p = self.p
        n = len(examples)
        lens = [len(e.clean) for e in examples]
        S = max(lens)
        pad = 0
        ids = torch.full((2 * n, S), pad, dtype=torch.long, device=p.device)
        for i, e in enumerate(examples):
            ids[i, : lens[i]] = torch.tensor(e.clean, device=p.device)
            ids[n + i, : lens[i]] = torch.tensor(e.corrupt, device=p.device)
        last = torch.tensor(lens * 2, device=p.device) - 1
        emb = p.embed(ids)
        nm = self.nm
        # Lists made outside the trace and filled inside it: nnsight pushes back only saved
        # names, while mutations of outer objects persist.
        heads: list = []
        mlps: list = []
        got: list = []
        keep, pick = last_logits_args(last)
        with nm.trace(inputs_embeds=emb, logits_to_keep=keep):
            for l in range(p.L):
                heads.append(_walk(nm, p.adapter.path("o_proj", l)).input)
                mlps.append(_walk(nm, p.adapter.path("mlp", l)).output)
            got.append(nm.output.logits)
        logits = got[0][pick]
        o_heads = [p.o_heads(l) for l in range(p.L)]

        def delta(i: int, s: int) -> torch.Tensor:
            """(n_sources, s, D) clean-minus-corrupted outputs of every source, in Graph.sources
            order. A head's output is linear in its slice of o_proj's input, so the difference is
            taken before the projection."""
            g = p.graph
            out = torch.empty(g.n_sources, s, p.D, dtype=p.cdt, device=p.device)  # filled in place: no cat copy
            out[0] = (emb[i, :s] - emb[n + i, :s]).to(p.cdt)
            for l in range(p.L):
                a = (heads[l][i, :s] - heads[l][n + i, :s]).to(p.cdt).view(s, p.H, p.dh)
                a0 = g.head_source(l, 0)
                out[a0 : a0 + p.H] = torch.einsum("shi,hdi->hsd", a, o_heads[l])
                out[g.mlp_source(l)] = (mlps[l][i, :s] - mlps[l][n + i, :s]).to(p.cdt)
            return out

        out = []
        lc = torch.log_softmax(logits[:n].to(torch.float64), -1)
        for i, e in enumerate(examples):
            s = lens[i]
            target = e.target if e.target is not None else int(logits[i].argmax())
            foil = e.foil
            if foil is None:
                top2 = logits[n + i].topk(2).indices.tolist()
                foil = top2[0] if top2[0] != target else top2[1]
            t = torch.tensor([target, target], device=p.device)
            f = torch.tensor([foil, foil], device=p.device)
            lcp = lc[i : i + 1].expand(2, -1)
            both = metric_rows(torch.stack([logits[i], logits[n + i]]), metric, lcp, t, f)
            out.append(dict(
                delta=delta(i, s),
                logp_clean=lc[i], target=target, foil=foil,
                m_clean=float(both[0]), m_corrupt=float(both[1]), len=s,
                emb_clean=emb[i, :s], emb_corrupt=emb[n + i, :s],
            ))
        return out

    # -- one chunk: forward + backward + reductions --------------------------------------
    def _chunk(self, rows: list[tuple[int, int]], info: dict[int, dict], steps: int, metric: str,
               scores: torch.Tensor) -> None:
        """Rows ``(example, k)`` (grouped by example, contiguous) through one forward and one
        backward; adds their contributions to ``scores`` (n_sources, n_dests)."""
        p, g = self.p, self.p.graph
        R = len(rows)
        S = max(info[e]["len"] for e, _ in rows)
        emb = torch.zeros(R, S, p.D, dtype=p.dtype, device=p.device)
        for r, (e, k) in enumerate(rows):
            it = info[e]
            a = k / steps
            # interpolate in the reduction dtype (bf16 would round k/m visibly), then cast
            ec, e1 = it["emb_corrupt"].to(p.cdt), it["emb_clean"].to(p.cdt)
            emb[r, : it["len"]] = (ec + a * (e1 - ec)).to(p.dtype)
        emb.requires_grad_(True)
        last = torch.tensor([info[e]["len"] - 1 for e, _ in rows], device=p.device)
        target = torch.tensor([info[e]["target"] for e, _ in rows], device=p.device)
        foil = torch.tensor([info[e]["foil"] for e, _ in rows], device=p.device)
        logp_clean = torch.stack([info[e]["logp_clean"] for e, _ in rows]) if metric == "kl" else None
        # contiguous segments of rows per example
        segs: list[tuple[int, int, int]] = []
        for r, (e, _) in enumerate(rows):
            if segs and segs[-1][0] == e:
                segs[-1] = (e, segs[-1][1], r + 1)
            else:
                segs.append((e, r, r + 1))

        nm, ad, call = self.nm, p.adapter, self.attn_call
        red = _Reducer(p, info, segs, scores)
        keep, pick = last_logits_args(last)
        with nm.trace(inputs_embeds=emb, logits_to_keep=keep):
            cos, sin = _walk(nm, ad.path("rotary")).output
            saved = []
            for l in range(p.L):
                x = _walk(nm, ad.path("attn_norm", l)).input
                lq = _walk(nm, ad.path("q_proj", l)).output
                lk = _walk(nm, ad.path("k_proj", l)).output
                lv = _walk(nm, ad.path("v_proj", l)).output
                inner = getattr(_walk(nm, ad.path("attn", l)).source, call).source
                ks = inner.key_states_0.output
                vs = inner.value_states_0.output
                x2 = _walk(nm, ad.path("mlp_norm", l)).input
                y2 = _walk(nm, ad.path("mlp_norm", l)).output
                saved.append((x, lq, lk, lv, ks, vs, x2, y2))
            xf = _walk(nm, ad.path("final_norm")).input
            logits = nm.output.logits[pick]
            loss = metric_rows(logits, metric, logp_clean, target, foil).sum()
            with loss.backward():
                red.logits(xf.grad)
                for l in reversed(range(p.L)):
                    x, lq, lk, lv, ks, vs, x2, y2 = saved[l]
                    gy2 = y2.grad
                    gv = vs.grad
                    gk = ks.grad
                    gq = lq.grad
                    red.layer(l, x, lq, lk, lv, gq, gk, gv, x2, gy2, cos, sin)
                    # drop our references so autograd can free this layer's activations as it goes
                    saved[l] = None
                    x = lq = lk = lv = ks = vs = x2 = y2 = gy2 = gv = gk = gq = None

    # -- driver ----------------------------------------------------------------------------
    def run(self, examples: Sequence[Example], steps: int = 100, metric: str = "kl", memory: int | str | None = None,
            fused: bool = True, progress: Any = None, description: str = "EAP-IG",
            chunk_rows: int | None = None, log: Callable[[str], None] | None = None) -> EapResult:
        """Scores for ``examples``. ``memory``: byte budget (int or ``8GiB``; None: the default of
        :func:`sparkql.plan.sizing.default_budget`), a hard budget: chunks are sized to it by the
        memory model, a chunk that runs out of memory anyway halves and retries down to one row,
        and a budget too small for one row is a SparkError that says the smallest that fits.
        ``chunk_rows`` forces a chunk size (tests). ``progress``: a Progress whose
        ``task(description, total)`` is advanced per example-step. ``log``: says when the budget
        forces one row per chunk, or a chunk was halved."""
        from sparkql.plan.sizing import chunk_peak, default_budget as default_for, fmt_bytes, plan_chunks

        if metric not in METRICS:
            raise SparkError(f"unknown metric {metric!r}", hint="metrics: " + ", ".join(METRICS))
        if steps < 1:
            raise SparkError("EAP-IG needs steps >= 1", hint="e.g. eap_ig(steps = 100)")
        if not examples:
            raise SparkError("EAP-IG got no examples")
        say = log or (lambda _msg: None)
        p = self.p
        t0 = time.perf_counter()
        order = sorted(range(len(examples)), key=lambda i: -len(examples[i].clean))
        smax = len(examples[order[0]].clean)
        shape = self.shape
        plan = plan_chunks(shape, smax, steps, len(examples), 2**62)
        if isinstance(memory, str):
            budget = parse_memory(memory)
        elif memory:
            budget = int(memory)
        else:
            budget = default_for(p.device.type, available_memory(p.device), plan.smallest_budget)
        plan = plan_chunks(shape, smax, steps, len(examples), budget)
        if plan.smallest_budget > budget and chunk_rows is None:
            raise SparkError(
                f"EAP-IG needs about {fmt_bytes(plan.smallest_budget)} for one row of {smax} tokens on this model, "
                f"more than the memory budget of {fmt_bytes(budget)}",
                hint=f"set memory = {_round_up(plan.smallest_budget)} or more, or lower max_tokens")
        if not fused:
            rows_per_chunk = 1
        elif chunk_rows:
            rows_per_chunk = chunk_rows
        else:
            rows_per_chunk = plan.rows
            if rows_per_chunk == 1 and steps > 1:
                say(f"note: the memory budget {fmt_bytes(budget)} fits one row per chunk ({smax} tokens): "
                    f"the {steps} IG steps of an example run as {steps} separate passes (no fused batching); "
                    f"memory = {_round_up(chunk_peak(shape, smax, steps, steps))} would stack every step of an example")
        per = plan.prepass_group
        all_rows = [(i, k) for i in order for k in range(1, steps + 1)]
        scores = torch.zeros(p.graph.n_sources, p.graph.n_dests, dtype=torch.float64, device=p.device)
        part = torch.zeros_like(scores)  # one chunk's contributions: added only once the chunk succeeded
        task = progress.task(description, total=len(all_rows)) if progress is not None else None
        info: dict[int, dict] = {}
        m_clean, m_corrupt, targets, foils = {}, {}, {}, {}
        remaining = {i: steps for i in order}
        n_chunks = 0
        model = p.model
        was_training = model.training
        model.eval()
        peak = _PeakMemory(p.device)
        try:
            with _Frozen(model), torch.enable_grad(), peak:
                c0 = 0
                while c0 < len(all_rows):
                    rows = all_rows[c0 : c0 + rows_per_chunk]
                    need = sorted({e for e, _ in rows if e not in info})
                    # pre-pass in groups whose differences (and the batch's outputs) fit the budget
                    j = 0
                    while j < len(need):
                        grp = need[j : j + per]
                        try:
                            done = self._prepass([examples[e] for e in grp], metric)
                        except (torch.OutOfMemoryError, MemoryError) as exc:
                            if len(grp) == 1:
                                raise SparkError(
                                    f"out of memory in EAP-IG's clean/corrupted pass of one example of "
                                    f"{len(examples[grp[0]].clean)} tokens (memory budget {fmt_bytes(budget)})",
                                    hint=f"free memory for it (one row needs about {_round_up(plan.smallest_budget)}), "
                                         "use a smaller dtype, or lower max_tokens") from exc
                            per = max(1, len(grp) // 2)
                            say(f"note: a clean/corrupted pass of {len(grp)} examples ran out of memory; "
                                f"retrying with {per}")
                            _free_cache(p.device)
                            continue
                        for e, d in zip(grp, done):
                            info[e] = d
                            m_clean[e], m_corrupt[e] = d["m_clean"], d["m_corrupt"]
                            targets[e], foils[e] = d["target"], d["foil"]
                        j += len(grp)
                    part.zero_()
                    try:
                        self._chunk(rows, info, steps, metric, part)
                    except (torch.OutOfMemoryError, MemoryError) as exc:
                        if len(rows) == 1:
                            raise SparkError(
                                f"out of memory in EAP-IG with one row of {len(examples[rows[0][0]].clean)} tokens "
                                f"(memory budget {fmt_bytes(budget)}; the memory model expected "
                                f"{fmt_bytes(plan.smallest_budget)} for one row)",
                                hint=f"free memory for it (one row needs about {_round_up(plan.smallest_budget)}), "
                                     "use a smaller dtype, or lower max_tokens") from exc
                        rows_per_chunk = max(1, len(rows) // 2)
                        say(f"note: a chunk of {len(rows)} rows ran out of memory; retrying with {rows_per_chunk}")
                        _free_cache(p.device)
                        continue
                    scores += part
                    n_chunks += 1
                    c0 += len(rows)
                    for e, _ in rows:
                        remaining[e] -= 1
                        if remaining[e] == 0:
                            del info[e]
                    if task is not None:
                        task.advance(len(rows))
        finally:
            if was_training:
                model.train()
            if task is not None:
                task.close()
        n = len(examples)
        scores /= n * steps
        scores *= torch.as_tensor(p.graph.mask, device=scores.device)
        idx = range(n)
        return EapResult(
            graph=p.graph, scores=scores.cpu().numpy(), n_examples=n, steps=steps, metric=metric,
            metric_clean=float(np.mean([m_clean[i] for i in idx])),
            metric_corrupt=float(np.mean([m_corrupt[i] for i in idx])),
            seconds=time.perf_counter() - t0, chunk_rows=rows_per_chunk, n_chunks=n_chunks,
            targets=[targets[i] for i in idx], foils=[foils[i] for i in idx], budget=budget,
            peak_bytes=peak.peak,
        )


def _round_up(n: int) -> str:
    """A budget a user can write, at least ``n`` bytes: ``1.3GiB`` / ``600MiB``."""
    if n >= 2**30:
        return f"{math.ceil(n / 2**30 * 10) / 10:g}GiB"
    return f"{math.ceil(n / 2**20 / 10) * 10}MiB"


def _free_cache(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":  # pragma: no cover - GPU only
        torch.cuda.empty_cache()


class _PeakMemory:
    """Peak allocated GPU memory while the block runs, above the level at entry (None on a CPU,
    where a process's peak resident set cannot be reset)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, None

    def __enter__(self):
        if self.device.type == "cuda":  # pragma: no cover - GPU only
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":  # pragma: no cover - GPU only
            self.peak = int(torch.cuda.max_memory_allocated(self.device) - self.base)


class _Reducer:
    """Turns one chunk's gradients into destination-input gradients summed per example, and
    contracts them with the examples' activation differences (called from inside the backward
    pass, layer by layer, so each layer's gradients are dropped as soon as they are used)."""

    def __init__(self, p: Parts, info: dict[int, dict], segs: list[tuple[int, int, int]], scores: torch.Tensor):
        self.p, self.info, self.segs, self.scores = p, info, segs, scores

    def _contract(self, n_up: int, cols: slice | int, e: int, G: torch.Tensor) -> None:
        """scores[:n_up, cols] += sum_{s,d} delta[u, s, d] G[v, s, d] (G: (V, s, D) or (s, D))."""
        delta = self.info[e]["delta"][:n_up]
        u, s, d = delta.shape
        if G.dim() == 2:
            self.scores[:n_up, cols] += (delta.reshape(u, s * d) @ G.reshape(s * d)).to(torch.float64)
        else:
            self.scores[:n_up, cols] += (delta.reshape(u, s * d) @ G.reshape(G.shape[0], s * d).T).to(torch.float64)

    def logits(self, gxf: torch.Tensor) -> None:
        p = self.p
        gxf = gxf.to(p.cdt)
        for e, a, b in self.segs:
            s = self.info[e]["len"]
            self._contract(p.graph.n_sources, p.graph.logits_dest, e, gxf[a:b, :s].sum(0))

    def layer(self, l, x, lq, lk, lv, gq, gk, gv, x2, gy2, cos, sin) -> None:
        p = self.p
        cdt, H, K, rep, dh, D = p.cdt, p.H, p.K, p.rep, p.dh, p.D
        R, S = x.shape[:2]
        x = x.to(cdt)
        w_attn, eps = p.norm("attn_norm", l)
        w_mlp, eps2 = p.norm("mlp_norm", l)
        r = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # (R, S, 1)
        # Per-query-head gradients at the projection outputs, shaped (R, S, n_kv, rep, dh) so a
        # kv head's projection output (R, S, n_kv, 1, dh) broadcasts over its query heads
        # without being copied per head (queries: n_kv = H, rep = 1).
        gq = gq.to(cdt).view(R, S, H, 1, dh)
        gk = undo_rope(gk.to(cdt), cos.to(cdt)[:, None], sin.to(cdt)[:, None]).transpose(1, 2).reshape(R, S, K, rep, dh)
        gv = gv.to(cdt).transpose(1, 2).reshape(R, S, K, rep, dh)
        lins = {"q": lq.to(cdt).view(R, S, H, 1, dh), "k": lk.to(cdt).view(R, S, K, 1, dh),
                "v": lv.to(cdt).view(R, S, K, 1, dh)}
        if p.has("k_norm"):
            wk, epsk = p.norm("k_norm", l)
            gk = rms_vjp(gk, lins["k"], wk, epsk)
        dr2 = (D * r.pow(2))[..., None]  # (R, S, 1, 1)
        gs, cs, Ws = [], [], []
        for which, g in (("q", gq), ("k", gk), ("v", gv)):
            lin = p.mod(f"{which}_proj", l)
            n = H if which == "q" else K
            # c = g . (W_h n) / (D r^2), with W_h n the projection output minus its bias
            dot = (g * lins[which]).sum(-1)
            if lin.bias is not None:
                dot = dot - (g * lin.bias.to(cdt).view(n, 1, dh)).sum(-1)
            cs.append((dot / dr2).reshape(R, S, H))
            gs.append(g.reshape(R, S, H, dh))  # divided by r inside the per-example sum below (no copy)
            Ws.append(p.proj(which, l)[0])
        c = torch.cat(cs, dim=-1)  # (R, S, 3H): small
        inv_r = r[..., 0].reciprocal()  # (R, S)
        W3 = torch.cat(Ws, dim=0)  # (3H, dh, D)
        gm = rms_vjp(gy2.to(cdt), x2.to(cdt), w_mlp, eps2)  # (R, S, D)
        g = p.graph
        cols = g.layer_dests(l)
        for e, a, b in self.segs:
            s = self.info[e]["len"]
            # summed over the example's steps BEFORE widening to D (see module doc)
            w = inv_r[a:b, :s]
            Ssum = torch.cat([torch.einsum("rshi,rs->shi", t[a:b, :s], w) for t in gs], dim=1)  # (s, 3H, dh)
            G3 = torch.einsum("svi,vid->vsd", Ssum, W3) * w_attn
            G3 = G3 - torch.einsum("rsv,rsd->vsd", c[a:b, :s], x[a:b, :s])
            G = torch.cat([G3, gm[a:b, :s].sum(0)[None]], dim=0)  # (3H+1, s, D)
            self._contract(g.mlp_upstream(l), cols, e, G)


def eap_ig(lm: Any, examples: Sequence[Example], steps: int = 100, metric: str = "kl", **kw) -> EapResult:
    """Convenience: ``EapIg(lm).run(...)``."""
    return EapIg(lm).run(examples, steps=steps, metric=metric, **kw)
