"""A tiny study that exercises every kind of step the cluster runs side by side: circuits on a
checkpoint series and its base, the emergent sets (diff), a cohort, an intervention and an eval
of three models."""

from __future__ import annotations

import json
from pathlib import Path

PAIRS = [("12+34=46. 12+34=", "25+34=59. 25+34=", "46"), ("21+13=34. 21+13=", "41+13=54. 41+13=", "34"),
         ("30+11=41. 30+11=", "17+11=28. 17+11=", "41"), ("52+16=68. 52+16=", "72+16=88. 72+16=", "68")]
PROBLEMS = [("a", "What is 2 + 2?", "4"), ("b", "What is 10 - 3?", "7"), ("c", "Compute 6 * 7.", "42")]


def build(root: Path, *, checkpoints: int = 2, hidden: int = 32, n_layers: int = 2, seed: int = 0) -> Path:
    """Models, datasets and study.spark under ``root`` (built once; returns the study file)."""
    from sparkql.runtime.models.tiny import make_tiny_model

    root = Path(root)
    study = root / "study.spark"
    if study.is_file():
        return study
    kw = dict(hidden=hidden, intermediate=2 * hidden, n_layers=n_layers)
    make_tiny_model(root / "base", "qwen2", seed=seed, **kw)
    for i in range(1, checkpoints + 1):
        step = 100 * i
        d = make_tiny_model(root / "run" / f"checkpoint-{step}", "qwen2", seed=seed + i, **kw)
        (d / "trainer_state.json").write_text(json.dumps({"log_history": [
            {"step": step - 50, "loss": 2.0 / i, "reward": 0.1 * i}, {"step": step, "loss": 1.5 / i, "reward": 0.2 * i}]}))
    with open(root / "pairs.jsonl", "w") as f:
        for c, x, a in PAIRS:
            f.write(json.dumps({"clean": c, "corrupt": x, "answer": a}) + "\n")
    with open(root / "probs.jsonl", "w") as f:
        for q, p, a in PROBLEMS:
            f.write(json.dumps({"qid": q, "question": p, "answer": a}) + "\n")
    study.write_text(text(root))
    return study


def text(root: Path, *, ig_steps: int = 4, max_tokens: int = 8) -> str:
    return f'''model base = "{root}/base"
model ckpt = "{root}/run/checkpoint-*"
dataset pairs = "pairs.jsonl" (clean = "clean", corrupt = "corrupt", answer = "answer")
dataset probs = "probs.jsonl" (problem = "question", answer = "answer", id = "qid")
set dtype = fp64
set device = cpu
circuit pairs on ckpt[*] diff base using eap_ig(steps = {ig_steps}, top_n = 12, tau = 0) as emergent
cohort emergent
ablate emergent top 2 on ckpt[-1] as ablated
eval pass@k on probs for base, ckpt[-1], ablated with n = 2, k = [1, 2], temperature = 0.6, max_tokens = {max_tokens}
'''


# Columns that say when or how long, or which run: they differ between any two runs.
TIMING = {"seconds", "started_at", "completed_at", "run_id", "finished_at", "elapsed_s", "wall_s", "tok_s",
          "created_at", "graded_at"}


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every table of the store, sorted, without timing columns (and without ``runs``)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY table_name").fetchall()]
        out = {}
        for t in tables:
            if t in ("runs", "schema_version"):
                continue
            cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall() if r[0] not in TIMING]
            rows = con.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall()
            if t == "steps":  # a step's summary holds timings (tokens/s): compare what ran, not how fast
                i = cols.index("summary")
                rows = [r[:i] + r[i + 1:] for r in rows]
            out[t] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


def assert_same_tables(got: dict, want: dict) -> None:
    """Every table has the same rows; floats equal to 1e-9 (relative): a worker's single torch
    thread sums in another order than the local run's thread pool."""
    import math

    assert sorted(got) == sorted(want)
    for table in want:
        a, b = got[table], want[table]
        assert len(a) == len(b), f"{table}: {len(a)} rows, expected {len(b)}"
        for ra, rb in zip(a, b):
            assert len(ra) == len(rb)
            for x, y in zip(ra, rb):
                if isinstance(x, float) and isinstance(y, float):
                    assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (table, ra, rb)
                else:
                    assert x == y, (table, ra, rb)
