"""Real TRL checkpoint series (tests/trl_runs/, made by tests/trl_runs/make_fixtures.py), laid out
again in a temporary directory: the kept files (trainer_state.json, config.json,
adapter_config.json) copied, every other file the trainer wrote recreated empty (weights,
optimizer.pt, rng_state.pth, ...), and trainer_state.json given the mtimes it was written with
(git does not keep them; they tell which run is the newest)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

RUNS = Path(__file__).resolve().parents[1] / "trl_runs"


def manifest(run: str) -> dict:
    return json.loads((RUNS / run / "MANIFEST.json").read_text())


def recreate(run: str, dest: Path) -> Path:
    """``dest`` holding the checkpoint-* directories of ``run``; returns ``dest``."""
    m = manifest(run)
    dest.mkdir(parents=True, exist_ok=True)
    for ck, files in m["checkpoints"].items():
        d = dest / ck
        d.mkdir(exist_ok=True)
        for rel in files:
            src = RUNS / run / ck / rel
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            if src.is_file():
                shutil.copyfile(src, d / rel)
            else:
                (d / rel).write_bytes(b"")
        t = m["trainer_state_mtime_ns"][ck]
        os.utime(d / "trainer_state.json", ns=(t, t))
    return dest


def log_history(run: str, checkpoint: str) -> list[dict]:
    return json.loads((RUNS / run / checkpoint / "trainer_state.json").read_text())["log_history"]
