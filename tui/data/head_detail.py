"""Queries of the head detail screen: one head across circuits, cohorts, head sets and edges."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from sparkql.tui.data.common import MODEL_LABEL, Table, query_table


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


@dataclass(frozen=True)
class HeadDetail:
    layer: int
    head: int
    across: Table  # its score in every circuit on the dataset
    cohorts: Table  # cohort, activation frequency, survives, per series
    sets: Table  # head sets it belongs to
    edges: Table  # strongest edges in the current circuit

    @property
    def name(self) -> str:
        return head_name(self.layer, self.head)


def head_detail(con: duckdb.DuckDBPyConnection, layer: int, head: int, circuit_id: str | None, dataset: str | None, n_edges: int = 12) -> HeadDetail:
    node = f"a{layer}.h{head}"
    across = query_table(
        con,
        f"""SELECT {MODEL_LABEL.format(col='c.model_id')} AS model, m.step, c.dataset,
                   round(n.score, 4) AS score, coalesce(n.in_circuit, FALSE) AS in_circuit
            FROM circuits c LEFT JOIN models m USING (model_id)
            LEFT JOIN nodes n ON n.circuit_id = c.circuit_id AND n.kind = 'head' AND n.layer = ? AND n.head = ?
            WHERE ? IS NULL OR c.dataset = ?
            ORDER BY c.dataset, m.name NULLS FIRST, m.step NULLS FIRST""",
        [layer, head, dataset, dataset],
    )
    cohorts = query_table(
        con,
        """SELECT ch.set_name AS "set", any_value(m.name) AS series, ch.origin, ch.cohort,
                  round(ch.activation_frequency, 3) AS frequency, ch.survives
           FROM cohort_heads ch
           LEFT JOIN cohort_members cm ON cm.cohort_key = ch.cohort_key
           LEFT JOIN models m ON m.model_id = cm.model_id
           WHERE ch.layer = ? AND ch.head = ?
           GROUP BY ch.cohort_key, ch.set_name, ch.origin, ch.cohort, ch.activation_frequency, ch.survives ORDER BY 1, 2""",
        [layer, head],
    )
    sets = query_table(
        con,
        f"""SELECT h.set_name AS "set", {MODEL_LABEL.format(col='h.model_id')} AS model, h.rank, round(h.score, 4) AS score
            FROM head_sets h LEFT JOIN models m USING (model_id)
            WHERE h.layer = ? AND h.head = ? ORDER BY h.set_name, m.name, m.step NULLS FIRST""",
        [layer, head],
    )
    edges = query_table(
        con,
        """SELECT src, dst, round(score, 5) AS score, in_circuit FROM edges
           WHERE circuit_id = ? AND (src = ? OR starts_with(dst, ?))
           ORDER BY abs(score) DESC LIMIT ?""",
        [circuit_id, node, node + "<", n_edges],
    )
    return HeadDetail(layer, head, across, cohorts, sets, edges)
