"""The one place sparkql opens a DuckDB file (torch-free, textual-free).

Every command, the TUI and :func:`sparkql.connect` open the results store
through :func:`open_db`, so they share two behaviours:

* **The writer's lock.** DuckDB lets one process open a file for writing *or*
  several open it read-only. A run holds the file only while it commits a
  step, so a reader that meets its lock retries with backoff for ``timeout``
  seconds and then raises :class:`StoreBusy`, naming the holder. The CLI
  waits up to :data:`READ_TIMEOUT_S`; the TUI passes a short timeout and
  retries on its next poll instead of freezing the interface.
* **Locked readers.** A read-only connection is opened with
  :data:`READER_CONFIG`: no extension is installed (which writes under
  ``~/.duckdb``) or loaded (which could bring functions that write), no
  persistent secret is stored, and ``lock_configuration`` makes every later
  ``SET``/``PRAGMA``/``enable_logging()`` fail, so profiling or log output
  cannot be pointed at a file. Reading local files (``read_csv``,
  ``read_parquet``) stays possible: it is the user's own machine. What such a
  connection may *run* is the business of :mod:`sparkql.store.readonly`.

DuckDB refuses, within one process, two connections to the same file with
different configurations: close a reader before opening the same store with
plain ``duckdb.connect`` (or before running a study) in the same process.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import duckdb

from sparkql.errors import SparkError
from sparkql.store.lock import describe_holder, is_held, read_holder, refuse_non_file_name

READ_TIMEOUT_S = 10.0
"""How long a reader waits for the writer's transaction to end."""
WRITE_TIMEOUT_S = 120.0
"""How long the writer waits for readers (a long query in `sparkql sql`) to let go."""

READER_CONFIG: dict[str, bool] = {
    "autoinstall_known_extensions": False,  # INSTALL writes ~/.duckdb/extensions/...
    "autoload_known_extensions": False,  # a loaded extension may bring functions that write
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,  # CREATE PERSISTENT SECRET writes ~/.duckdb/stored_secrets
    "lock_configuration": True,  # last: nothing above (nor profiling/log output) can be SET back
}
"""Settings of every read-only connection (applied when the file is opened)."""


class StoreBusy(SparkError):
    """Another process held a conflicting lock on the store for longer than the timeout."""


class StoreUnavailable(SparkError):
    """The file cannot be opened as a DuckDB database (missing, not DuckDB, unreadable)."""


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return "could not set lock" in msg or "conflicting lock" in msg or "resource temporarily unavailable" in msg


def _process(pid: str) -> str:
    """`process PID 123 (sparkql sql ...)`: the pid and, where /proc tells, its command line."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return f"process PID {pid}" + (f" ({cmd[:80]})" if cmd else "")


def _busy_error(db: Path, e: Exception, waited: float, read_only: bool) -> StoreBusy:
    # A reader meets the writer, which holds the run lock: name that run. The writer holds the run
    # lock too, so for it the lock file names its own run: the one in its way is the reader DuckDB
    # names ("Conflicting lock is held in ... (PID n)").
    msg = str(e)
    i = msg.find("(PID ")
    pid = msg[i + 5 : msg.find(")", i)].strip() if i >= 0 else None
    if read_only and is_held(db):
        who = describe_holder(read_holder(db))
    elif pid and pid != str(os.getpid()):
        who = _process(pid)
    else:
        who = "another process"
    action = "read" if read_only else "write"
    return StoreBusy(
        f"could not {action} the results store {db}: it stayed locked by {who} for {waited:.0f} s",
        file=str(db),
        hint="the writer holds the file only while it commits a step; retry in a moment"
        if read_only
        else "close other programs that hold the store open (a long `sparkql sql`, a notebook connection)",
    )


def open_db(db: str | os.PathLike, read_only: bool = True, timeout: float | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to ``db``, retrying with backoff while another process holds a conflicting lock.

    Read-only connections are locked (:data:`READER_CONFIG`) and never create
    the file. Raises :class:`StoreBusy` after ``timeout`` seconds (default
    :data:`READ_TIMEOUT_S` for readers, :data:`WRITE_TIMEOUT_S` for the
    writer) and :class:`StoreUnavailable` for a file DuckDB cannot open.
    """
    db = Path(db)
    if timeout is None:
        timeout = READ_TIMEOUT_S if read_only else WRITE_TIMEOUT_S
    refuse_non_file_name(db, StoreUnavailable)
    if read_only and not db.is_file():
        what = "is a directory, not a results store" if db.is_dir() else "does not exist" if not db.exists() else "is not a regular file"
        raise StoreUnavailable(
            f"no results store at {db}: it {what}", file=str(db),
            hint="run a study first (`sparkql run study.spark --db FILE`) or pass the right --db",
        )
    config = READER_CONFIG if read_only else {}
    start = time.monotonic()
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(db), read_only=read_only, config=config)
        except (duckdb.IOException, duckdb.ConnectionException) as e:
            if not _is_lock_error(e):
                raise StoreUnavailable(f"cannot open the results store {db}: {e}", file=str(db),
                                       hint=_open_hint(e, db)) from None
            waited = time.monotonic() - start
            if waited >= timeout:
                raise _busy_error(db, e, waited, read_only) from None
            time.sleep(min(delay, max(timeout - waited, 0.0)) * (1 + 0.25 * random.random()))
            delay = min(delay * 2, 0.2)
        except duckdb.Error as e:
            raise StoreUnavailable(f"cannot open the results store {db}: {e}", hint=_open_hint(e, db),
                                   file=str(db)) from None


def _open_hint(e: Exception, db: Path) -> str | None:
    if "different configuration" in str(e):
        return ("this process already has the store open another way (a plain duckdb.connect, or a writer): "
                "close that connection first")
    if db.is_dir():
        return "--db names a directory; give a file path, e.g. --db results.duckdb"
    return "--db must be a DuckDB file written by `sparkql run`, or a path where none exists yet"


def upgrade_hint(db: str | os.PathLike) -> str:
    return (f"only writers migrate a store: run a study into it, or `sparkql sql --write \"SELECT 1\" --db {db}` "
            "upgrades it in place")


def require_current_schema(con: duckdb.DuckDBPyConnection, db: str | os.PathLike) -> None:
    """Refuse, with the way out, a store older than this build for a command that reads its newer columns.

    Readers never migrate (that would write); ``sparkql sql`` reads an older
    store as it is, but the figures and the diff need this build's shape.
    """
    from sparkql.store.migrations import current_version
    from sparkql.store.schema import SCHEMA_VERSION

    version = current_version(con, str(db))  # a version that is not a number is a SparkError there
    if version is not None and version < SCHEMA_VERSION:
        raise SparkError(
            f"{db} has schema version {version}; this sparkql reads version {SCHEMA_VERSION}",
            file=str(db), hint=upgrade_hint(db),
        )
