"""How much the toy organism's accuracies move across seeds and CPUs: the spread behind the margins
of tests/zoo/test_build.py::test_post_training_changes_what_the_models_do.

    python benchmarks/zoo_spread.py [--preset tiny] [--seeds 0 1 2 3] [--emulate 0 1]

Builds the base and SFT stages of the preset (GRPO cut to one step: the test does not read it)
once per seed, each in a subprocess, and again for the ``--emulate`` seeds with ATen's vector
kernels and MKL's instruction set forced down (ATEN_CPU_CAPABILITY=default,
MKL_ENABLE_INSTRUCTIONS=SSE4_2): other float kernels, as another CPU would pick, so the same seed
trains to other weights. Prints each build's greedy accuracy and trace share (base on the easy and
hard sets, SFT on the hard set), then the smallest value of each property the test asserts.
Several minutes per build on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys
from sparkql import zoo
from sparkql.runtime.zoo.build import build_zoo
preset, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
p = json.loads(json.dumps(zoo.PRESETS[preset]))
p["seed"] = seed
p["grpo"].update(steps=1, save_every=1, prompts=2, group=2, max_new_tokens=8)
zoo.PRESETS["spread"] = p
a = build_zoo(out, preset="spread", log=lambda s: None)["accuracy"]
print(json.dumps({k: a[m][s] for k, (m, s) in
                  {"base_easy": ("base", "easy"), "base_hard": ("base", "hard"), "sft_hard": ("sft", "hard")}.items()}))
"""

EMULATED = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}


def build(preset: str, seed: int, emulate: bool) -> dict:
    env = {**os.environ, **(EMULATED if emulate else {})}
    with tempfile.TemporaryDirectory(prefix="zoo-spread-") as d:
        r = subprocess.run([sys.executable, "-c", CHILD, preset, str(seed), os.path.join(d, "zoo")], env=env,
                           capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--emulate", type=int, nargs="*", default=[0, 1])
    args = ap.parse_args()
    runs = [(s, False) for s in args.seeds] + [(s, True) for s in args.emulate]
    got = []
    print(f"{'seed':>4} {'kernels':8} {'base easy':>10} {'base hard':>10} {'sft hard':>9} {'sft traces':>10}")
    for seed, emulate in runs:
        m = build(args.preset, seed, emulate)
        got.append(m)
        print(f"{seed:>4} {'emulated' if emulate else 'native':8} {m['base_easy']['accuracy']:>10.1%} "
              f"{m['base_hard']['accuracy']:>10.1%} {m['sft_hard']['accuracy']:>9.1%} {m['sft_hard']['trace_share']:>10.1%}",
              flush=True)
    n_hard = got[0]["base_hard"]["n"]
    print("smallest over the builds (what the test asserts, with its margin):")
    print(f"  base easy accuracy        {min(m['base_easy']['accuracy'] for m in got):.1%}")
    print(f"  base easy trace share max {max(m['base_easy']['trace_share'] for m in got):.1%}")
    print(f"  easy - hard (base)        {min(m['base_easy']['accuracy'] - m['base_hard']['accuracy'] for m in got):+.1%}")
    print(f"  sft traces on hard        {min(m['sft_hard']['trace_share'] for m in got):.1%}")
    gain = min(round((m['sft_hard']['accuracy'] - m['base_hard']['accuracy']) * n_hard) for m in got)
    print(f"  sft - base on hard        {gain:+d} of {n_hard} problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
