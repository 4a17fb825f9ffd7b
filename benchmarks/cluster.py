"""The cluster executor against the local one, measured in one run (`sparkql run --cluster`).

The same study, circuits on a series of checkpoints and their base (random Qwen2-shape models
built here), is run three times into fresh stores:

  * by the local executor with one torch thread, in a fresh process (the baseline: what one
    worker does alone);
  * by the local executor with the machine's default threads, in a fresh process (context:
    torch's own intra-op parallelism on the same cores);
  * on a two-worker local Ray cluster (`--cluster local --workers 2 --worker-cpus 1`: one
    thread per worker), Ray started by the run itself.

Reported:
  * the circuit phase: from the first circuit step's start to the last one's commit (the store's
    ``steps.started_at`` / ``completed_at``), so it includes each process's first import of
    torch and transformers, and the cluster's speed-up over the one-thread baseline
    (goal >= 1.7x on 2 cores);
  * the scheduling overhead per step on the cluster: seconds from sending a step to a worker to
    its result reaching the driver, beyond the handler's own time (goal < 0.5 s);
  * the whole run, Ray's start included;
  * the machine's load average before and after, and how many cores two busy processes get
    together right now (other jobs share these cores: two workers cannot gain more than that).

    python benchmarks/cluster.py [--checkpoints 5] [--ig-steps 16] [--hidden 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN_LOCAL = """
import sys, time
from rich.console import Console
from sparkql.plan.compile import compile_file
from sparkql.runtime.execution.executor import execute
t = time.monotonic()
s = execute(compile_file(sys.argv[1]), sys.argv[2], live=False, console=Console(quiet=True))
print(s.status, s.n_done, time.monotonic() - t)
"""


BURN = """
import time
t = time.process_time()
x = 0
for i in range(6_000_000):
    x += i * i
print(time.process_time() - t)
"""


def parallel_capacity() -> float:
    """How many cores two busy processes get together right now (2.0 on an idle 2-core machine):
    the wall time of one CPU-bound process alone vs two at once."""
    def run(n: int) -> float:
        t = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.DEVNULL) for _ in range(n)]
        for p in procs:
            p.wait()
        return time.monotonic() - t

    alone = run(1)
    return 2 * alone / run(2)


def build(root: Path, checkpoints: int, hidden: int, layers: int, ig_steps: int, pairs: int) -> Path:
    from sparkql.runtime.models.tiny import make_tiny_model

    kw = dict(hidden=hidden, intermediate=2 * hidden, n_layers=layers)
    make_tiny_model(root / "base", "qwen2", seed=0, **kw)
    for i in range(1, checkpoints + 1):
        make_tiny_model(root / "run" / f"checkpoint-{100 * i}", "qwen2", seed=i, **kw)
    with open(root / "pairs.jsonl", "w") as f:
        for i in range(pairs):
            a, b, x = 11 + 7 * i, 23 + 3 * i, 31 + 5 * i  # two-digit operands: clean and corrupt align
            f.write(json.dumps({"clean": f"{a}+{b}={a + b}. {a}+{b}=", "corrupt": f"{x}+{b}={x + b}. {x}+{b}=",
                                "answer": str(a + b)}) + "\n")
    study = root / "study.spark"
    study.write_text(
        f'model base = "{root}/base"\nmodel ckpt = "{root}/run/checkpoint-*"\n'
        'dataset pairs = "pairs.jsonl" (clean = "clean", corrupt = "corrupt", answer = "answer")\n'
        "set dtype = fp32\nset device = cpu\n"
        f"circuit pairs on base using eap_ig(steps = {ig_steps}, top_n = 40, tau = 0) as base_heads\n"
        f"circuit pairs on ckpt[*] using eap_ig(steps = {ig_steps}, top_n = 40, tau = 0) as ckpt_heads\n"
    )
    return study


def circuit_phase(db: Path) -> tuple[float, float]:
    """(seconds from the first circuit's start to the last circuit's commit, the circuit steps'
    own seconds added up)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        lo, hi, busy = con.execute("SELECT min(started_at), max(completed_at), sum(seconds) FROM steps "
                                   "WHERE kind = 'circuit'").fetchone()
    finally:
        con.close()
    return (hi - lo).total_seconds(), float(busy)


