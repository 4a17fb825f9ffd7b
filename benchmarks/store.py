"""Store benchmark: write 30 circuits of a Qwen2.5-1.5B-sized graph, then the cohort query.

    python benchmarks/store.py [--circuits 30] [--db PATH]

Writes go through the executor's own path (``Store.complete_step``: one
transaction per circuit with its ``circuits``, ``nodes`` and ``edges`` rows and
the completion mark), edges as Arrow columns. The graph is the real one of
docs/eap_ig.md for 28 layers x 12 heads: 365 sources x 1037 destinations,
183,555 edges. The cohort query is the live views (``cohort_checkpoints_live``
and ``cohort_heads_live``) over a 29-checkpoint series against a base circuit.

Goals (issue 3): writing < 10 s in all, the cohort query < 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from sparkql.runtime.execution.context import StepOutput
from sparkql.store.api import Store, connect

LAYERS, HEADS, TOP_N = 28, 12, 5000


def graph() -> tuple[list[str], list[str]]:
    """Edge lists (src, dst) of docs/eap_ig.md."""
    src, dst = [], []

    def upstream(l: int) -> list[str]:
        out = ["input"]
        for k in range(l):
            out += [f"a{k}.h{h}" for h in range(HEADS)] + [f"m{k}"]
        return out

    for l in range(LAYERS):
        up = upstream(l)
        for h in range(HEADS):
            for q in "qkv":
                src += up
                dst += [f"a{l}.h{h}<{q}>"] * len(up)
        mlp_up = up + [f"a{l}.h{h}" for h in range(HEADS)]
        src += mlp_up
        dst += [f"m{l}"] * len(mlp_up)
    all_src = upstream(LAYERS)
    src += all_src
    dst += ["logits"] * len(all_src)
    return src, dst


class _Step:
    """The two fields of a plan Step that Store.complete_step reads."""

    def __init__(self, key: str, kind: str = "circuit") -> None:
        self.key, self.kind, self.label = key, kind, f"{kind} {key[:8]}"


def circuit_output(key: str, src: pa.Array, dst: pa.Array, rng: np.random.Generator) -> StepOutput:
    n = len(src)
    score = rng.standard_normal(n) * rng.exponential(1.0, n)
    keep = np.zeros(n, dtype=bool)
    keep[np.argpartition(-np.abs(score), TOP_N)[:TOP_N]] = True
    edges = pa.table({"circuit_id": pa.array([key] * n), "src": src, "dst": dst, "score": score,
                      "in_circuit": keep})
    heads = [(l, h) for l in range(LAYERS) for h in range(HEADS)]
    active = rng.random(len(heads)) < 0.12
    nodes = {
        "circuit_id": [key] * (len(heads) + LAYERS + 2),
        "node": [f"a{l}.h{h}" for l, h in heads] + [f"m{l}" for l in range(LAYERS)] + ["input", "logits"],
        "layer": [l for l, _ in heads] + list(range(LAYERS)) + [None, None],
        "head": [h for _, h in heads] + [None] * (LAYERS + 2),
        "kind": ["head"] * len(heads) + ["mlp"] * LAYERS + ["input", "logits"],
        "score": rng.random(len(heads) + LAYERS + 2),
        "in_circuit": list(active) + [True] * (LAYERS + 2),
    }
    circuits = [{"circuit_id": key, "model_id": f"model-{key}", "dataset": "aime24", "method": "eap_ig",
                 "ig_steps": 100, "top_n": TOP_N, "tau": 0.1, "metric": "kl", "n_edges": n,
                 "n_edges_in_circuit": TOP_N, "n_heads_in_circuit": int(active.sum())}]
    return StepOutput(tables={"circuits": circuits, "nodes": nodes, "edges": edges})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--circuits", type=int, default=30)
    ap.add_argument("--db", default=None, help="store path (default: a temporary file)")
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    db = Path(a.db or Path(tmp.name) / "bench.duckdb")

    s_list, d_list = graph()
    assert len(s_list) == 183_555, len(s_list)
    src, dst = pa.array(s_list), pa.array(d_list)
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(a.circuits)]
    outputs = [circuit_output(k, src, dst, rng) for k in keys]  # built before timing: the handler's work

    store = Store(db)
    t0, c0 = time.perf_counter(), time.process_time()
    per = []
    for k, out in zip(keys, outputs):
        t1 = time.perf_counter()
        store.complete_step(_Step(k), out, run_id="bench", started_at=None, seconds=0.0)
        per.append(time.perf_counter() - t1)
    t_close = time.perf_counter()
    store.close()  # the final checkpoint is part of the write
    close_s = time.perf_counter() - t_close
    write_s = time.perf_counter() - t0
    write_cpu = time.process_time() - c0
    n_edges = len(s_list) * a.circuits

    # a cohort over the series: circuit 0 is the base, the others the checkpoints
    base, series = keys[0], keys[1:]
    store = Store(db)
    store.write({"cohort_members": [
        {"cohort_key": "bench", "set_name": "emergent", "idx": i, "model_id": f"model-{k}", "step": 100 * (i + 1),
         "circuit_id": k, "set_key": k, "base_model_id": f"model-{base}", "base_circuit_id": base}
        for i, k in enumerate(series)]})
    store.close()
    con = connect(db)
    times = []
    for _ in range(7):
        t1 = time.perf_counter()
        ck = con.execute("SELECT * FROM cohort_checkpoints_live WHERE cohort_key = 'bench' ORDER BY idx").fetchall()
        hd = con.execute("SELECT * FROM cohort_heads_live WHERE cohort_key = 'bench'").fetchall()
        times.append(time.perf_counter() - t1)
    t1 = time.perf_counter()
    one = con.execute("SELECT count(*), sum(score) FROM edges WHERE circuit_id = ?", [keys[17]]).fetchone()
    edge_lookup_s = time.perf_counter() - t1
    con.close()
    size_mb = db.stat().st_size / 1e6

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"write: {a.circuits} circuits x {len(s_list):,} edges = {n_edges:,} edges in {write_s:.2f} s wall "
          f"({n_edges / write_s:,.0f} edges/s), {write_cpu:.2f} s CPU; per circuit median {statistics.median(per):.3f} s, "
          f"max {max(per):.3f} s; final close {close_s:.2f} s; load average {load:.1f} on {os.cpu_count()} cores  "
          f"goal < 10 s: {'ok' if write_s < 10 else 'MISSED'}")
    q = statistics.median(times)
    print(f"cohort query: {len(ck)} checkpoints, {len(hd)} heads in {q * 1000:.1f} ms "
          f"(median of 7; min {min(times) * 1000:.1f} ms)  goal < 200 ms: {'ok' if q < 0.2 else 'MISSED'}")
    print(f"one circuit's edges (zonemap lookup): {one[0]:,} rows in {edge_lookup_s * 1000:.1f} ms; "
          f"store size {size_mb:.0f} MB")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
