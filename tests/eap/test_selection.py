"""Selection (docs/eap_ig.md) on hand-made score matrices, and pruning against a graph search."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkql.runtime.eap.graph import Graph
from sparkql.runtime.eap.selection import node_scores, prune, select, top_n_edges

G = Graph(n_layers=2, n_heads=2)


def S(edges: dict[tuple[str, str], float]) -> np.ndarray:
    s = np.zeros(G.mask.shape)
    for (u, v), x in edges.items():
        i, j = G.sources.index(u), G.dests.index(v)
        assert G.mask[i, j], (u, v)
        s[i, j] = x
    return s


def kept(sel_edges) -> set[tuple[str, str]]:
    i, j = np.nonzero(sel_edges)
    return {(G.sources[a], G.dests[b]) for a, b in zip(i, j)}


def test_graph_layout_small():
    assert G.sources == ["input", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1"]
    assert G.dests[:7] == ["a0.h0<q>", "a0.h1<q>", "a0.h0<k>", "a0.h1<k>", "a0.h0<v>", "a0.h1<v>", "m0"]
    assert G.dests[-1] == "logits" and G.n_edges == 6 * 1 + 3 + 6 * 4 + 6 + 7


def test_dangling_edges_are_pruned_and_paths_kept():
    scores = S({
        ("input", "a0.h0<k>"): 5.0, ("a0.h0", "m0"): -4.0, ("m0", "logits"): 3.0,  # a path
        ("input", "a0.h1<q>"): 9.0,  # a0.h1 never reaches logits
        ("a1.h0", "logits"): 8.0,  # a1.h0 is never reached from input
        ("input", "a1.h1<v>"): 0.5, ("a1.h1", "m1"): 0.5,  # m1 has no way out
    })
    sel = select(G, scores, top_n=7, tau=0.0)  # the 7 non-zero edges
    assert kept(sel.edges) == {("input", "a0.h0<k>"), ("a0.h0", "m0"), ("m0", "logits")}
    assert [G.nodes[i] for i in np.nonzero(sel.nodes)[0]] == ["input", "a0.h0", "m0", "logits"]
    assert sel.heads(G) == [(0, 0, 9.0)]  # |5| in + |-4| out


def test_top_n_by_magnitude_then_prune():
    scores = S({
        ("input", "logits"): 1.0, ("input", "m0"): -7.0, ("m0", "logits"): 6.0, ("a0.h0", "logits"): 5.0,
        ("input", "a0.h0<q>"): 0.1,
    })
    top3 = top_n_edges(G, scores, 3)
    assert kept(top3) == {("input", "m0"), ("m0", "logits"), ("a0.h0", "logits")}
    # a0.h0's only input edge fell outside the top 3, so its out-edge is pruned
    sel = select(G, scores, top_n=3, tau=0.0)
    assert kept(sel.edges) == {("input", "m0"), ("m0", "logits")}
    sel5 = select(G, scores, top_n=5, tau=0.0)
    assert ("a0.h0", "logits") in kept(sel5.edges) and ("input", "a0.h0<q>") in kept(sel5.edges)


def test_tau_simplify_cascades():
    scores = S({("input", "m0"): 2.0, ("m0", "logits"): 0.05, ("input", "logits"): 0.2,
                ("input", "a1.h0<q>"): 3.0, ("a1.h0", "logits"): -0.3})
    sel = select(G, scores, top_n=100, tau=0.1)  # top_n beyond the edge count: tau decides
    # m0 -> logits is below tau: m0 no longer reaches logits, so input -> m0 goes too
    assert kept(sel.edges) == {("input", "logits"), ("input", "a1.h0<q>"), ("a1.h0", "logits")}
    assert np.isclose(sel.node_scores[G.nodes.index("a1.h0")], 3.3)
    assert np.isclose(sel.node_scores[G.nodes.index("logits")], 0.5)


def test_long_chain_without_exit_is_removed_entirely():
    scores = S({("input", "a0.h0<q>"): 1, ("a0.h0", "a1.h0<v>"): 1, ("a1.h0", "m1"): 1, ("m1", "logits"): 0.01})
    assert kept(select(G, scores, top_n=3, tau=0).edges) == set()
    assert len(kept(select(G, scores, top_n=4, tau=0).edges)) == 4


def _brute_on_path(edges: np.ndarray) -> np.ndarray:
    """Edge u->v is on an input->logits path iff input reaches u and node(v) reaches logits."""
    n = len(G.nodes)
    adj = [set() for _ in range(n)]
    for u, v in zip(*np.nonzero(edges)):
        adj[u].add(int(G.dest_node[v]))
    fwd, stack = {0}, [0]
    while stack:
        for w in adj[stack.pop()]:
            if w not in fwd:
                fwd.add(w)
                stack.append(w)
    radj = [set() for _ in range(n)]
    for u in range(n):
        for w in adj[u]:
            radj[w].add(u)
    bwd, stack = {n - 1}, [n - 1]
    while stack:
        for w in radj[stack.pop()]:
            if w not in bwd:
                bwd.add(w)
                stack.append(w)
    out = np.zeros_like(edges)
    for u, v in zip(*np.nonzero(edges)):
        out[u, v] = u in fwd and int(G.dest_node[v]) in bwd
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=G.n_edges, max_size=G.n_edges))
def test_prune_equals_graph_search(bits):
    edges = np.zeros(G.mask.shape, dtype=bool)
    src, dst = G.edge_index
    edges[src, dst] = bits
    pruned = prune(G, edges)
    assert np.array_equal(pruned, _brute_on_path(edges))
    assert np.array_equal(prune(G, pruned), pruned)


def test_node_scores_sum_in_and_out():
    scores = S({("input", "a0.h0<q>"): -1.0, ("input", "a0.h0<v>"): 2.0, ("a0.h0", "logits"): 4.0})
    ns = node_scores(G, scores, scores != 0)
    assert ns[G.nodes.index("a0.h0")] == 7.0 and ns[0] == 3.0 and ns[-1] == 4.0
