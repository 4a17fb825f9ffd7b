"""bf16 models: activations in bf16, every reduction (interpolation, per-head gradients, the IG
sum over steps, the contraction, the score accumulator) in fp32/fp64. Stated tolerance (measured 1.2%): edge
scores of a bf16 run agree with the fp32 run of the same weights to 5% relative (norm of the
difference over norm of the fp32 scores), and the top 20 edges selected are the same."""

from __future__ import annotations

import numpy as np
import torch

from sparkql.runtime.eap.engine import EapIg, Example
from sparkql.runtime.eap.selection import select
from sparkql.runtime.models.loading import load_model

TOL = 0.05
TOP_N = 20


def _examples(vocab: int):
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(3):
        c = torch.randint(0, vocab, (10,), generator=g)
        x = c.clone()
        x[3] = (x[3] + 5) % vocab
        x[7] = (x[7] + 9) % vocab
        out.append(Example(c.tolist(), x.tolist()))
    return out


def test_bf16_scores_agree_with_fp32(tiny_qwen2):
    fp32 = load_model(tiny_qwen2, "fp32", "cpu")
    bf16 = load_model(tiny_qwen2, "bf16", "cpu")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    exs = _examples(int(fp32.config["vocab_size"]))
    a = EapIg(fp32).run(exs, steps=8, metric="kl", memory="1GiB")
    b = EapIg(bf16).run(exs, steps=8, metric="kl", memory="1GiB")
    assert b.scores.dtype == np.float64  # the accumulator
    rel = np.linalg.norm(b.scores - a.scores) / np.linalg.norm(a.scores)
    print(f"bf16 vs fp32 relative difference {rel:.4f}")
    assert rel < TOL, rel
    sa, sb = select(a.graph, a.scores, TOP_N, 0.0), select(b.graph, b.scores, TOP_N, 0.0)
    src, dst = a.graph.edge_index
    top_a = set(np.argsort(-np.abs(a.scores[src, dst]))[:TOP_N])
    top_b = set(np.argsort(-np.abs(b.scores[src, dst]))[:TOP_N])
    assert top_a == top_b
    assert (sa.edges == sb.edges).all()
