"""Schema versions and migrations of the results store.

The version lives in ``meta`` under the key ``schema_version``. A fresh store
is created from :data:`sparkql.store.schema.TABLES` (always the latest shape)
and stamped with :data:`SCHEMA_VERSION`; an older store is brought up to date
by running :data:`MIGRATIONS` ``v -> v+1`` in order, in the writer's
transaction, so a crash mid-migration leaves the old version intact. Views
and indexes are (re)created afterwards either way, so they always match this
build. A store written by a *newer* sparkql is refused rather than guessed at.
"""

from __future__ import annotations

from sparkql.errors import SparkError
from sparkql.store.schema import INDEXES, SCHEMA_VERSION, TABLES, VIEWS

# target version -> statements that bring a store of version (target - 1) to it.
MIGRATIONS: dict[int, list[str]] = {
    2: [
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS error VARCHAR",
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_steps INTEGER",
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_cached INTEGER",
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_done INTEGER",
        "ALTER TABLE steps ADD COLUMN IF NOT EXISTS started_at TIMESTAMP",
        "ALTER TABLE models ADD COLUMN IF NOT EXISTS dir VARCHAR",
        "ALTER TABLE models ADD COLUMN IF NOT EXISTS hidden_size INTEGER",
        "ALTER TABLE head_sets ADD COLUMN IF NOT EXISTS kind VARCHAR",
        "ALTER TABLE cohort_checkpoints ADD COLUMN IF NOT EXISTS idx INTEGER",
        "ALTER TABLE cohort_checkpoints ADD COLUMN IF NOT EXISTS circuit_id VARCHAR",
        "ALTER TABLE cohort_checkpoints ADD COLUMN IF NOT EXISTS reward_key VARCHAR",
        "ALTER TABLE cohort_checkpoints ADD COLUMN IF NOT EXISTS n_base INTEGER",
        "ALTER TABLE cohort_heads ADD COLUMN IF NOT EXISTS origin VARCHAR",
        "ALTER TABLE cohort_heads ADD COLUMN IF NOT EXISTS n_active INTEGER",
        TABLES["cohort_members"],
        "ALTER TABLE evals ADD COLUMN IF NOT EXISTS grader VARCHAR",
    ],
    3: [
        "ALTER TABLE evals ADD COLUMN IF NOT EXISTS extract VARCHAR",
        "ALTER TABLE evals ADD COLUMN IF NOT EXISTS regraded_from VARCHAR",
        # every eval written before v3 was graded with the one rule there was: the last \boxed{}
        "UPDATE evals SET extract = 'strict' WHERE extract IS NULL",
    ],
    4: [
        "ALTER TABLE evals ADD COLUMN IF NOT EXISTS dtype VARCHAR",
        "ALTER TABLE evals ADD COLUMN IF NOT EXISTS canary_agreement DOUBLE",
    ],
    5: [
        "ALTER TABLE circuits ADD COLUMN IF NOT EXISTS scores_id VARCHAR",
        "ALTER TABLE circuits ADD COLUMN IF NOT EXISTS dtype VARCHAR",
        "ALTER TABLE circuits ADD COLUMN IF NOT EXISTS device VARCHAR",
        "ALTER TABLE evals ADD COLUMN IF NOT EXISTS device VARCHAR",
        TABLES["scorings"],
        TABLES["scored_pairs"],
        TABLES["edge_scores"],
    ],
    6: [
        # random-head controls: what a variant was drawn from, and what a chosen one edits
        "ALTER TABLE variants ADD COLUMN IF NOT EXISTS top_k INTEGER",
        "ALTER TABLE variants ADD COLUMN IF NOT EXISTS control VARCHAR",
        "ALTER TABLE variants ADD COLUMN IF NOT EXISTS draw INTEGER",
        "ALTER TABLE variants ADD COLUMN IF NOT EXISTS matches VARCHAR",
        "ALTER TABLE variants ADD COLUMN IF NOT EXISTS matched VARCHAR[]",
        # selection stability of a circuit's or an emergent set's heads (sparkql.store.stability)
        "ALTER TABLE head_sets ADD COLUMN IF NOT EXISTS stability DOUBLE",
    ],
    7: [
        # `with folds = K`: which fold a scoring left out, the rows its pairs came from, and each
        # head's selection frequency over the folds
        "ALTER TABLE scorings ADD COLUMN IF NOT EXISTS fold INTEGER",
        "ALTER TABLE scorings ADD COLUMN IF NOT EXISTS folds INTEGER",
        "ALTER TABLE scored_pairs ADD COLUMN IF NOT EXISTS row_id VARCHAR",
        TABLES["fold_heads"],
    ],
}


def current_version(con, where: str = "the store") -> int | None:
    """The store's schema version; None for an empty database (no ``meta`` table). A version that
    is not a whole number (a hand-edited or damaged store) is a SparkError."""
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open and refuses con.sql() after it
    has_meta = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'meta' AND schema_name = 'main'"
    ).fetchall()[0][0]
    if not has_meta:
        return None
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    if not rows:
        return None
    try:
        return int(rows[0][0])
    except (TypeError, ValueError):
        raise SparkError(f"{where} has schema_version {rows[0][0]!r} in its meta table, which is not a number",
                         hint="the store is damaged or was not written by sparkql; point --db at another file",
                         file=where) from None


def ensure_schema(con, where: str = "store") -> int:
    """Create or migrate the schema inside the caller's transaction; returns the version found
    (None-equivalent 0 for a fresh store)."""
    found = current_version(con, where)
    if found is not None and found > SCHEMA_VERSION:
        raise SparkError(
            f"{where} has schema version {found}, newer than this sparkql understands ({SCHEMA_VERSION})",
            hint="upgrade sparkql, or use another --db", file=where,
        )
    if found is None:
        has_any = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()[0][0]
        if has_any:
            raise SparkError(
                f"{where} is a DuckDB file but not a sparkql store (no meta.schema_version)",
                hint="point --db at a new file or an existing sparkql store", file=where,
            )
        for ddl in TABLES.values():
            con.execute(ddl)
    else:
        for target in range(found + 1, SCHEMA_VERSION + 1):
            for stmt in MIGRATIONS[target]:
                con.execute(stmt)
    for ddl in INDEXES.values():
        con.execute(ddl)
    for ddl in VIEWS.values():
        con.execute(ddl)
    if found != SCHEMA_VERSION:
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )
    return found or 0
