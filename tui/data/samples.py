"""Queries of the samples screen: an eval's problems, and the samples of one problem."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from sparkql.tui.data.common import Table, query_table


def problems(con: duckdb.DuckDBPyConnection, eval_id: str) -> Table:
    """Per problem of an eval: correct samples out of graded ones, and the most common answer.

    The answer is picked by count, ties going to the answer of the earliest sample: DuckDB's
    ``mode()`` breaks ties arbitrarily, so the column changed from one read to the next."""
    return query_table(
        con,
        """WITH s AS (
               SELECT *, count(*) OVER (PARTITION BY problem_id, extracted) AS n_same
               FROM samples WHERE eval_id = ?)
           SELECT problem_id AS problem, count_if(correct) AS correct, count(*) AS samples,
                  count_if(finish_reason = 'length') AS truncated, any_value(gold) AS gold,
                  arg_max(extracted, (n_same, -sample_idx)) FILTER (WHERE extracted IS NOT NULL) AS answer
           FROM s GROUP BY problem_id
           ORDER BY try_cast(problem_id AS BIGINT) NULLS LAST, problem_id""",
        [eval_id],
    )


@dataclass(frozen=True)
class Sample:
    sample_idx: int
    prompt: str | None
    completion: str | None
    finish_reason: str | None
    extracted: str | None
    gold: str | None
    status: str | None
    correct: bool | None


def samples(con: duckdb.DuckDBPyConnection, eval_id: str, problem_id: str) -> list[Sample]:
    return [
        Sample(*r)
        for r in con.execute(
            """SELECT sample_idx, prompt, completion, finish_reason, extracted, gold, status, correct
               FROM samples WHERE eval_id = ? AND problem_id = ? ORDER BY sample_idx""",
            [eval_id, problem_id],
        ).fetchall()
    ]
