"""Queries of the runs tab: runs and studies, and what a study holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from sparkql.tui.data.common import ALL_RUNS, MODEL_LABEL, study_scope


@dataclass(frozen=True)
class RunRow:
    run_id: str
    study_path: str | None
    status: str | None
    started_at: Any
    finished_at: Any
    n_steps: int


def list_runs(con: duckdb.DuckDBPyConnection) -> list[RunRow]:
    rows = con.execute(
        """SELECT r.run_id, r.study_path, r.status, r.started_at, r.finished_at,
                  (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id)
           FROM runs r ORDER BY r.started_at DESC NULLS LAST, r.run_id"""
    ).fetchall()
    return [RunRow(*r) for r in rows]


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    name: str | None
    label: str
    step: int | None
    n_layers: int | None
    n_heads: int | None


@dataclass(frozen=True)
class CircuitRow:
    circuit_id: str
    model_id: str
    model_label: str
    model_name: str | None
    step: int | None
    dataset: str | None
    n_heads_in_circuit: int | None
    n_edges_in_circuit: int | None
    faithfulness: float | None


@dataclass(frozen=True)
class HeadSetRow:
    set_key: str
    set_name: str
    model_id: str
    model_label: str
    step: int | None
    n_heads: int


@dataclass(frozen=True)
class EvalRow:
    eval_id: str
    model_label: str
    variant: str
    dataset: str | None
    n: int | None
    n_problems: int | None


@dataclass(frozen=True)
class SeriesRow:
    cohort_key: str
    set_name: str
    series: str | None
    n_checkpoints: int
    first_step: int | None
    last_step: int | None


@dataclass
class StudyContents:
    models: list[ModelRow] = field(default_factory=list)
    circuits: list[CircuitRow] = field(default_factory=list)
    head_sets: list[HeadSetRow] = field(default_factory=list)
    evals: list[EvalRow] = field(default_factory=list)
    series: list[SeriesRow] = field(default_factory=list)


MODEL_LABEL = "coalesce(m.label, m.name, {col})"


def study_contents(con: duckdb.DuckDBPyConnection, run_id: str = ALL_RUNS) -> StudyContents:
    """Models, checkpoint series, circuits, head sets and evals of one study."""
    pred, params = study_scope(run_id)
    circuits = [
        CircuitRow(*r)
        for r in con.execute(
            f"""SELECT c.circuit_id, c.model_id, {MODEL_LABEL.format(col='c.model_id')}, m.name, m.step, c.dataset,
                       c.n_heads_in_circuit, c.n_edges_in_circuit, c.faithfulness
                FROM (SELECT *, circuit_id AS k FROM circuits) c LEFT JOIN models m USING (model_id)
                WHERE {pred}
                ORDER BY c.dataset, m.name NULLS FIRST, m.step NULLS FIRST, c.circuit_id""",
            params,
        ).fetchall()
    ]
    head_sets = [
        HeadSetRow(*r)
        for r in con.execute(
            f"""SELECT h.set_key, h.set_name, h.model_id, {MODEL_LABEL.format(col='h.model_id')}, m.step, count(*)
                FROM (SELECT *, set_key AS k FROM head_sets) h LEFT JOIN models m USING (model_id)
                WHERE {pred}
                GROUP BY ALL ORDER BY h.set_name, m.step NULLS FIRST, 4""",
            params,
        ).fetchall()
    ]
    evals = [
        EvalRow(*r)
        for r in con.execute(
            f"""SELECT e.eval_id, {MODEL_LABEL.format(col='e.model_id')}, coalesce(e.variant, 'intact'), e.dataset, e.n, e.n_problems
                FROM (SELECT *, eval_id AS k FROM evals) e LEFT JOIN models m USING (model_id)
                WHERE {pred}
                ORDER BY e.dataset, 2, e.variant <> 'intact', e.variant""",
            params,
        ).fetchall()
    ]
    series = [
        SeriesRow(*r)
        for r in con.execute(
            f"""SELECT cc.cohort_key, any_value(cc.set_name), any_value(m.name), count(*), min(cc.step), max(cc.step)
                FROM (SELECT *, cohort_key AS k FROM cohort_checkpoints) cc LEFT JOIN models m USING (model_id)
                WHERE {pred}
                GROUP BY cc.cohort_key ORDER BY 2, 3""",
            params,
        ).fetchall()
    ]
    model_ids = {c.model_id for c in circuits} | {h.model_id for h in head_sets}
    model_ids |= {r[0] for r in con.execute("SELECT DISTINCT model_id FROM evals WHERE eval_id IN (SELECT unnest(?::VARCHAR[]))", [[e.eval_id for e in evals]]).fetchall()}
    if run_id == ALL_RUNS:
        model_ids |= {r[0] for r in con.execute("SELECT model_id FROM models").fetchall()}
    models = [
        ModelRow(*r)
        for r in con.execute(
            """SELECT m.model_id, m.name, coalesce(m.label, m.name, m.model_id), m.step, m.n_layers, m.n_heads
               FROM models m WHERE m.model_id IN (SELECT unnest(?::VARCHAR[]))
               ORDER BY m.name, m.step NULLS FIRST""",
            [sorted(model_ids)],
        ).fetchall()
    ]
    return StudyContents(models, circuits, head_sets, evals, series)
