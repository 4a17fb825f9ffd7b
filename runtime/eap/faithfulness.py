"""Faithfulness of a circuit (docs/eap_ig.md).

Run the clean prompt with every edge OUTSIDE the circuit patched to its
corrupted value: destination v reads

    x_v = sum_{u -> v in circuit} z_u  +  sum_{u -> v not in circuit} z'_u

where z_u is u's output in this (patched) run and z'_u its output on the
corrupted prompt, i.e. the running residual plus ``sum_{u not in} (z'_u - z_u)``.
Every query head's q, k and v inputs are separate destinations (ungrouped GQA),
so the patched forward computes each head's query, key and value from its own
residual. Then

    faithfulness = (M_circuit - M_corrupt) / (M_clean - M_corrupt)

with M the metric averaged over examples: the full graph gives exactly M_clean
(1) and the empty graph the corrupted run (0).

The forward here is functional: it reuses the model's own modules (norms,
MLPs, q/k norms, rotary embedding, lm_head) and weights through the family
adapter, and does the attention itself, because the HF attention module cannot
give each query head its own key/value input. ``tests/eap`` checks it
reproduces the HF model's logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from sparkql.runtime.eap.engine import Example, Parts, metric_rows, rotate_half


@dataclass
class Faithfulness:
    metric_clean: float
    metric_corrupt: float
    metric_circuit: float

    @property
    def value(self) -> float | None:
        den = self.metric_clean - self.metric_corrupt
        if den == 0 or not np.isfinite(den):
            return None
        return (self.metric_circuit - self.metric_corrupt) / den


class PatchedForward:
    """A functional forward of a loaded model where every destination can read its own
    patched residual."""

    def __init__(self, lm: Any) -> None:
        self.p = Parts(lm)

    def _w(self, which: str, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q/k/v weights per query head (H, dh, D) and biases, in the model's dtype."""
        p = self.p
        lin = p.mod(f"{which}_proj", layer)
        n = p.H if which == "q" else p.K
        w = lin.weight.view(n, p.dh, -1)
        b = lin.bias.view(n, p.dh) if lin.bias is not None else None
        if which != "q":
            w = w[p.kv_index]
            b = b[p.kv_index] if b is not None else None
        return w, b

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, last: torch.Tensor, notin: torch.Tensor | None = None,
                 z_corrupt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (R, S), last (R,) last real position. ``notin``: (n_sources, n_dests) float, 1 where
        the edge is NOT in the circuit; ``z_corrupt``: (n_sources, R, S, D) source outputs of the
        corrupted run. Returns last-position logits (R, V) and this run's source outputs."""
        p, g = self.p, self.p.graph
        R, S = ids.shape
        dt = p.dtype
        emb = p.embed(ids)
        Z = torch.zeros(g.n_sources, R, S, p.D, dtype=dt, device=p.device)
        Z[0] = emb
        resid = emb.clone()
        pos = torch.arange(S, device=p.device)[None]
        cos, sin = p.mod("rotary")(emb, pos)
        cos, sin = cos[:, None], sin[:, None]  # (1, 1, S, dh)
        causal = torch.ones(S, S, dtype=torch.bool, device=p.device).triu(1)

        def read(n_up: int, cols) -> torch.Tensor:
            """The residual each destination in ``cols`` reads: (R, S, V, D)."""
            if notin is None:
                k = 1 if isinstance(cols, int) else cols.stop - cols.start
                # materialized like the patched case: the HF norms reduce in float32, and a
                # different memory layout would round differently (full graph != clean by ~1e-8)
                return resid[:, :, None].expand(R, S, k, p.D).contiguous()
            diff = z_corrupt[:n_up] - Z[:n_up]
            m = notin[:n_up, cols].to(dt)
            if m.dim() == 1:
                m = m[:, None]
            return (resid[:, :, None] + torch.einsum("ursd,uv->rsvd", diff, m)).contiguous()

        for l in range(p.L):
            H = p.H
            X = read(g.attn_upstream(l), slice(g.layer_dests(l).start, g.layer_dests(l).start + 3 * H))
            n = p.mod("attn_norm", l)(X)  # (R, S, 3H, D)
            qkv = []
            for i, which in enumerate("qkv"):
                w, b = self._w(which, l)
                t = torch.einsum("rshd,hid->rshi", n[:, :, i * H : (i + 1) * H], w)
                if b is not None:
                    t = t + b
                if which == "q" and p.has("q_norm"):
                    t = p.mod("q_norm", l)(t)
                if which == "k" and p.has("k_norm"):
                    t = p.mod("k_norm", l)(t)
                qkv.append(t.transpose(1, 2))  # (R, H, S, dh)
            q, k, v = qkv
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            attn = p.mod("attn", l)
            att = (q @ k.transpose(-1, -2)) * attn.scaling
            mask = causal
            window = _sliding_window(p.lm.config, l)
            if window is not None and S > window:  # as transformers: key j visible from i iff i - window < j <= i
                i = torch.arange(S, device=p.device)
                mask = causal | (i[None, :] <= i[:, None] - window)
            att = att.masked_fill(mask, torch.finfo(att.dtype).min)
            att = torch.softmax(att, dim=-1, dtype=torch.float32).to(dt)
            z = att @ v  # (R, H, S, dh)
            wo = p.mod("o_proj", l).weight.view(p.D, H, p.dh)
            heads = torch.einsum("rhsi,dhi->hrsd", z, wo)
            a0 = g.head_source(l, 0)
            Z[a0 : a0 + H] = heads
            resid = resid + heads.sum(0)
            bo = p.mod("o_proj", l).bias
            if bo is not None:
                resid = resid + bo
            xm = read(g.mlp_upstream(l), g.mlp_dest(l))[:, :, 0]
            out = p.mod("mlp", l)(p.mod("mlp_norm", l)(xm))
            Z[g.mlp_source(l)] = out
            resid = resid + out
        xf = read(g.n_sources, g.logits_dest)[:, :, 0]
        hf = p.mod("final_norm")(xf)
        rows = torch.arange(R, device=p.device)
        logits = p.mod("lm_head")(hf[rows, last])
        return logits, Z


