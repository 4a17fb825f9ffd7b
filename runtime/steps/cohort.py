"""Handler of ``cohort`` steps: emergent heads across a checkpoint series, beside the reward curve.

Writes ``cohort_members`` (the series analysed), ``cohort_checkpoints`` (per
checkpoint: n_active, newly_activated, maintained, reward), ``cohort_heads``
(per head: origin, cohort, activation_frequency, survives) and ``rewards``
(the training log). Definitions: sparkql/store/cohorts.py.

Rewards come from each checkpoint directory's ``trainer_state.json``
(``log_history``, written by the HF Trainer and so by TRL's trainers). Every
checkpoint's file repeats the history up to its own step, so each checkpoint
contributes only the entries after the previous checkpoint that had a file:
the union is the whole curve, once. The reward *at* a checkpoint is the mean
of the chosen key over the logging window since the previous checkpoint
(one logged value is noisy; the window is what the checkpoint was trained
on), or the last value logged at or before it when the window is empty.

The key is ``cohort SET with reward = "KEY"`` when the study names one (any ``log_history`` key),
else sparkql.store.cohorts.pick_reward_key: TRL's accuracy reward, its total reward, another
reward, SFT's ``mean_token_accuracy``, then the loss. A checkpoint without its own
trainer_state.json gets a reward only when a later checkpoint's log covers its step; otherwise
NULL (never the previous checkpoint's value), and the step's summary names it.

No torch here: the step reads only the store and JSON files.
"""

from __future__ import annotations

from pathlib import Path

from sparkql.errors import SparkError, known_names_hint
from sparkql.plan.steps import CohortSpec, ModelRef, Step
from sparkql.runtime.execution.context import RunContext, StepOutput
from sparkql.runtime.models.checkpoint import TRAINER_STATE, numeric_items, read_log_history, series_log
from sparkql.store.cohorts import Checkpoint, checkpoint_rows, head_rows, pearson, pick_reward_key

__all__ = ["read_log_history", "reward_rows", "reward_at_checkpoints", "choose_reward_key", "run_cohort"]


def reward_rows(series: list[tuple[str, int | None, Path | None]]) -> list[dict]:
    """``rewards`` rows (model_id, step, key, value) for a series of (model_id, step, dir),
    each log entry once, attributed to the first checkpoint whose file holds it."""
    rows: list[dict] = []
    covered = -1  # last log step already taken from an earlier checkpoint's file
    for model_id, ck_step, d in series:
        newest = covered
        for e in read_log_history(d):
            s = e.get("step")
            if not isinstance(s, int) or s <= covered or (ck_step is not None and s > ck_step):
                continue
            newest = max(newest, s)
            for k, v in numeric_items(e):
                rows.append({"model_id": model_id, "step": s, "key": k, "value": v})
        covered = newest
    return rows


def reward_at_checkpoints(rows: list[dict], key: str | None, steps: list[int | None],
                          has_log: list[bool] | None = None) -> list[float | None]:
    """Mean of ``key`` over (previous checkpoint, this checkpoint]; else the last value before.
    A checkpoint without its own log (``has_log`` False) gets a value only when the logs read reach
    its step; otherwise None, not the previous checkpoint's value."""
    if key is None:
        return [None] * len(steps)
    curve = sorted((r["step"], r["value"]) for r in rows if r["key"] == key)
    logged_to = max((r["step"] for r in rows), default=-1)
    out: list[float | None] = []
    prev = -1
    for i, s in enumerate(steps):
        if s is None or (has_log is not None and not has_log[i] and logged_to < s):
            out.append(None)
            if s is not None:
                prev = s
            continue
        window = [v for st, v in curve if prev < st <= s]
        if window:
            out.append(sum(window) / len(window))
        else:
            before = [v for st, v in curve if st <= s]
            out.append(before[-1] if before else None)
        prev = s
    return out


def choose_reward_key(requested: str | None, rows: list[dict], series: str) -> str | None:
    """The study's ``with reward = "KEY"`` (checked against what was logged), else the default."""
    keys = {r["key"] for r in rows}
    if requested is None:
        return pick_reward_key(keys)
    if requested not in keys:
        if not keys:
            raise SparkError(f'cohort with reward = "{requested}": no checkpoint of {series} has a trainer_state.json log',
                             hint="the reward curve comes from the log_history the HF Trainer (and TRL) writes into "
                                  "every checkpoint")
        raise SparkError(f'cohort with reward = "{requested}": the checkpoints of {series} log no such key',
                         hint=known_names_hint(requested, keys, "logged keys"))
    return requested


