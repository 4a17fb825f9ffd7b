"""A small, hand-made results store for the TUI's tests and snapshots.

It follows the shapes ``sparkql run`` writes (sparkql/store/schema.py): a base
model and a GRPO series of five checkpoints (steps 100..500) of a 6-layer,
4-head model, a circuit on ``aime24`` for each (nodes and every edge of the
docs/eap_ig.md graph), the emergent set per checkpoint, the cohort tables
derived from those sets exactly as the method defines them, a reward curve,
and an intact eval beside an ablation variant with samples and metrics.

Everything is deterministic (no clock, no randomness), so snapshots are
stable. The expected facts the tests assert are exported as constants.
"""

from __future__ import annotations

import datetime as dt
import os
from math import comb
from pathlib import Path

import duckdb

from sparkql.store.schema import SCHEMA_VERSION, TABLES

N_LAYERS = 6
N_HEADS = 4
STEPS = [100, 200, 300, 400, 500]
DATASET = "aime24"
SET_NAME = "emergent_grpo"
COHORT_KEY = "cohort-emergent_grpo"
RUN_ID = "run-0001"
STUDY = "studies/toy.spark"

BASE_HEADS = {(0, 1), (1, 2), (2, 0), (2, 2), (3, 3), (4, 1), (5, 2)}
# Base heads that the series drops, and from which step on.
BASE_DROPPED_FROM = {(2, 2): 300, (4, 1): 400}
# Emergent heads: (first step active, last step active or None = to the end).
EMERGENT = {
    (1, 0): (100, None),
    (3, 1): (100, 300),
    (4, 3): (200, None),
    (5, 0): (300, None),
    (2, 3): (300, 400),
    (0, 3): (500, None),
}


def model_id(step: int | None) -> str:
    return "m-base" if step is None else f"m-grpo-{step}"


def circuit_id(step: int | None) -> str:
    return "c-base" if step is None else f"c-grpo-{step}"


def heads_at(step: int | None) -> set[tuple[int, int]]:
    """The circuit's heads at a checkpoint (None = base)."""
    if step is None:
        return set(BASE_HEADS)
    kept = {h for h in BASE_HEADS if not (h in BASE_DROPPED_FROM and step >= BASE_DROPPED_FROM[h])}
    new = {h for h, (a, b) in EMERGENT.items() if a <= step and (b is None or step <= b)}
    return kept | new


def head_score(layer: int, head: int, step: int | None) -> float:
    s = 0 if step is None else step // 100
    return round(0.05 + 0.1 * ((layer * 7 + head * 3 + s) % 9), 3)


def graph_edges(n_layers: int, n_heads: int) -> list[tuple[str, str]]:
    """Every edge of the docs/eap_ig.md graph (sources upstream of destinations)."""
    edges = []
    for l in range(n_layers):
        upstream = ["input"] + [f"a{j}.h{h}" for j in range(l) for h in range(n_heads)] + [f"m{j}" for j in range(l)]
        for h in range(n_heads):
            for qkv in "qkv":
                edges += [(u, f"a{l}.h{h}<{qkv}>") for u in upstream]
        edges += [(u, f"m{l}") for u in upstream + [f"a{l}.h{h}" for h in range(n_heads)]]
    sources = ["input"] + [f"a{j}.h{h}" for j in range(n_layers) for h in range(n_heads)] + [f"m{j}" for j in range(n_layers)]
    edges += [(u, "logits") for u in sources]
    return edges


def _edge_score(src: str, dst: str, step: int | None) -> float:
    # A deterministic spread of signed scores.
    v = (sum(map(ord, src)) * 31 + sum(map(ord, dst)) * 17 + (step or 0)) % 2001
    return round((v - 1000) / 10000, 5)


PROBLEMS = [str(i) for i in range(6)]
# Per problem: how many of 4 samples are correct, intact vs ablated.
CORRECT_INTACT = {"0": 4, "1": 3, "2": 0, "3": 1, "4": 4, "5": 2}
CORRECT_ABLATED = {"0": 4, "1": 0, "2": 3, "3": 1, "4": 1, "5": 2}
EVAL_INTACT = "e-intact"
EVAL_ABLATED = "e-ablate"
VARIANT = "ablate emergent_grpo top 3"


