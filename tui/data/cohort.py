"""Queries of the cohort tab: a series' checkpoints, its cohorts and the reward curve."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from sparkql.store.cohorts import pick_reward_key


@dataclass(frozen=True)
class CohortView:
    cohort_key: str
    set_name: str
    series: str | None
    steps: list[int]
    n_active: list[int | None]
    newly_activated: list[int | None]
    maintained: list[int | None]
    reward: list[float | None]  # at each checkpoint: as the cohort step read it, else the curve's last point up to it
    reward_key: str | None
    reward_steps: list[int]
    reward_values: list[float]
    # cohort step -> count of that cohort's heads active at each checkpoint in ``steps``
    stacked: dict[int, list[int]]


def cohort_view(con: duckdb.DuckDBPyConnection, cohort_key: str) -> CohortView:
    cps = con.execute(
        """SELECT cc.step, cc.n_active, cc.newly_activated, cc.maintained, cc.reward, cc.model_id, cc.set_name, m.name,
                  cc.reward_key
           FROM cohort_checkpoints cc LEFT JOIN models m USING (model_id)
           WHERE cc.cohort_key = ? ORDER BY cc.step""",
        [cohort_key],
    ).fetchall()
    if not cps:
        raise KeyError(f"no cohort {cohort_key}")
    steps = [r[0] for r in cps]
    set_name, series = cps[0][6], cps[0][7]
    # Reward curve: the cohort step stores each log entry once, under the first checkpoint whose
    # trainer_state.json holds it, so the whole curve is the union over the series' checkpoints.
    ids = [r[5] for r in cps]
    keys = [r[0] for r in con.execute("SELECT DISTINCT key FROM rewards WHERE list_contains(?, model_id) ORDER BY key",
                                      [ids]).fetchall()]
    # The key the cohort step read the reward from, else the best guess.
    key = cps[-1][8] if cps[-1][8] in keys else pick_reward_key(set(keys))
    if key is not None:
        pts = con.execute("SELECT step, avg(value) FROM rewards WHERE list_contains(?, model_id) AND key = ? "
                          "GROUP BY step ORDER BY step", [ids, key]).fetchall()
    else:
        pts = [(r[0], r[4]) for r in cps if r[4] is not None]
        key = "reward" if pts else None
    # The stacked areas of figure 2 A: emergent heads active at each checkpoint, by cohort.
    stacked_rows = con.execute(
        """SELECT coalesce(cm.step, cm.idx), ch.cohort, count(*)
           FROM cohort_members cm
           JOIN nodes n ON n.circuit_id = cm.circuit_id AND n.kind = 'head' AND n.in_circuit
           JOIN cohort_heads ch ON ch.cohort_key = cm.cohort_key AND ch.layer = n.layer AND ch.head = n.head
           WHERE cm.cohort_key = ? AND ch.cohort IS NOT NULL AND coalesce(ch.origin, 'emergent') = 'emergent'
           GROUP BY ALL""",
        [cohort_key],
    ).fetchall()
    # Reward per checkpoint: the cohort step's own reading, else the last logged value at or before it.
    reward_at = []
    for r in cps:
        if r[4] is not None:
            reward_at.append(r[4])
            continue
        before = [v for s, v in pts if s is not None and s <= r[0]]
        reward_at.append(float(before[-1]) if before else None)
    index = {s: i for i, s in enumerate(steps)}
    stacked: dict[int, list[int]] = {}
    for step, cohort, n in stacked_rows:
        if step in index:
            stacked.setdefault(cohort, [0] * len(steps))[index[step]] = n
    return CohortView(
        cohort_key=cohort_key,
        set_name=set_name,
        series=series,
        steps=steps,
        n_active=[r[1] for r in cps],
        newly_activated=[r[2] for r in cps],
        maintained=[r[3] for r in cps],
        reward=reward_at,
        reward_key=key,
        reward_steps=[p[0] for p in pts],
        reward_values=[float(p[1]) for p in pts],
        stacked=dict(sorted(stacked.items())),
    )