def _heads_by_circuit(ctx: RunContext, circuit_ids: list[str]) -> dict[str, frozenset[tuple[int, int]]]:
    """Circuit heads of several circuits in one query; a circuit with no ``circuits`` row is an error."""
    known = {r[0] for r in ctx.query("SELECT circuit_id FROM circuits WHERE list_contains(?, circuit_id)", [circuit_ids])}
    missing = [c for c in circuit_ids if c not in known]
    if missing:
        raise RuntimeError(f"circuit {missing[0][:12]} has no results in the store (did its step run?)")
    rows = ctx.query(
        "SELECT circuit_id, layer, head FROM nodes "
        "WHERE list_contains(?, circuit_id) AND kind = 'head' AND in_circuit",
        [circuit_ids],
    )
    out: dict[str, set[tuple[int, int]]] = {c: set() for c in circuit_ids}
    for c, l, h in rows:
        out[c].add((int(l), int(h)))
    return {c: frozenset(v) for c, v in out.items()}


def _model_dirs(ctx: RunContext, refs: list[ModelRef]) -> list[Path | None]:
    """Checkpoint directories: the ones load_model recorded, else the paths themselves when local."""
    got = dict(ctx.query("SELECT model_id, dir FROM models WHERE list_contains(?, model_id)",
                         [[r.model_id for r in refs]]))
    out: list[Path | None] = []
    for r in refs:
        if got.get(r.model_id):
            out.append(Path(got[r.model_id]))
        elif not r.path.startswith("zoo:"):
            out.append(Path(r.path))
        else:
            out.append(None)
    return out


def run_cohort(step: Step, ctx: RunContext) -> StepOutput:
    spec: CohortSpec = step.spec  # type: ignore[assignment]
    heads_of = _heads_by_circuit(ctx, [spec.base_circuit_key] + [m.circuit_key for m in spec.series])
    base = heads_of[spec.base_circuit_key]
    series = [Checkpoint(i, m.model.step, heads_of[m.circuit_key]) for i, m in enumerate(spec.series)]
    ck = checkpoint_rows(base, series)
    hd = head_rows(base, series)

    dirs = _model_dirs(ctx, [m.model for m in spec.series])
    rew = reward_rows([(m.model.model_id, m.model.step, d) for m, d in zip(spec.series, dirs)])
    series_name = spec.series[0].model.name if spec.series else spec.name
    key = choose_reward_key(spec.reward, rew, series_name)
    has_log = [d is not None and (d / TRAINER_STATE).is_file() for d in dirs]
    rewards = reward_at_checkpoints(rew, key, [m.model.step for m in spec.series], has_log)
    corr = pearson(rewards, [r["newly_activated"] for r in ck])
    no_log = [m.model.label for m, ok in zip(spec.series, has_log) if not ok] if any(has_log) else []
    log = series_log([(m.model.label, d) for m, d in zip(spec.series, dirs) if d is not None])
    if no_log:
        ctx.log(f"warning: cohort {spec.name}: no trainer_state.json in {', '.join(no_log)}")
    if log.foreign:
        ctx.log(f"warning: cohort {spec.name}: {', '.join(log.foreign)} belong to another run than {log.reference} "
                "(their log_history does not extend the others')")

    members = [
        {
            "cohort_key": step.key, "set_name": spec.name, "idx": i, "model_id": m.model.model_id,
            "step": m.model.step, "circuit_id": m.circuit_key, "set_key": m.set_key,
            "base_model_id": spec.base.model_id, "base_circuit_id": spec.base_circuit_key,
        }
        for i, m in enumerate(spec.series)
    ]
    checkpoints = [
        {
            "cohort_key": step.key, "set_name": spec.name, "model_id": m.model.model_id,
            "circuit_id": m.circuit_key, "reward": rw, "reward_key": key, **row,
        }
        for m, row, rw in zip(spec.series, ck, rewards)
    ]
    heads = [{"cohort_key": step.key, "set_name": spec.name, **row} for row in hd]
    model_ids = sorted({r["model_id"] for r in rew})

    def replace_rewards(con) -> None:
        # The same checkpoints may be analysed by several cohort steps (two datasets'
        # circuits): their training log is stored once.
        if model_ids:
            con.execute("DELETE FROM rewards WHERE list_contains(?, model_id)", [model_ids])

    emergent = [h for h in hd if h["origin"] == "emergent"]
    return StepOutput(
        tables={"cohort_members": members, "cohort_checkpoints": checkpoints, "cohort_heads": heads, "rewards": rew},
        apply=replace_rewards,
        summary={
            "checkpoints": len(series),
            "base_heads": len(base),
            "emergent_heads": len(emergent),
            "surviving": sum(1 for h in emergent if h["survives"]),
            "reward_key": key,
            "reward_newly_corr": None if corr is None else round(corr, 4),
            **({"no_trainer_state": no_log} if no_log else {}),
            **({"other_run": log.foreign} if log.foreign else {}),
        },
    )
