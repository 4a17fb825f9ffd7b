"""Zoo benchmark: build the toy organism from scratch and check that post-training did
something measurable (docs/toy.md; issue 6).

    python benchmarks/zoo_build.py [--preset full|tiny] [--out DIR]

Builds into a fresh temporary directory (or ``--out``), prints wall and CPU time per
stage, greedy accuracy of base / final SFT / final GRPO on the shipped easy and hard
sets, the GRPO reward by quarter of training, and the trace share of each model. Exits
1 when a goal fails. Goals (full preset): the whole build <= 900 s on 2 CPU cores (it was 300 s
until the demo gained its ground truth: SFT trains 800 steps through three heads and the MLPs
only; then 600 s, until the base gained its redundant heads, 200 steps more, and GRPO went from
80 steps of 8 prompts to 160 of 16: 794 s alone; 825 s once GRPO started from SFT's step-80
warm-up, whose traced answers are longer to sample); the base answers easy problems (>= 60%); SFT
beats the base on hard problems; the GRPO reward of the last quarter beats the first quarter.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="full", choices=["full", "tiny"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from sparkql.runtime.zoo.build import build_zoo

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="zoo-bench-")) / "zoo"
    t0, c0 = time.perf_counter(), time.process_time()
    m = build_zoo(out, preset=args.preset, force=True, log=lambda s: None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"zoo {args.preset} built in {wall:.1f}s wall, {cpu:.1f}s cpu  ({out})")
    for stage, secs in m["timings_s"].items():
        print(f"  {stage:10s} {secs:7.1f}s wall {m['cpu_s'][stage]:7.1f}s cpu")
    for model, sets in m["accuracy"].items():
        print(f"  {model:5s} " + "  ".join(
            f"{name} {v['accuracy']:.1%} (traces {v['trace_share']:.0%})" for name, v in sets.items()))
    rc = m["reward_curve"]
    print("  GRPO reward by quarter: " + " -> ".join(f"{x:.3f}" for x in rc["by_quarter"]))
    acc = m["accuracy"]
    goals = {
        "build <= 900 s": wall <= 900,
        "base easy >= 60%": acc["base"]["easy"]["accuracy"] >= 0.6,
        "sft hard > base hard": acc["sft"]["hard"]["accuracy"] > acc["base"]["hard"]["accuracy"],
        "grpo reward rises": rc["last"] > rc["first"],
    }
    for goal, ok in goals.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {goal}")
    print(json.dumps({"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "accuracy": acc, "reward_curve": rc}))
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
