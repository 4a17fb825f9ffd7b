"""What every screen's queries share: the result type for tables, the study scope, the model label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import duckdb

ALL_RUNS = "*"  # pseudo run id: every result in the store

MODEL_LABEL = "coalesce(m.label, m.name, {col})"
"""A model's display label in SQL (``m`` is ``models``; ``col`` is the model_id to fall back on)."""


@dataclass(frozen=True)
class Table:
    """A query result ready for a DataTable."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False


def query_table(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = (), limit: int | None = None) -> Table:
    cur = con.execute(sql, list(params))
    columns = [d[0] for d in cur.description] if cur.description else []
    if limit is None:
        return Table(columns, cur.fetchall())
    rows = cur.fetchmany(limit + 1)
    return Table(columns, rows[:limit], truncated=len(rows) > limit)


def study_scope(run_id: str) -> tuple[str, list[Any]]:
    """SQL predicate (on a key column named ``k``) selecting results of a run's study.

    A study is every run of the same ``study_path``; its results are the steps
    those runs completed (ids in the store are step keys). ``ALL_RUNS`` keeps
    everything, which is also what a store without run records shows.
    """
    if run_id == ALL_RUNS:
        return "TRUE", []
    return (
        """k IN (SELECT s.key FROM steps s WHERE s.run_id IN (
               SELECT run_id FROM runs WHERE study_path IS NOT DISTINCT FROM
                   (SELECT study_path FROM runs WHERE run_id = ?)))""",
        [run_id],
    )
