"""Which steps of a plan can run side by side (``sparkql plan --cluster``), torch- and ray-free.

A *wave* is a set of steps whose dependencies all lie in earlier waves (or are already in the
store): wave 1 can start at once, wave 2 as soon as the steps it needs in wave 1 are done, and
so on. The cluster executor does not wait for a whole wave to finish (a step starts as soon as
its own dependencies are done); waves are the plan-time picture of that parallelism. The
*critical path* is the heaviest chain of dependent steps by the plan's cost estimates: no
number of workers makes a study faster than it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkql.plan.steps import Plan, Step


def step_weight(step: Step) -> float:
    """Relative work of a step from its cost estimate (1 for bookkeeping steps).

    A forward+backward pass over a prompt is counted like generating 32 tokens: both are a few
    hundred milliseconds for a 1.5B model on one GPU. (The run's progress bar weighs steps the
    same way.)
    """
    c = step.cost
    return 1.0 + 32.0 * c.forward_backward + 16.0 * c.forward + float(c.tokens)


@dataclass
class Waves:
    waves: list[list[Step]]
    """Steps still to run, by wave (wave 1 first); steps already done are left out."""
    wave_of: dict[str, int]
    """key -> wave number (1-based), for the steps to run."""
    critical_path: list[Step]
    """The heaviest dependency chain among the steps to run, first step first."""

    @property
    def widest(self) -> int:
        return max((len(w) for w in self.waves), default=0)


def plan_waves(plan: Plan, done: set[str] | frozenset[str] = frozenset()) -> Waves:
    """Waves of the steps of ``plan`` not in ``done`` (plan steps are topologically ordered)."""
    by_key = plan.by_key()
    wave_of: dict[str, int] = {}
    # heaviest chain ending at each step: (total weight, previous key)
    chain: dict[str, tuple[float, str | None]] = {}
    for s in plan.steps:
        if s.key in done:
            continue
        todo_deps = [d for d in s.deps if d not in done and d in by_key]
        wave_of[s.key] = 1 + max((wave_of[d] for d in todo_deps), default=0)
        prev = max(todo_deps, key=lambda d: chain[d][0], default=None)
        chain[s.key] = (step_weight(s) + (chain[prev][0] if prev else 0.0), prev)
    waves: list[list[Step]] = [[] for _ in range(max(wave_of.values(), default=0))]
    for s in plan.steps:
        if s.key in wave_of:
            waves[wave_of[s.key] - 1].append(s)
    path: list[Step] = []
    key = max(chain, key=lambda k: chain[k][0], default=None)
    while key is not None:
        path.append(by_key[key])
        key = chain[key][1]
    return Waves(waves=waves, wave_of=wave_of, critical_path=path[::-1])
