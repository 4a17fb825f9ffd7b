"""Compiler speed: cold `sparkql check` on studies/grpo.spark, and compiling a study over a
series of 200 checkpoints.

Goals (issue 2): cold check under 0.3 s; the 200-checkpoint plan under 0.5 s. "Cold" is a new
process each time (the OS file cache warm, as for a user re-running the command), reported as the
median and the best of N runs, with the CPU time (user+sys) beside the wall time because shared
machines are noisy.

    python benchmarks/compile.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QWEN25_15B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28,
    "num_attention_heads": 12, "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936,
}


def make_tree(root: Path, n_checkpoints: int) -> None:
    for rel in ["models/Qwen2.5-Math-1.5B-Instruct"] + [f"runs/grpo-math220k/checkpoint-{100 * (i + 1)}" for i in range(n_checkpoints)]:
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(QWEN25_15B))
        (d / "model.safetensors").write_bytes(b"")


def _env_with_bytecode() -> dict[str, str]:
    # An installed sparkql has its .pyc files (pip compiles them); an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module of the compiler on each run (~50 ms),
    # which is not what a user pays. The warm-up run writes the caches.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_process(cmd: list[str], cwd: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env_with_bytecode())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--checkpoints", type=int, default=25, help="checkpoints in the series `check` sees")
    ap.add_argument("--plan-checkpoints", type=int, default=200)
    args = ap.parse_args()
    sparkql = shutil.which("sparkql") or str(Path(sys.executable).parent / "sparkql")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tree(root / "check", args.checkpoints)
        make_tree(root / "big", args.plan_checkpoints)
        for sub in ("check", "big"):
            shutil.copy(REPO / "studies" / "grpo.spark", root / sub / "grpo.spark")
        time_process([sparkql, "check", "grpo.spark"], root / "check")  # warm the OS cache and Lark's table cache
        walls, cpus = zip(*(time_process([sparkql, "check", "grpo.spark"], root / "check") for _ in range(args.runs)))
        print(f"cold `sparkql check studies/grpo.spark` ({args.checkpoints} checkpoints): "
              f"median {statistics.median(walls):.3f} s, best {min(walls):.3f} s wall; "
              f"median {statistics.median(cpus):.3f} s CPU (goal < 0.3 s)")
        # The floor the chosen stack sets: a new interpreter importing only the libraries `check`
        # needs (click, rich, pydantic with one model class, lark), doing nothing with them.
        floor_cmd = [sys.executable, "-c", "import click, rich.console, lark; from pydantic import BaseModel\nclass M(BaseModel): x: int"]
        floors = [time_process(floor_cmd, root)[0] for _ in range(args.runs)]
        print(f"  of which the stack's imports alone (python + click + rich + pydantic + lark): "
              f"median {statistics.median(floors):.3f} s, best {min(floors):.3f} s")

        sys.path.insert(0, str(REPO))
        from sparkql.plan.compile import compile_text  # imports paid once, outside the timing

        text = (root / "big" / "grpo.spark").read_text()
        compile_text(text, "grpo.spark", study_dir=root / "big")
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            plan = compile_text(text, "grpo.spark", study_dir=root / "big")
            times.append(time.perf_counter() - t0)
        print(f"compile grpo.spark over {args.plan_checkpoints} checkpoints -> {len(plan.steps)} steps: "
              f"median {statistics.median(times):.3f} s, best {min(times):.3f} s (goal < 0.5 s)")
        print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
