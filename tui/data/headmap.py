"""Queries of the head map: a layer x head grid for a circuit or a head set, with the series' cohort facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import duckdb

from sparkql.tui.data.common import MODEL_LABEL


@dataclass(frozen=True)
class HeadCell:
    """What the map knows about one head, for every color mode."""

    score: float | None = None  # circuit head score or head-set score
    active: bool = False  # in the circuit / in the set
    emergent: bool = False  # in the checkpoint's emergent set (not in the base circuit)
    base: bool = False  # a base-circuit head (maintained here, or at some checkpoint of the series)
    cohort: int | None = None  # step where it first emerged
    frequency: float | None = None  # share of the series' checkpoints where it is active
    survives: bool = False  # emergent at the final checkpoint


@dataclass(frozen=True)
class HeadMap:
    """A layer x head grid for one circuit or one head set."""

    kind: str  # "circuit" | "set"
    source_id: str  # circuit_id, or set_key
    title: str
    n_layers: int
    n_heads: int
    cells: dict[tuple[int, int], HeadCell]
    model_id: str | None = None
    dataset: str | None = None
    cohort_key: str | None = None
    cohort_steps: tuple[int, ...] = ()  # distinct cohort steps, for the legend
    max_score: float = 0.0
    siblings: tuple[str, ...] = ()  # ids of the same kind along the series, in step order
    circuit_id: str | None = None  # the circuit whose edges the head detail lists

    def cell(self, layer: int, head: int) -> HeadCell:
        return self.cells.get((layer, head), _EMPTY)


_EMPTY = HeadCell()


def _dims(con: duckdb.DuckDBPyConnection, model_id: str | None, seen: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """Grid size from the model's config, else from the largest head seen."""
    row = con.execute("SELECT n_layers, n_heads FROM models WHERE model_id = ?", [model_id]).fetchone() if model_id else None
    n_layers = row[0] if row and row[0] else (max((l for l, _ in seen), default=-1) + 1)
    n_heads = row[1] if row and row[1] else (max((h for _, h in seen), default=-1) + 1)
    return max(n_layers, 1), max(n_heads, 1)


def _series_context(con: duckdb.DuckDBPyConnection, model_id: str, set_name: str | None = None) -> dict[str, Any] | None:
    """The cohort (checkpoint series) a model is a checkpoint of, if any."""
    row = con.execute(
        """SELECT cohort_key, set_name, set_key, base_circuit_id FROM cohort_members
           WHERE model_id = ? AND (? IS NULL OR set_name = ?)
           ORDER BY set_name, cohort_key LIMIT 1""",
        [model_id, set_name, set_name],
    ).fetchone()
    if row is None:
        return None
    return {"cohort_key": row[0], "set_name": row[1], "set_key": row[2], "base_circuit_id": row[3]}


def _cohort_heads(con: duckdb.DuckDBPyConnection, cohort_key: str) -> dict[tuple[int, int], tuple[str, int | None, float | None, bool]]:
    """Per head of a series: origin (emergent | base), cohort, activation frequency, survives."""
    return {
        (l, h): (o or ("emergent" if c is not None else "base"), c, f, bool(s))
        for l, h, o, c, f, s in con.execute(
            "SELECT layer, head, origin, cohort, activation_frequency, survives FROM cohort_heads WHERE cohort_key = ?",
            [cohort_key],
        ).fetchall()
    }


def _decorate(
    con: duckdb.DuckDBPyConnection,
    raw: dict[tuple[int, int], tuple[float | None, bool]],
    ctx: dict[str, Any] | None,
) -> tuple[dict[tuple[int, int], HeadCell], tuple[int, ...]]:
    """Join per-head scores with the series' cohort facts (cohort_heads, v2: base heads included).

    Emergent here = active and not a base-circuit head, the definition the
    cohort step uses (sparkql/store/cohorts.py), not membership of a possibly
    top-K-truncated head set.
    """
    if ctx is None:
        # Not a checkpoint of a series: every active head is simply a head of this model.
        return {k: HeadCell(score=s, active=a, base=a) for k, (s, a) in raw.items()}, ()
    facts = _cohort_heads(con, ctx["cohort_key"])
    base = {k for k, f in facts.items() if f[0] == "base"}
    if not base and ctx.get("base_circuit_id"):
        base = {
            (l, h)
            for l, h in con.execute(
                "SELECT layer, head FROM nodes WHERE circuit_id = ? AND kind = 'head' AND in_circuit", [ctx["base_circuit_id"]]
            ).fetchall()
        }
    cells: dict[tuple[int, int], HeadCell] = {}
    for key in set(raw) | set(facts):
        score, active = raw.get(key, (None, False))
        origin, cohort, freq, survives = facts.get(key, (None, None, None, False))
        cells[key] = HeadCell(
            score=score,
            active=active,
            emergent=active and key not in base,
            base=key in base,
            cohort=cohort,
            frequency=freq,
            survives=survives,
        )
    steps = tuple(sorted({f[1] for f in facts.values() if f[1] is not None}))
    return cells, steps