def _sliding_window(config: dict, layer: int) -> int | None:
    """The attention window of ``layer`` (Mistral: every layer; Qwen2/3: layers typed
    ``sliding_attention``), None for full causal attention."""
    window = config.get("sliding_window")
    if not window:
        return None
    types = config.get("layer_types")
    if types:
        return int(window) if types[layer] == "sliding_attention" else None
    return int(window) if config.get("model_type") == "mistral" else None


def faithfulness(lm: Any, examples: Sequence[Example], in_circuit: np.ndarray, metric: str,
                 targets: Sequence[int], foils: Sequence[int], batch: int | None = None, memory=None,
                 log=None) -> Faithfulness:
    """Normalized faithfulness of the circuit ``in_circuit`` ((n_sources, n_dests) bool).

    Examples run in batches sized to the memory budget ``memory`` (bytes or ``2GiB``; None: the
    default budget) by :func:`sparkql.plan.sizing.faithfulness_batch`, unless ``batch`` is given;
    three forward passes per batch (clean, corrupted, patched)."""
    from sparkql.plan.sizing import default_budget, faithfulness_batch, faithfulness_row_bytes, fmt_bytes, shape_from_config
    from sparkql.runtime.eap.engine import available_memory, parse_memory

    fw = PatchedForward(lm)
    p = fw.p
    if batch is None:
        shape = shape_from_config(p.lm.config, elem=torch.finfo(p.dtype).bits // 8)
        smax = max(len(e.clean) for e in examples)
        if isinstance(memory, str):
            budget = parse_memory(memory)
        else:
            budget = int(memory) if memory else default_budget(p.device.type, available_memory(p.device))
        batch = faithfulness_batch(shape, smax, len(examples), budget)
        if batch == 1 and len(examples) > 1 and log is not None:
            log(f"note: the memory budget {fmt_bytes(budget)} fits one example per faithfulness pass "
                f"(one needs about {fmt_bytes(faithfulness_row_bytes(shape, smax))})")
    notin = torch.as_tensor(~in_circuit & p.graph.mask, device=p.device)
    sums = np.zeros(3)
    for b0 in range(0, len(examples), batch):
        exs = examples[b0 : b0 + batch]
        R, S = len(exs), max(len(e.clean) for e in exs)
        clean = torch.zeros(R, S, dtype=torch.long, device=p.device)
        corrupt = torch.zeros_like(clean)
        for i, e in enumerate(exs):
            clean[i, : len(e.clean)] = torch.tensor(e.clean)
            corrupt[i, : len(e.corrupt)] = torch.tensor(e.corrupt)
        last = torch.tensor([len(e.clean) - 1 for e in exs], device=p.device)
        t = torch.tensor(list(targets[b0 : b0 + R]), device=p.device)
        f = torch.tensor(list(foils[b0 : b0 + R]), device=p.device)
        with torch.no_grad():
            lc, _ = fw(clean, last)
            lx, zc = fw(corrupt, last)
            lp, _ = fw(clean, last, notin, zc)
        logp_clean = torch.log_softmax(lc.to(torch.float64), -1)
        for j, logits in enumerate((lc, lx, lp)):
            sums[j] += float(metric_rows(logits, metric, logp_clean, t, f).sum())
        del zc
    n = len(examples)
    return Faithfulness(*(sums / n))
