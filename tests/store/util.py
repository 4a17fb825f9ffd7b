"""Helpers for the store tests: run the hand-made plan in a subprocess, dump a store's tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

HERE = Path(__file__).parent
RUNNER = HERE / "runner.py"

# Columns that legitimately differ between two runs of the same plan.
VOLATILE = {
    "runs": None,  # the whole table
    "steps": {"run_id", "completed_at", "seconds", "started_at"},
}


def run_plan(root: Path, db: Path, counter: Path, *args: str, env: dict | None = None,
             wait: bool = True, timeout: float = 60):
    cmd = [sys.executable, str(RUNNER), str(root), str(db), str(counter), *args]
    e = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)


def calls(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every table's rows (sorted, volatile columns dropped), for comparing two stores."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1").fetchall()]
        for t in names:
            drop = VOLATILE.get(t, set())
            if drop is None:
                continue
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [t]).fetchall()]
            keep = [c for c in cols if c not in drop]
            # JSON columns compare as text; ORDER BY ALL sorts in the database, not in Python
            sel = ", ".join(f"{c}::VARCHAR AS {c}" if t == "steps" and c == "summary" else c for c in keep)
            out[t] = con.execute(f"SELECT {sel} FROM {t} ORDER BY ALL").fetchall()
        return out
    finally:
        con.close()
