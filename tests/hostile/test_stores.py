"""Stores that are damaged, not stores at all, full disks and lock holders (issue 14)."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys

import duckdb
import pytest

from sparkql.errors import SparkError
from sparkql.store.api import Store
from sparkql.store.lock import RunLock

from .conftest import assert_user_error, cli, cli_process, file_bytes

NEEDS_SCHEMA = [("figures", "--out", "{tmp}/figs"), ("diff", "m", "m:v0")]
"""Read-only commands that need this build's schema (sql and export read any DuckDB file as it is)."""


def variants_study(model_dir, n: int) -> str:
    """Steps that need no weights (load_model, intervene): a store that grows without torch."""
    lines = [f'model m = "{model_dir}"']
    lines += [f"scale heads L{i % 2}H{i % 4} by 0.{i + 1} on m as v{i}" for i in range(n)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def store(tiny_qwen2, tmp_path):
    (tmp_path / "s.spark").write_text(variants_study(tiny_qwen2, 3))
    db = tmp_path / "s.duckdb"
    assert cli("run", str(tmp_path / "s.spark"), "--db", str(db), "-q").code == 0
    return db


def _set_version(db, value) -> None:
    con = duckdb.connect(str(db))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [value])
    con.close()


@pytest.mark.parametrize("cmd", NEEDS_SCHEMA, ids=lambda c: c[0])
def test_a_schema_version_that_is_not_a_number(store, tmp_path, cmd):
    _set_version(store, "two")
    before = file_bytes(store)
    r = cli(*[a.format(tmp=tmp_path) for a in cmd], "--db", str(store))
    assert_user_error(r, "has schema_version 'two' in its meta table, which is not a number",
                      "hint: the store is damaged or was not written by sparkql")
    assert file_bytes(store) == before


def test_a_run_into_a_store_with_a_bad_schema_version(store, tmp_path):
    _set_version(store, "3.5")
    r = cli("run", str(tmp_path / "s.spark"), "--db", str(store), "-q")
    assert_user_error(r, "schema_version '3.5'")


@pytest.mark.parametrize("kind", ["text", "directory", "memory", "empty name"])
def test_a_db_that_is_not_a_duckdb_file_says_what_it_is(tmp_path, kind):
    db = {"text": tmp_path / "notes.duckdb", "directory": tmp_path, "memory": ":memory:", "empty name": ""}[kind]
    if kind == "text":
        db.write_text("hello\n")
    for cmd in (["sql", "SELECT 1"], ["run", str(tmp_path / "x.spark")]):
        (tmp_path / "x.spark").write_text("think off\n")
        r = cli(*cmd, "--db", str(db))
        assert_user_error(r)
        assert "in-memory" not in r.err
        hint = {"text": "hint: --db must be a DuckDB file written by `sparkql run`",
                "directory": "is a directory", "memory": "is not a file",
                "empty name": "is not a file"}[kind]
        assert hint in r.err, r.err
    if kind == "text":
        assert db.read_text() == "hello\n"


def _holder(db):
    """Another process holding a read-only connection to the store (a long `sparkql sql`)."""
    p = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                          f"con = duckdb.connect({str(db)!r}, read_only=True)\nprint('open', flush=True)\n"
                          "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    return p


def test_the_writer_timeout_names_the_reader_not_the_run_itself(store):
    reader = _holder(store)
    try:
        with RunLock(store, study="mine.spark"):
            with pytest.raises(SparkError) as info:
                Store(store, timeout=0.5)
        msg = info.value.message
        assert f"process PID {reader.pid}" in msg, msg
        assert "mine.spark" not in msg and "sparkql run of" not in msg
        assert "close other programs that hold the store open" in info.value.hint
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Files this process writes may not grow past ``limit`` bytes (the soft RLIMIT_FSIZE, restored
    after): writes fail as on a full disk, with EFBIG instead of ENOSPC (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _steps(db) -> tuple[int, int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'steps'").fetchone()[0]:
            return 0, 0, 0  # the store's creation itself did not fit
        n, distinct = con.execute("SELECT count(*), count(DISTINCT key) FROM steps").fetchone()
        return n, distinct, con.execute("SELECT count(*) FROM variants").fetchone()[0]
    finally:
        con.close()


def test_a_full_disk_during_a_commit_is_a_message_and_the_rerun_completes(tiny_qwen2, tmp_path):
    """Whatever the room left, the run completes or stops with a message naming the store and what
    to do, and a rerun with room completes it, every step once (none lost, none doubled)."""
    study = tmp_path / "big.spark"
    study.write_text(variants_study(tiny_qwen2, 40))
    failed_midway = 0
    for limit in (24_000, 40_000, 56_000, 400_000):
        db = tmp_path / f"s{limit}.duckdb"
        with _file_size_limit(limit):
            r = cli("run", str(study), "--db", str(db), "-q")
        if r.code != 0:
            assert_user_error(r, f"could not write the results store {db}: the file reached the size limit",
                              "rerun the same command")
            if db.exists() and _steps(db)[0] > 0:
                failed_midway += 1
            assert cli("run", str(study), "--db", str(db), "-q").code == 0
        assert _steps(db) == (41, 41, 40)
    assert failed_midway, "no limit made a commit fail in the middle of the run"
