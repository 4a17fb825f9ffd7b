"""Resume after kill -9: the final tables equal an uninterrupted run's, and completed steps are
never recomputed (every handler call is counted by the runner)."""

from __future__ import annotations

import signal
from collections import Counter

from .fakes import build_plan
from .util import calls, dump, run_plan


def test_sigkill_at_several_points_then_resume_matches_clean_run(tmp_path, fake_circuits, monkeypatch):
    from sparkql.runtime.execution.executor import execute

    monkeypatch.setenv("SPARKQL_TEST_BIG_EDGES", "130000")  # the circuit of step 200 (inherited by the runs)

    root = tmp_path / "study"
    plan = build_plan(root)
    labels = [s.label for s in plan.steps]
    assert len(labels) == 16

    clean_db = tmp_path / "clean.duckdb"  # the uninterrupted reference, in-process
    assert execute(plan, clean_db, live=False).n_done == 16
    expected = dump(clean_db)
    assert len(expected["steps"]) == 16 and len(expected["nodes"]) == 5 * 22
    assert len(expected["edges"]) == 4 * 3 + 130_000

    db, counter = tmp_path / "killed.duckdb", tmp_path / "killed.txt"
    # 1) killed inside a handler (nothing of that step is written)
    kill_handler = "circuit toy on ckpt[step=100]"
    # 2) killed inside the commit: the step's 130,000 edges are inserted, the transaction is not committed
    kill_commit = "circuit toy on ckpt[step=200]"
    # 3) killed right after a commit, before the next step starts
    kill_after = "cohort emergent"
    for flag, label in (("--kill-in-handler", kill_handler), ("--kill-in-commit", kill_commit),
                        ("--kill-after", kill_after)):
        r = run_plan(root, db, counter, flag, label)
        assert r.returncode == -signal.SIGKILL, (flag, r.returncode, r.stderr)
    r = run_plan(root, db, counter)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].split() == ["done", "1", "15"]  # only 'heads picked' was left

    got = dump(db)
    assert got == expected  # no duplicated and no lost rows, in every table

    n = Counter(calls(counter))
    # the two steps killed mid-flight ran twice; every other step exactly once
    assert {label: c for label, c in n.items() if c != 1} == {kill_handler: 2, kill_commit: 2}
    assert set(n) == set(labels)

    # runs: three killed runs are marked as such by the run that found them, the last is done
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    statuses = sorted(r[0] for r in con.execute("SELECT status FROM runs").fetchall())
    con.close()
    assert statuses == ["done", "killed", "killed", "killed"]


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path):
    import time

    import duckdb

    from sparkql.store.lock import is_held

    root, db, counter = tmp_path / "study", tmp_path / "s.duckdb", tmp_path / "c.txt"
    held = tmp_path / "held"  # touched by the circuit of the first checkpoint, which then waits for the signal
    p = run_plan(root, db, counter, env={"SPARKQL_TEST_HOLD": str(held)}, wait=False)
    end = time.monotonic() + 60
    while not held.exists() and p.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    assert held.exists(), p.communicate(timeout=180)
    assert calls(counter)[-1] == "circuit toy on ckpt[step=100]"  # the second circuit is in flight
    p.send_signal(signal.SIGINT)
    # Generous: on a loaded 2-core machine the interrupted run's clean shutdown (status row,
    # lock release, interpreter exit) once took longer than 30 s.
    out, err = p.communicate(timeout=180)
    assert p.returncode in (130, -signal.SIGINT), (p.returncode, err)
    assert "interrupted: " in out and "rerun the same command to resume at circuit toy on" in out
    assert not is_held(db)
    con = duckdb.connect(str(db), read_only=True)
    status, error = con.execute("SELECT status, error FROM runs").fetchone()
    done = con.execute("SELECT count(*) FROM steps").fetchone()[0]
    con.close()
    assert status == "interrupted" and error.startswith("interrupted during circuit toy on")
    assert done == 3  # load, circuit, load: the circuit in flight was not written
    r = run_plan(root, db, counter)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].split() == ["done", "13", "3"]
    assert Counter(calls(counter)).most_common(1)[0][1] == 2  # only the interrupted step ran twice
