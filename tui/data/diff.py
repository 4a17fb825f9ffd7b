"""Queries of the diff screen: problems one eval solves and another does not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from sparkql.tui.data.evals import eval_label


@dataclass(frozen=True)
class DiffRow:
    problem_id: str
    change: str  # "newly correct" | "newly incorrect"
    acc_a: float
    acc_b: float
    completion_a: str | None
    completion_b: str | None
    extracted_a: str | None
    extracted_b: str | None
    gold: str | None


@dataclass(frozen=True)
class EvalDiff:
    a: str
    b: str
    label_a: str
    label_b: str
    rows: list[DiffRow]

    @property
    def newly_correct(self) -> list[DiffRow]:
        return [r for r in self.rows if r.change == "newly correct"]

    @property
    def newly_incorrect(self) -> list[DiffRow]:
        return [r for r in self.rows if r.change == "newly incorrect"]


def eval_diff(con: duckdb.DuckDBPyConnection, a: str, b: str) -> EvalDiff:
    """Problems B solves that A does not (newly correct) and the reverse (newly incorrect).

    A problem is solved when at least one of its samples is correct: the work is
    done by ``sparkql.runtime.grading.qualitative`` (torch-free), the code ``sparkql
    diff`` runs, so the TUI and the CLI always agree. Each side shows its first
    correct sample, else its first.
    """
    from sparkql.runtime.grading import qualitative

    def query(sql: str, params: list) -> list:
        return con.execute(sql, params).fetchall()

    infos = {e.eval_id: e for e in map(_eval_info(qualitative, query), (a, b))}
    d = qualitative.diff(query, infos[a], infos[b])
    rows = [
        DiffRow(
            problem_id=p.problem_id,
            change=change,
            acc_a=p.correct_a / p.n_a if p.n_a else 0.0,
            acc_b=p.correct_b / p.n_b if p.n_b else 0.0,
            completion_a=p.shown_a.completion if p.shown_a else None,
            completion_b=p.shown_b.completion if p.shown_b else None,
            extracted_a=p.shown_a.extracted if p.shown_a else None,
            extracted_b=p.shown_b.extracted if p.shown_b else None,
            gold=p.gold,
        )
        for change, problems in (("newly correct", d.newly_correct), ("newly incorrect", d.newly_incorrect))
        for p in sorted(problems, key=lambda p: _problem_order(p.problem_id))
    ]
    return EvalDiff(a, b, eval_label(con, a), eval_label(con, b), rows)


def _eval_info(qualitative: Any, query: Any) -> Any:
    def info(eval_id: str) -> Any:
        found = [e for e in qualitative.resolve(query, eval_id) if e.eval_id == eval_id]
        if not found:
            raise KeyError(f"no eval {eval_id}")
        return found[0]

    return info


def _problem_order(problem_id: str) -> tuple[int, Any]:
    return (0, int(problem_id)) if problem_id.isdigit() else (1, problem_id)
