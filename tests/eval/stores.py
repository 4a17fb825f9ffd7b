"""Helpers shared by the eval tests: run a study into a fresh store, and read a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import duckdb

from sparkql.plan.compile import compile_text
from sparkql.runtime.execution.executor import execute


def q(db, sql: str, params=()) -> list[tuple]:
    """Rows of one query on a store, opened read-only and closed again."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def run_study(directory: Path, problems: list[dict], study: Callable[[Path], str]) -> dict:
    """Write ``problems`` to ``directory/probs.jsonl``, run ``study(that file)`` into
    ``directory/store.duckdb``; returns the store, the study text, its plan and the run summary."""
    data = directory / "probs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in problems))
    text = study(data)
    db = directory / "store.duckdb"
    plan = compile_text(text)
    summary = execute(plan, db, study_text=text, live=False)
    return {"db": db, "text": text, "plan": plan, "summary": summary}
