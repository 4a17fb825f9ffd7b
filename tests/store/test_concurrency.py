"""Readers during a run, two runs on one store, a reader meeting the writer's lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparkql.errors import SparkError
from sparkql.store.api import connect
from sparkql.store.lock import RunLock, is_held
from sparkql.store.schema import SCHEMA_VERSION

from .util import run_plan


def _wait_for(pred, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_readers_work_during_a_run_and_a_second_run_is_refused(tmp_path):
    root, db, counter = tmp_path / "study", tmp_path / "s.duckdb", tmp_path / "c.txt"
    gate = tmp_path / "gate"
    first = run_plan(root, db, counter, env={"SPARKQL_TEST_GATE": str(gate)}, wait=False)
    try:
        # the run blocks inside its last circuit step, with 9 steps committed (5 loads, 4 circuits)
        assert _wait_for(lambda: Path(str(gate) + ".waiting").exists()), "the run did not start"
        second = run_plan(root, db, tmp_path / "c2.txt")
        assert second.returncode == 2, second.stderr
        assert "is in use by sparkql run of" in second.stderr and f"pid {first.pid}" in second.stderr
        assert not (tmp_path / "c2.txt").exists()  # the refused run computed nothing

        con = connect(db)  # read-only, while the run is in flight
        try:
            assert con.execute("SELECT count(*) FROM steps").fetchone()[0] == 9
            assert con.execute("SELECT count(*) FROM nodes").fetchone()[0] == 4 * 22
        finally:
            con.close()
        gate.touch()
        seen = []
        while first.poll() is None:  # readers keep working while the rest of the run commits
            con = connect(db)
            try:
                seen.append(con.execute("SELECT count(*) FROM steps").fetchone()[0])
            finally:
                con.close()
            time.sleep(0.02)
        assert seen == sorted(seen)  # committed steps never disappear
    finally:
        if not gate.exists():
            gate.touch()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert not is_held(db)


def test_run_lock_names_the_holder_and_is_released(tmp_path):
    db = tmp_path / "s.duckdb"
    with RunLock(db, study="studies/a.spark"):
        assert is_held(db)
        with pytest.raises(SparkError) as e:
            RunLock(db, study="studies/b.spark").acquire()
        msg = e.value.render()
        assert "studies/a.spark" in msg and f"pid {os.getpid()}" in msg and "started" in msg
    assert not is_held(db)
    with RunLock(db, study="studies/b.spark"):  # free again
        pass


def test_reader_waits_for_the_writers_transaction_then_reports_the_holder(tmp_path):
    db = tmp_path / "s.duckdb"
    connect(db, read_only=False).close()  # create the store
    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); c.execute('BEGIN'); "
            "print('ready', flush=True); time.sleep(float(sys.argv[2]))")
    holder = subprocess.Popen([sys.executable, "-c", code, str(db), "1.2"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(SparkError) as e:
            connect(db, timeout=0.2)
        assert f"PID {holder.pid}" in e.value.message and "retry" in (e.value.hint or "")
        t0 = time.monotonic()
        con = connect(db)  # default timeout: waits for the holder to let go
        waited = time.monotonic() - t0
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        con.close()
        assert waited > 0.3
    finally:
        holder.wait(timeout=30)
