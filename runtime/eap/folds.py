"""The folds of ``with folds = K`` (docs/eap_ig.md, selection stability over resamples).

A circuit's pairs (after dropping unusable ones and ``examples = N``) are split into K folds:
each pair is ranked by ``sha256("{seed}:fold:{row id}")`` and the pair at rank r goes to fold
``r mod K``. So the folds differ in size by at most one, the split is the same on every machine
and Python version, depends on the study's ``seed``, and a checkpoint and its base (same rows)
get the same folds. Fold i's scoring uses every pair outside fold i (leave one fold out). Pure
Python: no torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def assign_folds(row_ids: Sequence[str], k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each pair, given the pairs' dataset row ids in order."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rank = sorted(range(len(row_ids)),
                  key=lambda i: (hashlib.sha256(f"{seed}:fold:{row_ids[i]}".encode()).digest(), i))
    out = [0] * len(row_ids)
    for r, i in enumerate(rank):
        out[i] = r % k
    return out
