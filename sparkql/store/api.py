"""Opening the results store (torch-free).

DuckDB lets one process open a file for writing *or* several open it
read-only, never both at once. So the writer (:class:`Store`, used by the
executor) opens the file only inside each transaction and closes it right
after, and readers (:func:`connect`, ``sparkql sql``, the TUI, notebooks)
retry briefly when they meet the writer's lock. Keep reader connections short
for the same reason: a reader that holds the file open makes the writer wait.

Within one process DuckDB refuses a read-only and a read-write connection to
the same file at the same time: close a :func:`connect` connection before
running a study in the same process.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb

from sparkql.errors import SparkError
from sparkql.store.lock import describe_holder, is_held, read_holder
from sparkql.store.migrations import ensure_schema
from sparkql.store.schema import OWNER_COLUMNS
from sparkql.store.write import insert, insert_all

READ_TIMEOUT_S = 10.0
"""How long a reader waits for the writer's transaction to end."""
WRITE_TIMEOUT_S = 120.0
"""How long the writer waits for readers (a long query in `sparkql sql`) to let go."""


def _is_lock_error(e: Exception) -> bool:
    msg = str(e)
    return "lock" in msg.lower() and ("Could not set lock" in msg or "Conflicting lock" in msg)


def _busy_error(db: Path, e: Exception, waited: float, read_only: bool) -> SparkError:
    if is_held(db):
        who = describe_holder(read_holder(db))
    else:
        # DuckDB's message names the conflicting process: "Conflicting lock is held in ... (PID n)"
        msg = str(e)
        i = msg.find("(PID")
        who = "process " + msg[i + 1 : msg.find(")", i)] if i >= 0 else "another process"
    action = "read" if read_only else "write"
    return SparkError(
        f"could not {action} the results store {db}: it stayed locked by {who} for {waited:.0f} s",
        file=str(db),
        hint="the writer holds the file only while it commits a step; retry in a moment"
        if read_only
        else "close other programs that hold the store open (a long `sparkql sql`, a notebook connection)",
    )


def open_db(db: str | os.PathLike, read_only: bool = True, timeout: float | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection, retrying with backoff while another process holds a conflicting lock."""
    db = Path(db)
    if timeout is None:
        timeout = READ_TIMEOUT_S if read_only else WRITE_TIMEOUT_S
    if read_only and not db.exists():
        raise SparkError(
            f"no results store at {db}", file=str(db),
            hint="run a study first (`sparkql run study.spark --db FILE`) or pass the right --db",
        )
    start = time.monotonic()
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(db), read_only=read_only)
        except duckdb.IOException as e:
            if not _is_lock_error(e):
                raise SparkError(f"cannot open the results store {db}: {e}", file=str(db)) from None
            waited = time.monotonic() - start
            if waited >= timeout:
                raise _busy_error(db, e, waited, read_only) from None
            time.sleep(min(delay, max(timeout - waited, 0.0)) * (1 + 0.25 * random.random()))
            delay = min(delay * 2, 0.2)
        except duckdb.Error as e:
            raise SparkError(f"cannot open the results store {db}: {e}", hint="is it a DuckDB file?",
                             file=str(db)) from None


def connect(db: str | os.PathLike = "sparkql.duckdb", read_only: bool = True, timeout: float | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to a results store (read-only by default), for notebooks and commands.

    Retries briefly while a run commits a step, then raises a SparkError naming
    the holder. Close it when done (or use it as a context manager): an open
    read connection makes a running study wait at its next commit.
    """
    con = open_db(db, read_only=read_only, timeout=timeout)
    if read_only:
        if _is_old(con):
            # a store written by an older sparkql: migrate it (best effort) so views exist
            con.close()
            _migrate(Path(db))
            con = open_db(db, read_only=True, timeout=timeout)
        return con
    try:
        con.execute("BEGIN")
        ensure_schema(con, where=str(db))
        con.execute("COMMIT")
    except BaseException:
        con.close()
        raise
    return con


def _is_old(con) -> bool:
    from sparkql.store.migrations import current_version
    from sparkql.store.schema import SCHEMA_VERSION

    try:
        version = current_version(con)
    except duckdb.Error:
        return False
    return version is not None and version < SCHEMA_VERSION


def _migrate(db: Path) -> None:
    """Best effort: a store busy with a run is read as it is (the run migrated it when it started)."""
    try:
        con = duckdb.connect(str(db))
    except duckdb.Error:
        return
    try:
        con.execute("BEGIN")
        ensure_schema(con, where=str(db))
        con.execute("COMMIT")
    finally:
        con.close()


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
            except BaseException:
                self.close()  # never keep a connection in an unknown state
                raise
            self._release_later()

    def query(self, sql: str, params: list | tuple | None = None) -> list[tuple]:
        """Run a read query and return all rows."""
        with self.transaction() as con:
            return con.execute(sql, params or []).fetchall()

    def query_arrow(self, sql: str, params: list | tuple | None = None):
        """Run a read query and return a pyarrow.Table (for bulk reads such as edges)."""
        with self.transaction() as con:
            return con.execute(sql, params or []).to_arrow_table()

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
