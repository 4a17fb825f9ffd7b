"""One DuckDB connection helper: sparkql/store/connection.py is the only caller of duckdb.connect,
and the CLI, the TUI and sparkql.connect() all get its locked read-only connections."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

import sparkql
from sparkql.store.api import connect
from sparkql.store.connection import READER_CONFIG, StoreBusy, StoreUnavailable, open_db
from sparkql.store.readonly import QueryOnlyConnection
from sparkql.tui import data

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("sparkql", "runtime", "tui")


def test_only_the_helper_calls_duckdb_connect():
    calls = [
        f"{p.relative_to(ROOT)}:{i}"
        for d in SHIPPED
        for p in sorted((ROOT / d).rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\bduckdb\.connect\(", line) and not line.lstrip().startswith("#")
    ]
    assert len(calls) == 1 and calls[0].startswith("sparkql/store/connection.py:"), calls


def _locked(con) -> bool:
    rows = con.execute("SELECT name, value FROM duckdb_settings() WHERE name IN (SELECT unnest(?::VARCHAR[]))",
                       [list(READER_CONFIG)]).fetchall()
    return dict(rows) == {k: str(v).lower() for k, v in READER_CONFIG.items()}


def test_cli_tui_and_notebook_readers_are_the_same_locked_connection(tmp_path):
    db = tmp_path / "s.duckdb"
    connect(db, read_only=False).close()
    con = open_db(db)  # what sparkql sql/figures/diff/export use
    assert _locked(con)
    con.close()
    with data.connect(db) as con:  # the TUI
        assert _locked(con)
    with sparkql.connect(str(db)) as con:  # notebooks
        assert isinstance(con, QueryOnlyConnection) and _locked(con)
    writer = open_db(db, read_only=False)  # the writer is not locked: it migrates, and `sql --write` may SET
    writer.execute("SET threads = 1")
    writer.close()


def test_errors_are_spark_errors_the_tui_can_tell_apart(tmp_path):
    with pytest.raises(StoreUnavailable, match="does not exist"):
        open_db(tmp_path / "none.duckdb")
    text = tmp_path / "notes.duckdb"
    text.write_text("not a database\n" * 50)
    with pytest.raises(StoreUnavailable, match="cannot open the results store"):
        open_db(text)
    assert data.StoreBusy is StoreBusy and data.StoreUnavailable is StoreUnavailable
    assert data.check_store(text).state is data.StoreState.UNREADABLE
    assert not (tmp_path / "none.duckdb").exists()


def test_a_reader_waits_for_the_writer_then_reports_busy(tmp_path):
    """The retry on the writer's lock, shared by the CLI (10 s) and the TUI (short, then its next poll)."""
    import subprocess
    import sys
    import time

    db = tmp_path / "s.duckdb"
    connect(db, read_only=False).close()
    hold = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", hold, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(StoreBusy, match=r"could not read the results store .* locked by process PID \d+"):
            open_db(db, timeout=0.5)
        assert 0.4 < time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait()
    with data.connect(db) as con:
        assert con.execute("SELECT 1").fetchone() == (1,)


def test_duckdb_version_supports_what_the_lock_relies_on():
    """extract_statements, tokenize and the statement types the read-only check reads."""
    st = duckdb.extract_statements("SELECT 1; COPY t TO 'x'")
    assert [s.type for s in st] == [duckdb.StatementType.SELECT, duckdb.StatementType.COPY]
    assert duckdb.tokenize("EXPLAIN SELECT 1")[0][1] == duckdb.token_type.keyword