def _open_writer(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-write connection with the schema in place.

    The store's own API creates exactly what ``sparkql run`` creates (tables,
    indexes, views, meta.schema_version); without it, the tables alone.
    """
    try:
        from sparkql.store.api import connect
    except ImportError:  # a build without the store API
        con = duckdb.connect(str(path))
        for ddl in TABLES.values():
            con.execute(ddl)
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        return con
    return connect(path, read_only=False)


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    """Append rows (dicts by column name) in one Arrow batch: executemany is row by row.

    Every row must carry the same keys: Arrow takes the columns from the first.
    """
    if not rows:
        return
    assert all(r.keys() == rows[0].keys() for r in rows), f"rows of {table} with different keys"
    try:
        from sparkql.store.write import insert
    except ImportError:
        import pyarrow as pa

        con.register("_batch", pa.Table.from_pylist(rows))
        try:
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _batch")
        finally:
            con.unregister("_batch")
        return
    insert(con, table, rows)


def build_fixture_store(path: str | os.PathLike[str]) -> Path:
    """Create the fixture store at ``path`` (overwriting) and return the path."""
    path = Path(path)
    if path.exists():
        path.unlink()
    con = _open_writer(path)
    try:
        _fill(con)
    finally:
        con.close()
    return path


def _series_rows() -> tuple[list[dict], list[dict], list[dict]]:
    """cohort_checkpoints, cohort_heads and cohort_members rows, from the store's reference code."""
    from sparkql.store.cohorts import Checkpoint, checkpoint_rows, head_rows

    series = [Checkpoint(i, s, frozenset(heads_at(s))) for i, s in enumerate(STEPS)]
    common = {"cohort_key": COHORT_KEY, "set_name": SET_NAME}
    ckpts = [
        {**common, **r, "model_id": model_id(r["step"]), "circuit_id": circuit_id(r["step"]),
         "reward": round(0.2 + 0.1 * r["idx"], 3), "reward_key": "rewards/accuracy_reward"}
        for r in checkpoint_rows(BASE_HEADS, series)
    ]
    heads = [{**common, **r} for r in head_rows(BASE_HEADS, series)]
    members = [
        {**common, "idx": i, "model_id": model_id(s), "step": s, "circuit_id": circuit_id(s), "set_key": f"set-{s}",
         "base_model_id": model_id(None), "base_circuit_id": circuit_id(None)}
        for i, s in enumerate(STEPS)
    ]
    return ckpts, heads, members