def head_map_for_circuit(con: duckdb.DuckDBPyConnection, circuit_id: str) -> HeadMap:
    row = con.execute(
        f"""SELECT c.model_id, c.dataset, {MODEL_LABEL.format(col='c.model_id')}, m.name, c.method, c.top_n, c.tau, c.metric
            FROM circuits c LEFT JOIN models m USING (model_id) WHERE c.circuit_id = ?""",
        [circuit_id],
    ).fetchone()
    if row is None:
        raise KeyError(f"no circuit {circuit_id}")
    model_id, dataset, label, name, method, top_n, tau, metric = row
    raw = {
        (l, h): (s, bool(a))
        for l, h, s, a in con.execute(
            "SELECT layer, head, score, in_circuit FROM nodes WHERE circuit_id = ? AND kind = 'head' AND layer IS NOT NULL AND head IS NOT NULL",
            [circuit_id],
        ).fetchall()
    }
    ctx = _series_context(con, model_id)
    cells, steps = _decorate(con, raw, ctx)
    n_layers, n_heads = _dims(con, model_id, list(cells))
    # The same circuit along the series: same dataset and settings, same model name, by step.
    siblings = tuple(
        r[0]
        for r in con.execute(
            """SELECT c.circuit_id FROM circuits c LEFT JOIN models m USING (model_id)
               WHERE c.dataset IS NOT DISTINCT FROM ? AND m.name IS NOT DISTINCT FROM ?
                 AND c.method IS NOT DISTINCT FROM ? AND c.top_n IS NOT DISTINCT FROM ?
                 AND c.tau IS NOT DISTINCT FROM ? AND c.metric IS NOT DISTINCT FROM ?
               ORDER BY m.step NULLS FIRST, c.circuit_id""",
            [dataset, name, method, top_n, tau, metric],
        ).fetchall()
    )
    active_scores = [c.score for c in cells.values() if c.active and c.score is not None]
    return HeadMap(
        kind="circuit",
        source_id=circuit_id,
        title=f"circuit {dataset} on {label}",
        n_layers=n_layers,
        n_heads=n_heads,
        cells=cells,
        model_id=model_id,
        dataset=dataset,
        cohort_key=ctx["cohort_key"] if ctx else None,
        cohort_steps=steps,
        max_score=max((abs(s) for s in active_scores), default=0.0),
        siblings=siblings,
        circuit_id=circuit_id,
    )


def head_map_for_set(con: duckdb.DuckDBPyConnection, set_key: str, model_id: str) -> HeadMap:
    rows = con.execute(
        "SELECT layer, head, score, set_name FROM head_sets WHERE set_key = ? AND model_id = ?", [set_key, model_id]
    ).fetchall()
    set_name = rows[0][3] if rows else None
    if set_name is None:
        row = con.execute("SELECT any_value(set_name) FROM head_sets WHERE set_key = ?", [set_key]).fetchone()
        set_name = row[0] if row else set_key
    raw = {(l, h): (s, True) for l, h, s, _ in rows}
    label_row = con.execute("SELECT coalesce(label, name, model_id) FROM models WHERE model_id = ?", [model_id]).fetchone()
    label = label_row[0] if label_row else model_id
    # The circuit the set was cut from: its dataset, and the edges the head detail lists.
    ds = con.execute("SELECT dataset, circuit_id FROM circuits WHERE model_id = ? ORDER BY dataset LIMIT 1", [model_id]).fetchone()
    ctx = _series_context(con, model_id, set_name)
    cells, steps = _decorate(con, raw, ctx)
    n_layers, n_heads = _dims(con, model_id, list(cells))
    siblings = tuple(
        r[0]
        for r in con.execute(
            """SELECT h.set_key || '|' || h.model_id FROM head_sets h LEFT JOIN models m USING (model_id)
               WHERE h.set_name = ? GROUP BY h.set_key, h.model_id, m.step ORDER BY m.step NULLS FIRST, 1""",
            [set_name],
        ).fetchall()
    )
    return HeadMap(
        kind="set",
        source_id=f"{set_key}|{model_id}",
        title=f"head set {set_name} on {label}",
        n_layers=n_layers,
        n_heads=n_heads,
        cells=cells,
        model_id=model_id,
        dataset=ds[0] if ds else None,
        cohort_key=ctx["cohort_key"] if ctx else None,
        cohort_steps=steps,
        max_score=max((abs(s) for s, _ in raw.values() if s is not None), default=0.0),
        siblings=siblings,
        circuit_id=ds[1] if ds else None,
    )


def head_map(con: duckdb.DuckDBPyConnection, kind: str, source_id: str) -> HeadMap:
    """Dispatch on ``kind``; a set's id is ``set_key|model_id``."""
    if kind == "circuit":
        return head_map_for_circuit(con, source_id)
    set_key, _, model_id = source_id.partition("|")
    return head_map_for_set(con, set_key, model_id)


def default_circuit(con: duckdb.DuckDBPyConnection) -> str | None:
    """The circuit to show first: the latest checkpoint's, else any."""
    row = con.execute(
        """SELECT c.circuit_id FROM circuits c LEFT JOIN models m USING (model_id)
           ORDER BY m.step DESC NULLS LAST, c.dataset, c.circuit_id LIMIT 1"""
    ).fetchone()
    return row[0] if row else None
