"""The results store's handles (torch-free): :func:`connect` for readers, :class:`Store` for the writer.

Both open the file through :func:`sparkql.store.connection.open_db`, the one
place that calls ``duckdb.connect``: readers retry briefly while the writer
commits, and get a locked connection that runs queries only
(:mod:`sparkql.store.readonly`). The writer opens the file only inside each
transaction and closes it right after, so readers (``sparkql sql``, the TUI,
notebooks) can work during a run. Keep reader connections short for the same
reason: a reader that holds the file open makes the writer wait.

Within one process DuckDB refuses a read-only and a read-write connection to
the same file at the same time: close a :func:`connect` connection before
running a study in the same process.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb

from sparkql.errors import SparkError
from sparkql.store.connection import READ_TIMEOUT_S, WRITE_TIMEOUT_S, open_db  # noqa: F401 - re-exported
from sparkql.store.migrations import ensure_schema
from sparkql.store.readonly import QueryOnlyConnection
from sparkql.store.schema import OWNER_COLUMNS
from sparkql.store.write import insert, insert_all


def connect(db: str | os.PathLike = "sparkql.duckdb", read_only: bool = True,
            timeout: float | None = None) -> QueryOnlyConnection | duckdb.DuckDBPyConnection:
    """A connection to a results store, for notebooks (``sparkql.connect``).

    Read-only (the default): a :class:`~sparkql.store.readonly.QueryOnlyConnection`
    that runs queries only and writes nothing, not the store and not any other
    file; a store written by an older sparkql is read as it is (only writers
    migrate). ``read_only=False``: DuckDB's own read-write connection, with
    the schema created or migrated. Retries briefly while a run commits a step,
    then raises a SparkError naming the holder. Close it when done (or use it
    as a context manager): an open read connection makes a running study wait
    at its next commit.
    """
    con = open_db(db, read_only=read_only, timeout=timeout)
    if read_only:
        return QueryOnlyConnection(con)
    try:
        con.execute("BEGIN")
        ensure_schema(con, where=str(db))
        con.execute("COMMIT")
    except BaseException:
        con.close()
        raise
    return con


def completed_keys(db: str | os.PathLike) -> set[str]:
    """Keys of the steps complete in a store; empty when the file does not exist (yet)."""
    if not Path(db).exists():
        return set()
    con = open_db(db, read_only=True)
    try:
        has = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'steps' AND schema_name = 'main'"
        ).fetchall()[0][0]
        if not has:
            return set()
        return {r[0] for r in con.execute("SELECT key FROM steps").fetchall()}
    finally:
        con.close()


class Store:
    """The executor's handle on the store. Holds the file only while it uses it.

    ``query`` and ``write`` are what handlers see through ``RunContext``;
    ``complete_step`` is the executor's atomic "results + completion mark".

    Opening a DuckDB file costs tens of milliseconds, so the connection is kept
    for :data:`IDLE_CLOSE_S` after each use and reused by the next query or
    transaction: a burst of small steps opens the file once, while a reader
    (``sparkql sql``, the TUI) waits at most for the current transaction plus that
    idle time. Committed transactions are durable (DuckDB's WAL is synced at
    COMMIT) whether or not the connection has been closed yet.
    """

    IDLE_CLOSE_S = 0.25

    def __init__(self, db: str | os.PathLike, timeout: float | None = None) -> None:
        self.path = Path(db)
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._timer: threading.Timer | None = None
        with self.transaction() as con:
            self.found_version = ensure_schema(con, where=str(self.path))

    def _acquire(self) -> duckdb.DuckDBPyConnection:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._con is None:
            self._con = open_db(self.path, read_only=False, timeout=self.timeout)
        return self._con

    def _release_later(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self.IDLE_CLOSE_S, self.close)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        """Close the file now (the executor calls this at the end of a run)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._con is not None:
                con, self._con = self._con, None
                con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN, yield, COMMIT; ROLLBACK on any exception (Ctrl-C included)."""
        with self._lock:
            con = self._acquire()
            try:
                con.execute("BEGIN")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            except BaseException as e:
                self.close()  # never keep a connection in an unknown state
                if isinstance(e, duckdb.Error) and (why := _write_failure(e)):
                    raise SparkError(
                        f"could not write the results store {self.path}: {why}", file=str(self.path),
                        hint="free space (or move the store with --db) and rerun the same command: the steps "
                        "already saved are kept, and the run resumes at the one that was being saved",
                    ) from None
                raise
            self._release_later()

    def query(self, sql: str, params: list | tuple | None = None) -> list[tuple]:
        """Run a read query and return all rows."""
        with self.transaction() as con:
            return con.execute(sql, params or []).fetchall()

    def query_arrow(self, sql: str, params: list | tuple | None = None):
        """Run a read query and return a pyarrow.Table (for bulk reads such as edges)."""
        with self.transaction() as con:
            return con.sql(sql, params=list(params or [])).to_arrow_table()

    def write(self, tables: dict[str, Any]) -> dict[str, int]:
        """Append tables in one transaction (incremental results, e.g. samples as they finish)."""
        with self.transaction() as con:
            return insert_all(con, tables)

    def completed_keys(self) -> set[str]:
        return {r[0] for r in self.query("SELECT key FROM steps")}

    def complete_step(self, step, output, *, run_id: str, started_at, seconds: float) -> dict[str, int]:
        """Write a step's results and its completion mark in ONE transaction.

        Order inside the transaction: rows this step wrote before (a rerun) are deleted
        from the tables it owns (``OWNER_COLUMNS``), then ``output.apply`` runs (so it may
        delete rows of its own before they are re-inserted), then the tables are appended,
        then the ``steps`` row is written.
        """
        with self.transaction() as con:
            for table in output.tables or {}:
                col = OWNER_COLUMNS.get(table)
                if col:
                    con.execute(f"DELETE FROM {table} WHERE {col} = ?", [step.key])
            if output.apply is not None:
                output.apply(con)
            counts = insert_all(con, output.tables)
            summary = dict(output.summary or {})
            con.execute(
                "INSERT OR REPLACE INTO steps (key, kind, label, run_id, completed_at, seconds, summary, started_at) "
                "VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?, ?, ?)",
                [step.key, step.kind, step.label, run_id, seconds, json.dumps(summary, default=_json_default), started_at],
            )
        return counts

    # runs bookkeeping -------------------------------------------------------------------
    def start_run(self, *, study_path: str, study_text: str | None, n_steps: int, n_cached: int, version: str) -> str:
        import socket

        run_id = uuid.uuid4().hex[:16]
        with self.transaction() as con:
            # We hold the run lock, so any run still marked running died without saying so.
            con.execute("UPDATE runs SET status = 'killed', error = 'the process ended without finishing' "
                        "WHERE status = 'running'")
            insert(con, "runs", [{
                "run_id": run_id, "study_path": study_path, "study_text": study_text,
                "started_at": _now(), "status": "running", "sparkql_version": version,
                "host": socket.gethostname(), "pid": os.getpid(),
                "n_steps": n_steps, "n_cached": n_cached, "n_done": 0,
            }])
        return run_id

    def finish_run(self, run_id: str, status: str, n_done: int, error: str | None = None) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, finished_at = ?, n_done = ?, error = ? WHERE run_id = ?",
                [status, _now(), n_done, error, run_id],
            )


# What the operating system says when a write cannot happen, as DuckDB passes it on
# ("Could not write file ...: No space left on device"), and how to say it to a user.
_WRITE_FAILURES = {
    "no space left on device": "the disk is full",
    "file too large": "the file reached the size limit of this process or file system",
    "disk quota exceeded": "the disk quota is exceeded",
    "read-only file system": "its file system is read-only",
    "permission denied": "permission denied",
}


def _write_failure(e: Exception) -> str | None:
    msg = str(e).lower()
    return next((why for key, why in _WRITE_FAILURES.items() if key in msg), None)


def _json_default(o):
    """numpy scalars and arrays as numbers and lists; anything else as its text."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def _now():
    import datetime as dt

    return dt.datetime.now()
