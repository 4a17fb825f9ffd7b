"""Selection stability: how often a head is selected across a grid of ``top_n`` and ``tau``,
from a circuit's stored edge scores, without recomputing anything. Pure Python (no numpy, no
torch), so the store, the TUI and ``sparkql figures`` can use it.

:func:`select_heads` is the selection of docs/eap_ig.md (top-n by |score|, prune to paths from
``input`` to ``logits``, keep |score| >= tau, prune again) over the ``edges`` table's names:
sources ``input``, ``a{l}.h{h}``, ``m{l}``; destinations ``a{l}.h{h}<q|k|v>``, ``m{l}``,
``logits``. It is written apart from ``sparkql.runtime.eap.selection`` (numpy over the graph's
matrices), and a test checks that both select the same heads.

A head's stability in a set is the share of grid points at which it is in the set: for a
circuit's heads, at which it is in the circuit; for an emergent set (circuit minus the base's
circuit), at which it is in the checkpoint's circuit and not in the base's, both selected at
that grid point. 1.0: the head is selected whatever the cutoffs in the band; a head near the
cutoff shows a fraction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Head = tuple[int, int]
Edge = tuple[str, str, float]

TOP_N_BAND = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
"""Multiples of the study's top_n in the grid: +-30% in steps of 10%."""
TAU_BAND = (0.5, 1.0, 2.0)
"""Multiples of the study's tau in the grid (tau = 0: only 0)."""

_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_MLP = re.compile(r"^m(\d+)$")


def grid(top_n: int, tau: float) -> list[tuple[int, float]]:
    """The (top_n, tau) points around a study's cutoffs."""
    ns = sorted({max(1, round(top_n * f)) for f in TOP_N_BAND})
    taus = sorted({tau * f for f in TAU_BAND}) if tau > 0 else [0.0]
    return [(n, t) for n in ns for t in taus]


def _node(dest: str) -> str:
    """The node a destination belongs to: ``a1.h0<q>`` -> ``a1.h0``."""
    i = dest.find("<")
    return dest if i < 0 else dest[:i]


def _order(node: str) -> tuple:
    """Topological position: input, then per layer its heads and its MLP, then logits."""
    if node == "input":
        return (-1, 0, 0)
    if node == "logits":
        return (1 << 30, 0, 0)
    m = _HEAD.match(node)
    if m:
        return (int(m[1]), 0, int(m[2]))
    m = _MLP.match(node)
    if m:
        return (int(m[1]), 1, 0)
    raise ValueError(f"not a graph node name: {node!r}")


def _prune(kept: list[Edge]) -> list[Edge]:
    """Drop edges not on an input -> logits path until nothing changes."""
    while True:
        nodes = sorted({e[0] for e in kept} | {_node(e[1]) for e in kept} | {"input", "logits"}, key=_order)
        into: dict[str, list[str]] = {}
        out_of: dict[str, list[str]] = {}
        for s, d, _ in kept:
            into.setdefault(_node(d), []).append(s)
            out_of.setdefault(s, []).append(_node(d))
        reached = {"input"}
        for n in nodes:
            if any(s in reached for s in into.get(n, ())):
                reached.add(n)
        reaches = {"logits"}
        for n in reversed(nodes):
            if any(d in reaches for d in out_of.get(n, ())):
                reaches.add(n)
        new = [e for e in kept if e[0] in reached and _node(e[1]) in reaches]
        if len(new) == len(kept):
            return new
        kept = new


def _ranked(edges: Sequence[Edge]) -> list[Edge]:
    """Edges by |score|, largest first; ties by the order given (the graph's edge order)."""
    return [edges[i] for i in sorted(range(len(edges)), key=lambda i: (-abs(edges[i][2]), i))]


def _heads(kept: Iterable[Edge]) -> set[Head]:
    out = set()
    for s, d, _ in kept:
        for n in (s, _node(d)):
            m = _HEAD.match(n)
            if m:
                out.add((int(m[1]), int(m[2])))
    return out


def select_heads(edges: Sequence[Edge], top_n: int, tau: float, *, ranked: bool = False) -> set[Head]:
    """The heads of the circuit selected from ``edges`` (src, dst, score) at (top_n, tau).
    ``ranked``: the edges are already sorted by :func:`_ranked` (for a grid, sort once)."""
    order = edges if ranked else _ranked(edges)
    kept = _prune(list(order[:max(top_n, 0)]))
    if tau > 0:
        kept = _prune([e for e in kept if abs(e[2]) >= tau])
    return _heads(kept)


def stability(edges: Sequence[Edge], top_n: int, tau: float, base_edges: Sequence[Edge] | None = None
              ) -> tuple[dict[Head, float], int]:
    """({head: share of grid points where it is selected}, number of grid points).

    Without ``base_edges``: membership of the circuit. With them: membership of the emergent
    set, the circuit minus the base's circuit at the same grid point. Heads never selected
    are left out."""
    points = grid(top_n, tau)
    ranked = _ranked(edges)
    base_ranked = _ranked(base_edges) if base_edges is not None else None
    counts: dict[Head, int] = {}
    for n, t in points:
        heads = select_heads(ranked, n, t, ranked=True)
        if base_ranked is not None:
            heads -= select_heads(base_ranked, n, t, ranked=True)
        for h in heads:
            counts[h] = counts.get(h, 0) + 1
    return {h: c / len(points) for h, c in sorted(counts.items())}, len(points)
