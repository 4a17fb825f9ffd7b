"""Circuit selection from edge scores (docs/eap_ig.md). Numpy only.

1. Keep the top-n edges by |score| (ties broken by edge order, so the result is
   deterministic).
2. Prune: keep only edges that lie on a path from ``input`` to ``logits`` through
   kept edges. A head (or MLP) node is reached when any of its input ports
   (q/k/v for heads) has a kept edge from a reached source; a node reaches the
   logits when any of its kept out-edges goes into a node that does. Edges whose
   source is not reached from ``input`` or whose destination node does not reach
   ``logits`` are dropped; repeated until nothing changes.
3. Simplify: of those, keep edges with |score| >= tau, and prune again.

Head score (for ``top K``): the sum of |score| over the kept edges into the
head (its q, k, v inputs) and out of it. Every node gets the same kind of
score (input: out-edges only, logits: in-edges only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparkql.runtime.eap.graph import Graph


@dataclass
class Selection:
    edges: np.ndarray
    """(n_sources, n_dests) bool: the circuit's edges."""
    nodes: np.ndarray
    """(n_nodes,) bool over :attr:`Graph.nodes`: nodes with at least one kept edge."""
    node_scores: np.ndarray
    """(n_nodes,) float64: sum of |score| over kept edges in and out of the node."""

    def heads(self, graph: Graph) -> list[tuple[int, int, float]]:
        """(layer, head, head score) of the circuit's heads, by layer and head."""
        out = []
        for l in range(graph.n_layers):
            for h in range(graph.n_heads):
                i = graph.head_source(l, h)
                if self.nodes[i]:
                    out.append((l, h, float(self.node_scores[i])))
        return out


def top_n_edges(graph: Graph, scores: np.ndarray, n: int) -> np.ndarray:
    """Mask of the ``n`` edges with the largest |score| (ties: earlier edge first)."""
    src, dst = graph.edge_index
    mag = np.abs(scores[src, dst])
    keep = np.zeros(graph.mask.shape, dtype=bool)
    if n <= 0:
        return keep
    order = np.lexsort((np.arange(mag.size), -mag))[:n]
    keep[src[order], dst[order]] = True
    return keep


def prune(graph: Graph, edges: np.ndarray) -> np.ndarray:
    """Drop edges not on an ``input`` -> ``logits`` path until nothing changes."""
    edges = edges & graph.mask
    dest_node = graph.dest_node
    n_nodes = len(graph.nodes)
    logits_node = n_nodes - 1
    while True:
        # forward: which sources are reached from input (sources are in topological order)
        reached = np.zeros(graph.n_sources, dtype=bool)
        reached[0] = True
        for u in range(1, graph.n_sources):
            # every kept edge into u's ports comes from sources before u, already decided
            ports = dest_node == u
            reached[u] = bool((edges[:, ports] & reached[:, None]).any())
        # backward: which nodes reach logits (reverse topological order)
        reaches = np.zeros(n_nodes, dtype=bool)
        reaches[logits_node] = True
        for u in range(graph.n_sources - 1, -1, -1):
            reaches[u] = bool(edges[u][reaches[dest_node]].any())
        new = edges & reached[:, None] & reaches[dest_node][None, :]
        if np.array_equal(new, edges):
            return new
        edges = new


def node_scores(graph: Graph, scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per node: sum of |score| over kept edges into it (all its ports) and out of it."""
    mag = np.where(edges, np.abs(scores), 0.0)
    out = np.zeros(len(graph.nodes), dtype=np.float64)
    out[: graph.n_sources] += mag.sum(1)
    np.add.at(out, graph.dest_node, mag.sum(0))
    return out


def select(graph: Graph, scores: np.ndarray, top_n: int, tau: float) -> Selection:
    """Top-n, prune, tau-simplify, prune (docs/eap_ig.md)."""
    edges = prune(graph, top_n_edges(graph, scores, top_n))
    if tau > 0:
        edges = prune(graph, edges & (np.abs(scores) >= tau))
    nodes = np.zeros(len(graph.nodes), dtype=bool)
    nodes[: graph.n_sources] |= edges.any(1)
    np.logical_or.at(nodes, graph.dest_node, edges.any(0))
    return Selection(edges=edges, nodes=nodes, node_scores=node_scores(graph, scores, edges))
