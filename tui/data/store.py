"""The store as the app sees it: open it briefly, say whether it can be browsed, notice new results.

Every query of the TUI runs on a connection from :func:`connect`, held only
for the query: a ``sparkql run`` writer in another process holds the file
only while it commits, DuckDB refuses to open a file another process holds
read-write, so a reader that kept it open would block the writer, and a
reader that meets the writer gives up quickly (:class:`StoreBusy`) and tries
again on the app's next poll instead of freezing the interface.

Only the tables of ``sparkql/store/schema.py`` are read, never views, so the
TUI works on any store whose ``meta.schema_version`` matches.
"""

from __future__ import annotations

import contextlib
import enum
import os
from dataclasses import dataclass
from typing import Any, Iterator

import duckdb

from sparkql.store.connection import StoreBusy, StoreUnavailable, open_db
from sparkql.store.schema import SCHEMA_VERSION, TABLES

__all__ = ["StoreBusy", "StoreUnavailable", "StoreState", "StoreCheck", "connect", "check_store",
           "check_connection", "fingerprint", "REQUIRED_TABLES"]

# Tables the TUI reads; a store lacking one is older than this build.
REQUIRED_TABLES = tuple(TABLES)

BUSY_TIMEOUT_S = 0.75
"""How long a TUI worker waits for a writer's commit before reporting the store busy."""


@contextlib.contextmanager
def connect(path: str | os.PathLike[str], *, timeout: float = BUSY_TIMEOUT_S) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``path`` read-only (locked: :func:`sparkql.store.connection.open_db`) for a ``with`` block.

    Raises :class:`StoreBusy` when a writer holds the lock for longer than
    ``timeout`` and :class:`StoreUnavailable` when the file cannot be opened.
    """
    con = open_db(path, read_only=True, timeout=timeout)
    try:
        yield con
    finally:
        con.close()


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
        return StoreCheck(StoreState.UNREADABLE, f"{name} cannot be read as a DuckDB database: {e.message}")


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