def _fill(con: duckdb.DuckDBPyConnection) -> None:
    t0 = dt.datetime(2026, 1, 1, 9, 0, 0)
    _insert(con, "runs", [{
        "run_id": RUN_ID, "study_path": STUDY, "study_text": "circuit aime24 on ckpt[*] diff base",
        "started_at": t0, "finished_at": t0 + dt.timedelta(minutes=7), "status": "done",
        "sparkql_version": "0.1.0", "host": "host", "pid": 1,
    }])
    keys: list[tuple[str, str]] = []

    # Models: a base and a series of checkpoints.
    dims = {"architecture": "qwen2", "n_layers": N_LAYERS, "n_heads": N_HEADS, "n_kv_heads": 2, "head_dim": 8}
    _insert(con, "models", [{"model_id": model_id(None), "name": "base", "label": "base", "path": "models/base", "step": None, **dims}]
            + [{"model_id": model_id(s), "name": "ckpt", "label": f"ckpt[step={s}]", "path": f"runs/grpo/checkpoint-{s}", "step": s, **dims}
               for s in STEPS])

    # Circuits with nodes and every edge.
    all_edges = graph_edges(N_LAYERS, N_HEADS)
    for s in [None] + STEPS:
        cid = circuit_id(s)
        active = heads_at(s)
        keys.append((cid, "circuit"))
        end = {"layer": None, "head": None, "score": None, "in_circuit": True}
        node_rows = [
            {"circuit_id": cid, "node": "input", "kind": "input", **end},
            {"circuit_id": cid, "node": "logits", "kind": "logits", **end},
        ]
        for l in range(N_LAYERS):
            node_rows.append({"circuit_id": cid, "node": f"m{l}", "layer": l, "head": None, "kind": "mlp", "score": 0.1 * l, "in_circuit": True})
            for h in range(N_HEADS):
                on = (l, h) in active
                score = head_score(l, h, s) if on else round(head_score(l, h, s) / 10, 4)
                node_rows.append({"circuit_id": cid, "node": f"a{l}.h{h}", "layer": l, "head": h, "kind": "head", "score": score, "in_circuit": on})
        _insert(con, "nodes", node_rows)
        names_on = {f"a{l}.h{h}" for l, h in active}

        def in_circ(u: str, v: str) -> bool:
            def ok(n: str) -> bool:
                return not n.startswith("a") or n.split("<")[0] in names_on

            return ok(u) and ok(v) and abs(_edge_score(u, v, s)) > 0.03

        edge_rows = [{"circuit_id": cid, "src": u, "dst": v, "score": _edge_score(u, v, s), "in_circuit": in_circ(u, v)} for u, v in all_edges]
        _insert(con, "edges", edge_rows)
        faith = round(0.8 + 0.02 * (s or 0) / 100, 3)
        _insert(con, "circuits", [{
            "circuit_id": cid, "model_id": model_id(s), "dataset": DATASET, "method": "eap_ig", "ig_steps": 5, "top_n": 200,
            "tau": 0.0, "metric": "kl", "n_examples": 8, "n_dropped": 0, "corrupt": "digits", "think": True,
            "n_edges": len(all_edges), "n_edges_in_circuit": sum(r["in_circuit"] for r in edge_rows),
            "n_heads_in_circuit": len(active), "faithfulness": faith, "metric_clean": 1.0, "metric_corrupt": 0.0,
            "metric_circuit": faith, "seconds": 3.5,
        }])

    # Emergent sets: in the checkpoint's circuit, not in the base's; ranked by score.
    for s in STEPS:
        key = f"set-{s}"
        keys.append((key, "diff"))
        emergent = sorted(heads_at(s) - BASE_HEADS, key=lambda lh: (-head_score(*lh, s), lh))
        _insert(con, "head_sets", [
            {"set_key": key, "set_name": SET_NAME, "model_id": model_id(s), "layer": l, "head": h,
             "score": head_score(l, h, s), "rank": r + 1, "kind": "diff"}
            for r, (l, h) in enumerate(emergent)
        ])

    # Cohorts (docs/store.md, cohorts), computed by the store's reference implementation.
    keys.append((COHORT_KEY, "cohort"))
    ckpts, heads, members = _series_rows()
    _insert(con, "cohort_checkpoints", ckpts)
    _insert(con, "cohort_heads", heads)
    _insert(con, "cohort_members", members)
    # trainer_state.json log history: each checkpoint's file holds every step so far, and the cohort
    # step stores each entry once, under the first checkpoint that holds it (runtime/steps/cohort.py).
    for prev, s in zip([0] + STEPS, STEPS):
        _insert(con, "rewards",
                [{"model_id": model_id(s), "step": t, "key": "rewards/accuracy_reward", "value": round(0.2 + 0.5 * t / 500 - 0.05 * ((t // 50) % 2), 4)}
                 for t in range(prev + 50, s + 1, 50)]
                + [{"model_id": model_id(s), "step": t, "key": "loss", "value": round(1.0 - t / 1000, 4)}
                   for t in range(prev + 50, s + 1, 50)])

    # An ablation variant of the final checkpoint and evals of both.
    final = model_id(STEPS[-1])
    keys.append(("v-ablate", "intervene"))
    _insert(con, "variants", [{"variant_id": "v-ablate", "model_id": final, "name": VARIANT, "op": "ablate", "factor": 0.0,
                               "heads": ["L4H3", "L5H0", "L1H0"], "n_heads": 3}])
    for eid, variant, vid, correct in [
        (EVAL_INTACT, "intact", None, CORRECT_INTACT),
        (EVAL_ABLATED, VARIANT, "v-ablate", CORRECT_ABLATED),
    ]:
        keys.append((eid, "generate"))
        _insert(con, "evals", [{
            "eval_id": eid, "model_id": final, "variant": variant, "variant_id": vid, "dataset": DATASET, "n": 4,
            "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "seed": 0, "think": True, "backend": "transformers",
            "n_problems": len(PROBLEMS),
        }])
        rows = []
        for p in PROBLEMS:
            gold = str(10 + int(p))
            for i in range(4):
                ok = i < correct[p]
                answer = gold if ok else str(90 + i)
                text = (
                    f"<think>Problem {p}, sample {i} of {variant}. Let me add the numbers step by step."
                    f"</think> The answer is \\boxed{{{answer}}}."
                )
                rows.append({"eval_id": eid, "problem_id": p, "sample_idx": i, "prompt": f"Problem {p}: what is {p} + 10?",
                             "completion": text, "finish_reason": "stop", "n_tokens": 20 + i, "gold": gold,
                             "extracted": answer, "status": "ok", "correct": ok})
        _insert(con, "samples", rows)
        n = 4
        metric_rows = []
        for k in (1, 4):
            # pass@k per docs/evaluation.md: mean over problems of 1 - C(n-c,k)/C(n,k).
            vals = [1 - comb(n - c, k) / comb(n, k) for c in correct.values()]
            metric_rows.append({"eval_id": eid, "metric": "pass@k", "k": k, "value": round(sum(vals) / len(vals), 6), "stderr": 0.05 + 0.01 * k})
        acc = sum(correct.values()) / (n * len(PROBLEMS))
        metric_rows.append({"eval_id": eid, "metric": "accuracy", "k": None, "value": round(acc, 6), "stderr": 0.04})
        _insert(con, "metrics", metric_rows)

    _insert(con, "steps", [
        {"key": k, "kind": kind, "label": k, "run_id": RUN_ID, "completed_at": t0 + dt.timedelta(seconds=i), "seconds": 1.0}
        for i, (k, kind) in enumerate(keys)
    ])


def build_empty_store(path: str | os.PathLike[str]) -> Path:
    """A DuckDB file with no tables at all."""
    path = Path(path)
    duckdb.connect(str(path)).close()
    return path


def build_old_store(path: str | os.PathLike[str]) -> Path:
    """A store with the tables but no schema_version (older sparkql / not sparkql)."""
    path = Path(path)
    con = duckdb.connect(str(path))
    try:
        for name, ddl in TABLES.items():
            if name != "meta":
                con.execute(ddl)
    finally:
        con.close()
    return path


def build_wide_store(path: str | os.PathLike[str], n_layers: int = 28, n_heads: int = 12) -> Path:
    """One Qwen2.5-1.5B-sized circuit (28 x 12 heads), nodes only: does the map fit 80x24?"""
    path = Path(path)
    if path.exists():
        path.unlink()
    con = _open_writer(path)
    try:
        _insert(con, "models", [{"model_id": "m-wide", "name": "qwen", "label": "qwen2.5-1.5b", "path": "models/qwen",
                                 "step": None, "n_layers": n_layers, "n_heads": n_heads}])
        _insert(con, "circuits", [{"circuit_id": "c-wide", "model_id": "m-wide", "dataset": "aime24", "n_heads_in_circuit": 0}])
        # A deterministic scatter of active heads with scores, generated in SQL.
        con.execute(
            """INSERT INTO nodes (circuit_id, node, layer, head, kind, score, in_circuit)
               SELECT 'c-wide', 'a' || l || '.h' || h, l, h, 'head', ((l * 13 + h * 7) % 17) / 17.0, (l * 5 + h * 3) % 7 = 0
               FROM range(?) t(l), range(?) u(h)""",
            [n_layers, n_heads],
        )
    finally:
        con.close()
    return path


def add_controls(path: str | os.PathLike[str], deltas: tuple[float, ...] = (-0.05, -0.10, 0.0, -0.40, -0.20)) -> Path:
    """Random-control draws of the fixture's ablation (same model, op and head count), each an eval
    whose pass@1 and pass@4 are the intact eval's plus the given delta: the evals tab then shows
    the ablation against its controls."""
    path = Path(path)
    con = _open_writer(path)
    try:
        final = model_id(STEPS[-1])
        intact = dict(con.execute("SELECT k, value FROM metrics WHERE eval_id = ? AND metric = 'pass@k'",
                                  [EVAL_INTACT]).fetchall())
        for i, d in enumerate(deltas):
            vid, eid, name = f"v-ctl-{i}", f"e-ctl-{i}", f"controls #{i}"
            _insert(con, "variants", [{"variant_id": vid, "model_id": final, "name": name, "op": "ablate",
                                       "factor": 0.0, "heads": ["L0H1", "L2H2", "L3H0"], "n_heads": 3,
                                       "control": "controls", "draw": i}])
            _insert(con, "evals", [{
                "eval_id": eid, "model_id": final, "variant": name, "variant_id": vid, "dataset": DATASET, "n": 4,
                "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "seed": 0, "think": True,
                "backend": "transformers", "n_problems": len(PROBLEMS)}])
            _insert(con, "metrics", [{"eval_id": eid, "metric": "pass@k", "k": k, "value": round(v + d, 6),
                                      "stderr": 0.05} for k, v in sorted(intact.items())])
    finally:
        con.close()
    return path
