"""Cohort analysis across a checkpoint series (docs/store.md, cohorts; paper section 3.2, figures 2-3, 6-9).

How we read the paper's figure 2 (and say so, because users compare numbers):

* A head is **active** at a checkpoint when it is in that checkpoint's circuit
  (the heads left after EAP-IG selection, docs/eap_ig.md).
* **Newly activated** at checkpoint t (the blue line, "the absolute number of
  newly activated heads compared to the base model") = active at t and *not*
  in the base model's circuit: the emergent set of t, counted afresh at every
  checkpoint, so it rises and falls as heads come and go.
* **Maintained** at t (the red dashed line, "the number of original heads that
  are maintained") = heads of the base circuit still active at t.
* A head's **cohort** = the first checkpoint (its step) at which it was newly
  activated. The stacked areas at t split the newly activated heads of t by
  cohort, so the areas sum to the blue line (view ``cohort_areas``).
* **Activation frequency** = the share of the series' checkpoints at which the
  head is active (emergent heads: emergent; base heads: maintained), the
  colour intensity of figure 2 C. **Survives** = active at the final
  checkpoint (the black outline).
* Base heads appear in the per-head table too (``origin = 'base'``, cohort
  NULL): figure 2 C draws them in red, fading as they are deactivated.

The counts come from the circuits themselves (circuit heads minus base circuit
heads), not from a ``top K``-truncated emergent set.

This module is the Python reference; the SQL views ``cohort_checkpoints_live``
and ``cohort_heads_live`` (sparkql/store/schema.py) compute the same from the
store, and a property test checks that they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

Head = tuple[int, int]


@dataclass(frozen=True)
class Checkpoint:
    idx: int
    step: int | None
    heads: frozenset[Head]
    """Heads of this checkpoint's circuit."""

    @property
    def at(self) -> int:
        """The step, or the position when the directory name had no step."""
        return self.step if self.step is not None else self.idx


def checkpoint_rows(base: Iterable[Head], series: Sequence[Checkpoint]) -> list[dict]:
    """Per checkpoint: n_active, newly_activated, maintained, n_base."""
    base = frozenset(base)
    return [
        {
            "idx": c.idx,
            "step": c.at,
            "n_active": len(c.heads),
            "newly_activated": len(c.heads - base),
            "maintained": len(c.heads & base),
            "n_base": len(base),
        }
        for c in series
    ]


def head_rows(base: Iterable[Head], series: Sequence[Checkpoint]) -> list[dict]:
    """Per head (every base head and every head emergent somewhere in the series):
    origin, cohort, activation_frequency, survives, n_active. Sorted by layer, head."""
    base = frozenset(base)
    if not series:
        return []
    last = series[-1]
    emergent: dict[Head, int] = {}
    for c in series:
        for h in sorted(c.heads - base):
            emergent.setdefault(h, c.at)
    rows = []
    for h in sorted(base | set(emergent)):
        n = sum(1 for c in series if h in c.heads)
        rows.append(
            {
                "layer": h[0],
                "head": h[1],
                "origin": "base" if h in base else "emergent",
                "cohort": None if h in base else emergent[h],
                "activation_frequency": n / len(series),
                "survives": h in last.heads,
                "n_active": n,
            }
        )
    return rows


def cohort_sizes(base: Iterable[Head], series: Sequence[Checkpoint]) -> list[dict]:
    """The stacked areas: per checkpoint and cohort, how many of the cohort's heads are active."""
    base = frozenset(base)
    cohort = {(r["layer"], r["head"]): r["cohort"] for r in head_rows(base, series) if r["origin"] == "emergent"}
    out: dict[tuple[int, int], int] = {}
    for c in series:
        for h in c.heads - base:
            out[(c.at, cohort[h])] = out.get((c.at, cohort[h]), 0) + 1
    return [{"step": s, "cohort": k, "n_heads": n} for (s, k), n in sorted(out.items())]


def pearson(xs: Sequence[float | None], ys: Sequence[float | None]) -> float | None:
    """Pearson correlation over the pairs where both are known; None with < 2 pairs or no variance."""
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if x is not None and y is not None
             and not math.isnan(float(x)) and not math.isnan(float(y))]
    if len(pairs) < 2:
        return None
    n = len(pairs)
    mx = sum(p[0] for p in pairs) / n
    my = sum(p[1] for p in pairs) / n
    sxx = sum((p[0] - mx) ** 2 for p in pairs)
    syy = sum((p[1] - my) ** 2 for p in pairs)
    if sxx == 0 or syy == 0:
        return None
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pairs)
    return sxy / math.sqrt(sxx * syy)


REWARD_KEYS_EXACT = ["rewards/accuracy_reward/mean", "rewards/accuracy_reward"]


def pick_reward_key(keys: set[str]) -> str | None:
    """The ``log_history`` key read as the reward when the study names none (``cohort SET with
    reward = "KEY"`` overrides it): TRL's accuracy reward, else its total reward, else another
    reward, else SFT's ``mean_token_accuracy`` (TRL's SFTTrainer logs it; a falling loss
    correlated with newly activated heads would read backwards), else the loss. The one picker:
    the cohort step and the TUI use it (figures read the stored key)."""
    for k in REWARD_KEYS_EXACT:
        if k in keys:
            return k
    acc = sorted(k for k in keys if k.startswith("rewards/") and "accuracy" in k and not k.endswith("/std"))
    if acc:
        return acc[0]
    if "reward" in keys:
        return "reward"
    others = sorted(k for k in keys if k.startswith("rewards/") and not k.endswith("/std"))
    if others:
        return others[0]
    for k in ("train/reward", "mean_token_accuracy", "loss", "train_loss"):
        if k in keys:
            return k
    return None