def run_local(study: Path, db: Path, threads: int | None) -> float:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", RUN_LOCAL, str(study), str(db)], env=env, capture_output=True,
                         text=True, check=True)
    status, _, seconds = out.stdout.split()[-3:]
    assert status == "done", out.stdout
    return float(seconds)


def run_cluster(study: Path, db: Path):
    from rich.console import Console

    from sparkql.plan.compile import compile_file
    from sparkql.runtime.execution.cluster import ClusterOptions
    from sparkql.runtime.execution.executor import execute

    t = time.monotonic()
    s = execute(compile_file(str(study)), db, live=False, console=Console(quiet=True),
                cluster=ClusterOptions(address="local", workers=2, worker_cpus=1, object_store_mb=300))
    assert s.status == "done", s.status
    return time.monotonic() - t, s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=8)
    a = ap.parse_args()

    load_before = os.getloadavg()
    cap_before = parallel_capacity()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        study = build(root, a.checkpoints, a.hidden, a.layers, a.ig_steps, a.pairs)
        print(f"{a.checkpoints + 1} circuits (base + {a.checkpoints} checkpoints), Qwen2 {a.layers} layers x hidden "
              f"{a.hidden}, {a.pairs} pairs x {a.ig_steps} IG steps, fp32; {os.cpu_count()} cores, "
              f"load average {load_before[0]:.1f}", flush=True)
        rows = []
        wall1 = run_local(study, root / "local1.duckdb", threads=1)
        rows.append(("local executor, 1 thread", wall1, *circuit_phase(root / "local1.duckdb")))
        wall_n = run_local(study, root / "localN.duckdb", threads=None)
        rows.append((f"local executor, {os.cpu_count()} threads", wall_n, *circuit_phase(root / "localN.duckdb")))
        wall_c, summary = run_cluster(study, root / "cluster.duckdb")
        rows.append(("Ray local, 2 workers x 1 thread", wall_c, *circuit_phase(root / "cluster.duckdb")))
        load_after = os.getloadavg()
    cap_after = parallel_capacity()

    print(f"{'':34} {'whole run':>10} {'circuit phase':>14} {'circuit steps':>14}")
    for name, wall, phase, busy in rows:
        print(f"{name:34} {wall:9.1f}s {phase:13.1f}s {busy:13.1f}s")
    print("(circuit steps: the steps' own seconds added up; on the cluster two run at once, so the phase is "
          "about half of it when both cores are free)")
    base, threads, cluster = rows[0][2], rows[1][2], rows[2][2]
    print(f"circuit phase speed-up, cluster vs 1 thread:        {base / cluster:.2f}x  (goal >= 1.7x)")
    print(f"circuit phase speed-up, cluster vs default threads: {threads / cluster:.2f}x")
    over = [r.overhead for r in summary.steps if r.overhead is not None]
    by_kind = {}
    for r in summary.steps:
        if r.overhead is not None:
            by_kind.setdefault(r.kind, []).append(r.overhead)
    print(f"scheduling overhead per step on the cluster ({len(over)} steps): median {statistics.median(over):.3f} s, "
          f"mean {statistics.mean(over):.3f} s, max {max(over):.3f} s  (goal < 0.5 s)")
    print("  by kind: " + ", ".join(f"{k} median {statistics.median(v):.3f} s" for k, v in by_kind.items()))
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}; two busy processes got "
          f"{cap_before:.2f} cores before, {cap_after:.2f} after (2.00 on an idle 2-core machine): the most "
          "two workers can gain")


if __name__ == "__main__":
    main()
