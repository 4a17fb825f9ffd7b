"""Everything the TUI reads from the results store: plain SQL over DuckDB.

This module never imports textual (tests call it directly) and never writes.
Every public function takes an open connection from :func:`connect`, which
opens the file read-only and is meant to be held briefly (open, query,
close): a ``sparkql run`` writer in another process holds the file only
while it writes, and DuckDB refuses to open a file another process holds
read-write, so a reader that kept it open would block the writer, and a
reader that fails must retry rather than crash (:class:`StoreBusy`).

Only the tables of ``sparkql/store/schema.py`` are read, never views, so the
TUI works on any store whose ``meta.schema_version`` matches.
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import duckdb

from sparkql.store.cohorts import pick_reward_key
from sparkql.store.schema import SCHEMA_VERSION, TABLES

# Tables the TUI reads; a store lacking one is older than this build.
REQUIRED_TABLES = tuple(TABLES)


class StoreBusy(Exception):
    """The file is held read-write by another process (a run is writing)."""


class StoreUnavailable(Exception):
    """The file cannot be read as a sparkql store (missing, not DuckDB, ...)."""


def _is_lock_error(err: Exception) -> bool:
    text = str(err).lower()
    return "lock" in text or "conflicting" in text or "resource temporarily unavailable" in text


@contextlib.contextmanager
def connect(path: str | os.PathLike[str], *, attempts: int = 4, delay: float = 0.05) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``path`` read-only for the duration of a ``with`` block.

    Retries a few times over ~0.5 s when a writer holds the lock, then raises
    :class:`StoreBusy` so that the caller (a worker) can show a note and try
    again on its next tick instead of blocking the interface.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise StoreUnavailable(f"no such file: {path}")
    last: Exception | None = None
    for i in range(attempts):
        try:
            con = duckdb.connect(path, read_only=True)
        except (duckdb.IOException, duckdb.ConnectionException) as e:
            if not _is_lock_error(e):
                raise StoreUnavailable(str(e)) from e
            last = e
            time.sleep(delay * (2**i))
            continue
        except duckdb.Error as e:  # not a DuckDB file, corrupt, ...
            raise StoreUnavailable(str(e)) from e
        try:
            yield con
        finally:
            con.close()
        return
    raise StoreBusy(str(last))


# ---------------------------------------------------------------------------
# Small result types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A query result ready for a DataTable."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False


def _table(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = (), limit: int | None = None) -> Table:
    cur = con.execute(sql, list(params))
    columns = [d[0] for d in cur.description] if cur.description else []
    if limit is None:
        return Table(columns, cur.fetchall())
    rows = cur.fetchmany(limit + 1)
    return Table(columns, rows[:limit], truncated=len(rows) > limit)


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    t = _table(con, sql, params)
    return [dict(zip(t.columns, r)) for r in t.rows]


# ---------------------------------------------------------------------------
# Store health: missing, empty, not sparkql, older schema
# ---------------------------------------------------------------------------


class StoreState(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    EMPTY = "empty"  # a DuckDB file without tables
    NOT_SPARKQL = "not_sparkql"  # tables, but no meta.schema_version
    OLDER = "older"
    NEWER = "newer"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class StoreCheck:
    state: StoreState
    message: str
    version: int | None = None
    has_results: bool = False  # at least one model, circuit or eval

    @property
    def usable(self) -> bool:
        return self.state in (StoreState.OK, StoreState.NEWER)


def check_store(path: str | os.PathLike[str]) -> StoreCheck:
    """Say whether ``path`` is a sparkql store this build can browse, and why not."""
    name = os.path.basename(os.fspath(path))
    if not os.path.exists(path):
        return StoreCheck(
            StoreState.MISSING,
            f"{name}: no such file. Run a study first (sparkql run STUDY --db {name}) or pass another path.",
        )
    try:
        with connect(path) as con:
            return check_connection(con, name)
    except StoreBusy:
        raise
    except StoreUnavailable as e:
        return StoreCheck(StoreState.UNREADABLE, f"{name} cannot be read as a DuckDB database: {e}")


def check_connection(con: duckdb.DuckDBPyConnection, name: str) -> StoreCheck:
    """:func:`check_store` on an open connection (so a caller can go on to query with it)."""
    # duckdb_tables(), not information_schema: the latter costs tens of ms at start-up.
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    if not tables:
        return StoreCheck(StoreState.EMPTY, f"{name} is an empty database: no sparkql results yet. Run a study into it with `sparkql run`.")
    version = None
    if "meta" in tables:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            try:
                version = int(row[0])
            except (TypeError, ValueError):
                version = None
    if version is None:
        return StoreCheck(
            StoreState.NOT_SPARKQL,
            f"{name} has no schema_version in its meta table: it is not a sparkql store, "
            "or it was written by an older sparkql. Re-run the study with this version.",
        )
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if version < SCHEMA_VERSION or missing:
        why = f"schema version {version}, this build reads {SCHEMA_VERSION}"
        if missing:
            why += f"; missing tables: {', '.join(missing)}"
        return StoreCheck(
            StoreState.OLDER,
            f"{name} was written by an older sparkql ({why}). Open it once with the current `sparkql run` to migrate it.",
            version,
        )
    has = con.execute(
        "SELECT (SELECT count(*) FROM models) + (SELECT count(*) FROM circuits) + (SELECT count(*) FROM evals)"
    ).fetchone()[0] > 0
    if version > SCHEMA_VERSION:
        return StoreCheck(
            StoreState.NEWER,
            f"{name} has schema version {version}, newer than this build ({SCHEMA_VERSION}); showing what it can.",
            version,
            has,
        )
    return StoreCheck(StoreState.OK, "", version, has)


def fingerprint(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """A cheap value that changes whenever a writer commits results.

    Row counts of the tables a run appends to, plus the latest step and run
    timestamps; a rerun that only updates grading changes ``steps``.
    """
    return tuple(
        con.execute(
            """SELECT (SELECT count(*) FROM runs), (SELECT max(finished_at) FROM runs),
                      (SELECT count(*) FROM steps), (SELECT max(completed_at) FROM steps),
                      (SELECT count(*) FROM circuits), (SELECT count(*) FROM head_sets),
                      (SELECT count(*) FROM cohort_checkpoints), (SELECT count(*) FROM evals),
                      (SELECT count(*) FROM samples), (SELECT count(*) FROM metrics),
                      (SELECT list(status ORDER BY run_id) FROM runs)"""
        ).fetchone()
    )


# ---------------------------------------------------------------------------
# Runs and studies
# ---------------------------------------------------------------------------

ALL_RUNS = "*"  # pseudo run id: every result in the store


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


def _scope(run_id: str) -> tuple[str, list[Any]]:
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


_LABEL = "coalesce(m.label, m.name, {col})"


def study_contents(con: duckdb.DuckDBPyConnection, run_id: str = ALL_RUNS) -> StudyContents:
    """Models, checkpoint series, circuits, head sets and evals of one study."""
    pred, params = _scope(run_id)
    circuits = [
        CircuitRow(*r)
        for r in con.execute(
            f"""SELECT c.circuit_id, c.model_id, {_LABEL.format(col='c.model_id')}, m.name, m.step, c.dataset,
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
            f"""SELECT h.set_key, h.set_name, h.model_id, {_LABEL.format(col='h.model_id')}, m.step, count(*)
                FROM (SELECT *, set_key AS k FROM head_sets) h LEFT JOIN models m USING (model_id)
                WHERE {pred}
                GROUP BY ALL ORDER BY h.set_name, m.step NULLS FIRST, 4""",
            params,
        ).fetchall()
    ]
    evals = [
        EvalRow(*r)
        for r in con.execute(
            f"""SELECT e.eval_id, {_LABEL.format(col='e.model_id')}, coalesce(e.variant, 'intact'), e.dataset, e.n, e.n_problems
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


# ---------------------------------------------------------------------------
# Head map
# ---------------------------------------------------------------------------


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
        f"""SELECT c.model_id, c.dataset, {_LABEL.format(col='c.model_id')}, m.name, c.method, c.top_n, c.tau, c.metric
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


# ---------------------------------------------------------------------------
# Head detail
# ---------------------------------------------------------------------------


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
    across = _table(
        con,
        f"""SELECT {_LABEL.format(col='c.model_id')} AS model, m.step, c.dataset,
                   round(n.score, 4) AS score, coalesce(n.in_circuit, FALSE) AS in_circuit
            FROM circuits c LEFT JOIN models m USING (model_id)
            LEFT JOIN nodes n ON n.circuit_id = c.circuit_id AND n.kind = 'head' AND n.layer = ? AND n.head = ?
            WHERE ? IS NULL OR c.dataset = ?
            ORDER BY c.dataset, m.name NULLS FIRST, m.step NULLS FIRST""",
        [layer, head, dataset, dataset],
    )
    cohorts = _table(
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
    sets = _table(
        con,
        f"""SELECT h.set_name AS "set", {_LABEL.format(col='h.model_id')} AS model, h.rank, round(h.score, 4) AS score
            FROM head_sets h LEFT JOIN models m USING (model_id)
            WHERE h.layer = ? AND h.head = ? ORDER BY h.set_name, m.name, m.step NULLS FIRST""",
        [layer, head],
    )
    edges = _table(
        con,
        """SELECT src, dst, round(score, 5) AS score, in_circuit FROM edges
           WHERE circuit_id = ? AND (src = ? OR starts_with(dst, ?))
           ORDER BY abs(score) DESC LIMIT ?""",
        [circuit_id, node, node + "<", n_edges],
    )
    return HeadDetail(layer, head, across, cohorts, sets, edges)


# ---------------------------------------------------------------------------
# Cohorts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortView:
    cohort_key: str
    set_name: str
    series: str | None
    steps: list[int]
    n_active: list[int | None]
    newly_activated: list[int | None]
    maintained: list[int | None]
    reward: list[float | None]  # at each checkpoint: as the cohort step read it, else the curve's last point up to it
    reward_key: str | None
    reward_steps: list[int]
    reward_values: list[float]
    # cohort step -> count of that cohort's heads active at each checkpoint in ``steps``
    stacked: dict[int, list[int]]


def cohort_view(con: duckdb.DuckDBPyConnection, cohort_key: str) -> CohortView:
    cps = con.execute(
        """SELECT cc.step, cc.n_active, cc.newly_activated, cc.maintained, cc.reward, cc.model_id, cc.set_name, m.name,
                  cc.reward_key
           FROM cohort_checkpoints cc LEFT JOIN models m USING (model_id)
           WHERE cc.cohort_key = ? ORDER BY cc.step""",
        [cohort_key],
    ).fetchall()
    if not cps:
        raise KeyError(f"no cohort {cohort_key}")
    steps = [r[0] for r in cps]
    set_name, series = cps[0][6], cps[0][7]
    # Reward curve: the log history of the last checkpoint covers the whole run.
    last_model = cps[-1][5]
    keys = [r[0] for r in con.execute("SELECT DISTINCT key FROM rewards WHERE model_id = ? ORDER BY key", [last_model]).fetchall()]
    # The key the cohort step read the reward from, else the best guess.
    key = cps[-1][8] if cps[-1][8] in keys else pick_reward_key(set(keys))
    if key is not None:
        pts = con.execute("SELECT step, avg(value) FROM rewards WHERE model_id = ? AND key = ? GROUP BY step ORDER BY step", [last_model, key]).fetchall()
    else:
        pts = [(r[0], r[4]) for r in cps if r[4] is not None]
        key = "reward" if pts else None
    # The stacked areas of figure 2 A: emergent heads active at each checkpoint, by cohort.
    stacked_rows = con.execute(
        """SELECT coalesce(cm.step, cm.idx), ch.cohort, count(*)
           FROM cohort_members cm
           JOIN nodes n ON n.circuit_id = cm.circuit_id AND n.kind = 'head' AND n.in_circuit
           JOIN cohort_heads ch ON ch.cohort_key = cm.cohort_key AND ch.layer = n.layer AND ch.head = n.head
           WHERE cm.cohort_key = ? AND ch.cohort IS NOT NULL AND coalesce(ch.origin, 'emergent') = 'emergent'
           GROUP BY ALL""",
        [cohort_key],
    ).fetchall()
    # Reward per checkpoint: the cohort step's own reading, else the last logged value at or before it.
    reward_at = []
    for r in cps:
        if r[4] is not None:
            reward_at.append(r[4])
            continue
        before = [v for s, v in pts if s is not None and s <= r[0]]
        reward_at.append(float(before[-1]) if before else None)
    index = {s: i for i, s in enumerate(steps)}
    stacked: dict[int, list[int]] = {}
    for step, cohort, n in stacked_rows:
        if step in index:
            stacked.setdefault(cohort, [0] * len(steps))[index[step]] = n
    return CohortView(
        cohort_key=cohort_key,
        set_name=set_name,
        series=series,
        steps=steps,
        n_active=[r[1] for r in cps],
        newly_activated=[r[2] for r in cps],
        maintained=[r[3] for r in cps],
        reward=reward_at,
        reward_key=key,
        reward_steps=[p[0] for p in pts],
        reward_values=[float(p[1]) for p in pts],
        stacked=dict(sorted(stacked.items())),
    )


# ---------------------------------------------------------------------------
# Evaluations
# ---------------------------------------------------------------------------

EVAL_COLUMNS = ["dataset", "model", "variant", "metric", "value", "stderr", "delta", "eval_id"]


def eval_table(con: duckdb.DuckDBPyConnection, run_id: str = ALL_RUNS) -> Table:
    """Intact vs variant: one row per eval and metric, with the change from intact.

    The intact row is the eval of the same model and dataset with variant
    'intact' (and the same n and think setting, so like is compared with like).
    """
    pred, params = _scope(run_id)
    return _table(
        con,
        f"""WITH e AS (SELECT *, eval_id AS k, coalesce(variant, 'intact') AS v FROM evals),
                mx AS (
                    SELECT e.eval_id, e.model_id, e.dataset, e.n, e.think, e.v, mt.metric, mt.k AS kk, mt.value, mt.stderr
                    FROM e JOIN metrics mt USING (eval_id) WHERE {pred})
            SELECT mx.dataset, {_LABEL.format(col='mx.model_id')} AS model, mx.v AS variant,
                   CASE WHEN mx.kk IS NULL THEN mx.metric ELSE replace(mx.metric, '@k', '@' || mx.kk) END AS metric,
                   mx.value, mx.stderr,
                   CASE WHEN mx.v = 'intact' THEN NULL ELSE mx.value - i.value END AS delta,
                   mx.eval_id
            FROM mx LEFT JOIN models m ON m.model_id = mx.model_id
            LEFT JOIN (SELECT e.model_id, e.dataset, e.n, e.think, mt.metric, mt.k, mt.value
                       FROM e JOIN metrics mt USING (eval_id) WHERE e.v = 'intact') i
              ON i.model_id = mx.model_id AND i.dataset IS NOT DISTINCT FROM mx.dataset AND i.n IS NOT DISTINCT FROM mx.n
                 AND i.think IS NOT DISTINCT FROM mx.think AND i.metric = mx.metric AND i.k IS NOT DISTINCT FROM mx.kk
            ORDER BY mx.dataset, model, mx.metric, mx.kk NULLS FIRST, mx.v <> 'intact', mx.v""",
        params,
    )


def intact_counterpart(con: duckdb.DuckDBPyConnection, eval_id: str) -> str | None:
    """The intact eval of the same model, dataset, n and think setting."""
    row = con.execute(
        """SELECT i.eval_id FROM evals e JOIN evals i
             ON i.model_id = e.model_id AND i.dataset IS NOT DISTINCT FROM e.dataset
            AND i.n IS NOT DISTINCT FROM e.n AND i.think IS NOT DISTINCT FROM e.think
           WHERE e.eval_id = ? AND coalesce(i.variant, 'intact') = 'intact' AND i.eval_id <> e.eval_id
           ORDER BY i.eval_id LIMIT 1""",
        [eval_id],
    ).fetchone()
    return row[0] if row else None


def eval_label(con: duckdb.DuckDBPyConnection, eval_id: str) -> str:
    row = con.execute(
        f"""SELECT {_LABEL.format(col='e.model_id')} || ' · ' || coalesce(e.variant, 'intact') || ' · ' || coalesce(e.dataset, '?')
            FROM evals e LEFT JOIN models m USING (model_id) WHERE e.eval_id = ?""",
        [eval_id],
    ).fetchone()
    return row[0] if row else eval_id


def problems(con: duckdb.DuckDBPyConnection, eval_id: str) -> Table:
    """Per problem of an eval: correct samples out of graded ones, and the most common answer.

    The answer is picked by count, ties going to the answer of the earliest sample: DuckDB's
    ``mode()`` breaks ties arbitrarily, so the column changed from one read to the next."""
    return _table(
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

    A problem is solved when at least one of its samples is correct, the
    definition ``sparkql diff`` uses: the shared logic of
    ``sparkql.runtime.grading.qualitative`` (torch-free) does the work when it is
    installed, so the TUI and the CLI always agree; otherwise the same
    definition in SQL. Each side shows its first correct sample, else its first.
    """
    try:
        from sparkql.runtime.grading import qualitative
    except ImportError:  # pragma: no cover - a build without the eval runtime
        return _eval_diff_sql(con, a, b)

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


def _eval_diff_sql(con: duckdb.DuckDBPyConnection, a: str, b: str) -> EvalDiff:
    """The same diff in SQL, for builds without ``sparkql.runtime.grading.qualitative``."""
    rows = con.execute(
        """WITH acc AS (
               SELECT eval_id, problem_id, avg(coalesce(correct, FALSE)::INT) AS acc, any_value(gold) AS gold
               FROM samples WHERE eval_id IN (?, ?) GROUP BY ALL),
           ch AS (
               SELECT pa.problem_id, pa.acc AS acc_a, pb.acc AS acc_b, coalesce(pb.gold, pa.gold) AS gold,
                      CASE WHEN pb.acc > 0 THEN 'newly correct' ELSE 'newly incorrect' END AS change
               FROM (SELECT * FROM acc WHERE eval_id = ?) pa JOIN (SELECT * FROM acc WHERE eval_id = ?) pb USING (problem_id)
               WHERE (pa.acc > 0) <> (pb.acc > 0)),
           pick AS (  -- first correct sample, else the first
               SELECT s.eval_id, s.problem_id, s.completion, s.extracted,
                      row_number() OVER (PARTITION BY s.eval_id, s.problem_id
                                         ORDER BY coalesce(s.correct, FALSE) DESC, s.sample_idx) AS rk
               FROM samples s JOIN ch USING (problem_id) WHERE s.eval_id IN (?, ?))
           SELECT ch.problem_id, ch.change, ch.acc_a, ch.acc_b, sa.completion, sb.completion, sa.extracted, sb.extracted, ch.gold
           FROM ch
           LEFT JOIN pick sa ON sa.problem_id = ch.problem_id AND sa.eval_id = ? AND sa.rk = 1
           LEFT JOIN pick sb ON sb.problem_id = ch.problem_id AND sb.eval_id = ? AND sb.rk = 1""",
        [a, b, a, b, a, b, a, b],
    ).fetchall()
    diff_rows = sorted((DiffRow(*r) for r in rows), key=lambda r: (r.change, _problem_order(r.problem_id)))
    return EvalDiff(a, b, eval_label(con, a), eval_label(con, b), diff_rows)


# ---------------------------------------------------------------------------
# SQL tab
# ---------------------------------------------------------------------------


class QueryTimeout(Exception):
    """A user's query ran past its time limit and was interrupted."""


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, limit: int = 1000, timeout: float | None = 15.0) -> Table:
    """Run a user's query on the read-only connection; at most ``limit`` rows come back.

    A query still running after ``timeout`` seconds is interrupted: while it
    runs the file stays open, and a ``sparkql run`` writing to the same store
    would wait for it at its next commit.
    """
    sql = sql.strip().rstrip(";")
    if not sql:
        return Table([], [])
    timer = threading.Timer(timeout, con.interrupt) if timeout else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        return _table(con, sql, limit=limit)
    except duckdb.InterruptException as e:
        raise QueryTimeout(f"query interrupted after {timeout:g} s (it would block a running study's writes)") from e
    finally:
        if timer is not None:
            timer.cancel()
