"""Random-head controls: which heads draw ``i`` of ``ablate random ...`` edits. Torch-free.

A draw must be the same on every machine and in every Python, so it uses no PRNG state:
each candidate head gets the sha256 of (seed, draw, layer, head), and the heads with the
smallest hashes are taken. ``random K`` takes K of all the model's query heads;
``random matching SET`` takes, in every layer, as many heads as SET has there, from the
heads of that layer outside SET (a control with the same depth profile as the set).
"""

from __future__ import annotations

import hashlib
from math import comb

Head = tuple[int, int]


def _rank(seed: int, draw: int, head: Head) -> bytes:
    return hashlib.sha256(f"sparkql-control\0{seed}\0{draw}\0{head[0]}\0{head[1]}".encode()).digest()


def draw_heads(n_layers: int, n_heads: int, seed: int, draw: int, count: int | None = None,
               matched: list[Head] | None = None) -> tuple[list[Head], int]:
    """(heads, shortfall): draw ``draw`` of ``count`` heads, or matching ``matched`` layer by layer.

    The shortfall is how many heads could not be drawn because a layer has fewer heads outside
    ``matched`` than ``matched`` has in it (0 normally)."""
    every = [(l, h) for l in range(n_layers) for h in range(n_heads)]
    if count is not None:
        picked = sorted(every, key=lambda x: _rank(seed, draw, x))[:count]
        return sorted(picked), max(0, count - len(every))
    inside = set(matched or [])
    out: list[Head] = []
    short = 0
    for layer in range(n_layers):
        want = sum(1 for l, _ in inside if l == layer)
        pool = [x for x in every if x[0] == layer and x not in inside]
        out += sorted(pool, key=lambda x: _rank(seed, draw, x))[:want]
        short += max(0, want - len(pool))
    return sorted(out), short


def distinct_draws(n_layers: int, n_heads: int, count: int | None = None, matched: list[Head] | None = None) -> int:
    """How many different head sets the draws can produce (draws beyond it repeat one)."""
    if count is not None:
        return comb(n_layers * n_heads, count)
    inside = set(matched or [])
    total = 1
    for layer in range(n_layers):
        want = sum(1 for l, _ in inside if l == layer)
        free = n_heads - want
        total *= comb(free, want) if want <= free else 1
    return total
