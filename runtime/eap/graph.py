"""The computational graph EAP-IG scores (docs/eap_ig.md), for a model shape.

Sources (nodes that write to the residual stream), in this order::

    input, a0.h0 .. a0.h{H-1}, m0, a1.h0 .. a1.h{H-1}, m1, ..., m{L-1}

Destinations (inputs that read the residual stream), in this order::

    per layer l: a{l}.h0<q> .. a{l}.h{H-1}<q>, a{l}.h0<k> .. <k>, a{l}.h0<v> .. <v>, m{l}
    then: logits

With this ordering the sources upstream of any destination are a *prefix* of
the source list (layer l's attention reads ``input`` and layers < l; ``m{l}``
also reads the heads of layer l; ``logits`` reads everything), so a score
matrix ``(n_sources, n_dests)`` plus ``n_upstream[v]`` describes every edge, and
the engine contracts a destination block with a single prefix slice of the
activation differences. Edges are the ``True`` entries of :attr:`Graph.mask`,
enumerated source-major (``numpy.nonzero`` order).

Grouped-query attention is ungrouped: every query head has its own ``<k>`` and
``<v>`` destinations (as TransformerLens' ``ungroup_grouped_query_attention``).

This module is torch-free (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sparkql.plan.sizing import graph_dests, graph_sources  # one count, shared with the memory model


@dataclass(frozen=True)
class Graph:
    n_layers: int
    n_heads: int

    # ---- sizes and index arithmetic -------------------------------------------------
    @property
    def n_sources(self) -> int:
        return graph_sources(self.n_layers, self.n_heads)

    @property
    def n_dests(self) -> int:
        return graph_dests(self.n_layers, self.n_heads)

    @property
    def dests_per_layer(self) -> int:
        return 3 * self.n_heads + 1

    def head_source(self, layer: int, head: int) -> int:
        """Source index of head ``a{layer}.h{head}``."""
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_source(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def qkv_dest(self, layer: int, head: int, which: str) -> int:
        """Destination index of ``a{layer}.h{head}<which>`` (which in q, k, v)."""
        return layer * self.dests_per_layer + "qkv".index(which) * self.n_heads + head

    def mlp_dest(self, layer: int) -> int:
        return layer * self.dests_per_layer + 3 * self.n_heads

    @property
    def logits_dest(self) -> int:
        return self.n_dests - 1

    def layer_dests(self, layer: int) -> slice:
        """Destinations of layer ``layer`` (its q, k, v blocks and its MLP) as a slice."""
        start = layer * self.dests_per_layer
        return slice(start, start + self.dests_per_layer)

    def attn_upstream(self, layer: int) -> int:
        """How many sources (a prefix) the heads of ``layer`` read."""
        return 1 + layer * (self.n_heads + 1)

    def mlp_upstream(self, layer: int) -> int:
        return self.attn_upstream(layer) + self.n_heads

    # ---- names ------------------------------------------------------------------------
    @cached_property
    def sources(self) -> list[str]:
        out = ["input"]
        for l in range(self.n_layers):
            out += [f"a{l}.h{h}" for h in range(self.n_heads)]
            out.append(f"m{l}")
        return out

    @cached_property
    def dests(self) -> list[str]:
        out = []
        for l in range(self.n_layers):
            for which in "qkv":
                out += [f"a{l}.h{h}<{which}>" for h in range(self.n_heads)]
            out.append(f"m{l}")
        out.append("logits")
        return out

    @cached_property
    def n_upstream(self) -> np.ndarray:
        """Per destination, the length of the source prefix it reads."""
        n = np.empty(self.n_dests, dtype=np.int64)
        for l in range(self.n_layers):
            sl = self.layer_dests(l)
            n[sl] = self.attn_upstream(l)
            n[self.mlp_dest(l)] = self.mlp_upstream(l)
        n[self.logits_dest] = self.n_sources
        return n

    @cached_property
    def mask(self) -> np.ndarray:
        """``(n_sources, n_dests)`` bool: True where the edge exists."""
        return np.arange(self.n_sources)[:, None] < self.n_upstream[None, :]

    @property
    def n_edges(self) -> int:
        return int(self.n_upstream.sum())

    @cached_property
    def edge_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(source index, destination index) of every edge, source-major."""
        src, dst = np.nonzero(self.mask)
        return src, dst

    def edge_names(self) -> tuple[np.ndarray, np.ndarray]:
        """Names (src, dst) of every edge, in :attr:`edge_index` order, as object arrays."""
        src, dst = self.edge_index
        return np.asarray(self.sources, dtype=object)[src], np.asarray(self.dests, dtype=object)[dst]

    # ---- nodes (sources and destinations merged: a head is one node with q/k/v ports) --
    @cached_property
    def nodes(self) -> list[str]:
        """Node names: input, a{l}.h{h}, m{l} (in source order), then logits."""
        return self.sources + ["logits"]

    @cached_property
    def source_node(self) -> np.ndarray:
        """Node index of each source (identity: sources come first in :attr:`nodes`)."""
        return np.arange(self.n_sources)

    @cached_property
    def dest_node(self) -> np.ndarray:
        """Node index of each destination (a head's q/k/v ports map to the head's node)."""
        out = np.empty(self.n_dests, dtype=np.int64)
        for l in range(self.n_layers):
            for i, which in enumerate("qkv"):
                for h in range(self.n_heads):
                    out[self.qkv_dest(l, h, which)] = self.head_source(l, h)
            out[self.mlp_dest(l)] = self.mlp_source(l)
        out[self.logits_dest] = len(self.sources)
        return out

    def node_info(self) -> list[tuple[str, str, int | None, int | None]]:
        """(name, kind, layer, head) per node; kind in input | head | mlp | logits."""
        out: list[tuple[str, str, int | None, int | None]] = [("input", "input", None, None)]
        for l in range(self.n_layers):
            out += [(f"a{l}.h{h}", "head", l, h) for h in range(self.n_heads)]
            out.append((f"m{l}", "mlp", l, None))
        out.append(("logits", "logits", None, None))
        return out
