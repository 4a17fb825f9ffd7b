"""Selection stability from stored edges (sparkql.store.stability): its selection agrees with the
runtime's (numpy over the graph) on random scores, and the grid shares are what they say."""

from __future__ import annotations

import numpy as np
import pytest

from sparkql.runtime.eap.graph import Graph
from sparkql.runtime.eap.selection import select
from sparkql.store.stability import grid, select_heads, stability


def _edges(graph: Graph, scores: np.ndarray) -> list[tuple[str, str, float]]:
    src, dst = graph.edge_index
    names_s, names_d = graph.edge_names()
    return [(str(a), str(b), float(scores[i, j])) for a, b, i, j in zip(names_s, names_d, src, dst)]


@pytest.mark.parametrize("seed", range(12))
def test_selection_from_stored_edges_matches_the_runtime(seed):
    rng = np.random.default_rng(seed)
    g = Graph(n_layers=3, n_heads=3)
    # heavy-tailed scores, like EAP-IG's: a few large edges, many small
    scores = np.where(g.mask, rng.standard_t(2, size=g.mask.shape), 0.0)
    edges = _edges(g, scores)
    for top_n in (3, 8, 20, 45, g.n_edges):
        for tau in (0.0, 0.5, 2.0):
            want = {(l, h) for l, h, _ in select(g, scores, top_n, tau).heads(g)}
            assert select_heads(edges, top_n, tau) == want, (top_n, tau)


def test_grid_is_plus_minus_30_percent():
    assert grid(30, 0.0) == [(n, 0.0) for n in (21, 24, 27, 30, 33, 36, 39)]
    assert [t for n, t in grid(100, 0.1) if n == 100] == [0.05, 0.1, 0.2]


def test_shares_count_grid_points_and_emergent_subtracts_the_base_at_each_point():
    rng = np.random.default_rng(3)
    g = Graph(n_layers=3, n_heads=3)
    a = _edges(g, np.where(g.mask, rng.standard_t(2, size=g.mask.shape), 0.0))
    b = _edges(g, np.where(g.mask, rng.standard_t(2, size=g.mask.shape), 0.0))
    shares, n = stability(a, 20, 0.0)
    points = grid(20, 0.0)
    assert n == len(points)
    for head, share in shares.items():
        assert share == sum(head in select_heads(a, p, t) for p, t in points) / n
    emergent, _ = stability(a, 20, 0.0, base_edges=b)
    for head, share in emergent.items():
        assert share == sum(head in select_heads(a, p, t) - select_heads(b, p, t) for p, t in points) / n
    # the study's own point is in the grid: every head of the circuit at (20, 0) has a share
    assert select_heads(a, 20, 0.0) <= set(shares)
