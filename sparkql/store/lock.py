"""The run lock: one ``sparkql run`` per results store at a time.

DuckDB's own file lock only lasts as long as a connection, and the executor
opens the store only inside its transactions (so readers can work during a
run). Two runs could therefore interleave their transactions and both believe
they own the store. A lock file beside the store (``<db>.lock``), held with
``fcntl.flock`` for the whole run, prevents that: the kernel drops the lock
when the process dies (kill -9 included), so a crashed run never leaves a
stale lock behind. The file holds a JSON description of the holder (pid, host,
study, start time) for the error message of the run that is turned away. The
file itself is never deleted: unlinking a lock file races with a process that
has just opened it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path

from sparkql.errors import SparkError

try:  # POSIX; on other systems the run lock degrades to DuckDB's own file lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def refuse_non_file_name(db: str | os.PathLike, error: type[SparkError] = SparkError) -> None:
    """``--db ''``, ``.`` or ``:memory:`` name no file: refused before anything (a lock file
    beside it, a connection) is created."""
    if str(db) in ("", ".") or str(db).startswith(":memory:"):
        raise error(f"--db {str(db)!r} is not a file: results go to a DuckDB file on disk",
                    hint="give a path, e.g. --db results.duckdb", file=str(db))


def lock_path(db: str | os.PathLike) -> Path:
    return Path(str(db) + ".lock")


def read_holder(db: str | os.PathLike) -> dict | None:
    """The description written by the run holding (or last holding) the lock, if any."""
    try:
        text = lock_path(db).read_text()
    except OSError:
        return None
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def describe_holder(info: dict | None) -> str:
    if not info:
        return "another process"
    return (
        f"sparkql run of {info.get('study', '?')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
        f"started {info.get('started_at', '?')})"
    )


def is_held(db: str | os.PathLike) -> bool:
    """Whether some process holds the run lock now (probes with a shared lock, released at once)."""
    if fcntl is None:  # pragma: no cover
        return False
    p = lock_path(db)
    if not p.exists():
        return False
    fd = os.open(p, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class RunLock:
    """Exclusive lock for one run on one store. Use as a context manager."""

    def __init__(self, db: str | os.PathLike, study: str = "<study>", run_id: str = "") -> None:
        self.db = Path(db)
        self.path = lock_path(db)
        self.study = study
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        refuse_non_file_name(self.db)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SparkError(f"cannot create the run lock {self.path}: {e.strerror}",
                             hint="put the results store (--db) in a directory you can write", file=str(self.db)) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = read_holder(self.db)
                raise SparkError(
                    f"the results store {self.db} is in use by {describe_holder(holder)}",
                    hint="wait for that run to finish (or stop it; a rerun resumes), or use another --db",
                    file=str(self.db),
                ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "study": self.study,
            "run_id": self.run_id,
            "started_at": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
