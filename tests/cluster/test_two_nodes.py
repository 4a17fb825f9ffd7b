"""A two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: two raylets, one CPU each):
the same tables as the local executor, a worker killed mid-step, the driver killed mid-run, and a
node that lacks the models."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys

import duckdb
import pytest
from rich.console import Console

from sparkql.errors import SparkError
from sparkql.plan.compile import compile_file
from sparkql.runtime.execution.cluster import ClusterOptions
from sparkql.runtime.execution.executor import execute

from .conftest import OBJECT_STORE, REPO, worker_env
from .study import assert_same_tables, dump


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": OBJECT_STORE}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def no_workers_left(timeout: float = 30.0) -> None:
    """No worker actor process is left (their process titles name the actor class)."""
    import time

    end = time.monotonic() + timeout
    while subprocess.run(["pgrep", "-f", "ray::StepWorker"], capture_output=True).returncode == 0:
        assert time.monotonic() < end, "StepWorker processes outlived their run"
        time.sleep(0.5)


def run_here(study_file, db, cluster, **opts):
    out = io.StringIO()
    options = ClusterOptions(address=cluster.address, env=worker_env(), **{"worker_cpus": 1, **opts})
    summary = execute(compile_file(str(study_file)), db, live=False, console=Console(file=out, width=200),
                      cluster=options)
    return summary, out.getvalue()


def test_two_nodes_give_the_local_executors_tables(two_nodes, study_file, reference, n_steps, tmp_path):
    summary, log = run_here(study_file, tmp_path / "s.duckdb", two_nodes)
    assert summary.status == "done" and summary.n_done == n_steps, log
    assert_same_tables(dump(tmp_path / "s.duckdb"), reference)
    nodes = set(re.findall(r"^  w\d \(.* node ([0-9a-f]{8}), pid \d+\) ready$", log, re.M))
    assert len(nodes) == 2, log  # one worker on each node
    assert {m for m in re.findall(r"^✓ .*\((w\d)\)$", log, re.M)} == {"w1", "w2"}, log


def test_a_worker_killed_mid_step_is_retried_without_duplicates(two_nodes, study_file, reference, n_steps, tmp_path,
                                                              monkeypatch):
    from sparkql.runtime.execution import handlers

    marker = tmp_path / "died.txt"
    monkeypatch.setitem(handlers.HANDLERS, "generate", "tests.cluster.killers:generate_then_die_once")
    env = {**worker_env(), "SPARKQL_TEST_DIE_MARKER": str(marker)}
    out = io.StringIO()
    summary = execute(compile_file(str(study_file)), tmp_path / "s.duckdb", live=False,
                      console=Console(file=out, width=200),
                      cluster=ClusterOptions(address=two_nodes.address, worker_cpus=1, env=env))
    log = out.getvalue()
    label, pid = marker.read_text().split()[:1] + marker.read_text().split()[-1:]
    assert summary.status == "done" and summary.n_done == n_steps, log
    # the worker (that pid) died after the driver stored its first batch; the step ran again
    assert re.search(rf"^! w\d \(.*pid {pid}\) died during generate .*; running it again \(1/2\)$", log, re.M), log
    assert_same_tables(dump(tmp_path / "s.duckdb"), reference)  # every sample once, none lost


def test_the_driver_killed_mid_run_then_a_rerun_gives_the_same_tables(two_nodes, study_file, reference, n_steps, tmp_path):
    db = tmp_path / "s.duckdb"

    def driver(*flags):
        return subprocess.run([sys.executable, "-m", "tests.cluster.runner", str(study_file), str(db),
                               two_nodes.address, *flags], cwd=REPO, capture_output=True, text=True, timeout=300)

    # killed with steps in flight on both workers, then in the middle of a generation
    for flags in (["--kill-after-commits", "6"], ["--kill-after-samples"]):
        r = driver(*flags)
        assert r.returncode == -signal.SIGKILL, (flags, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
        no_workers_left()  # Ray ends the actors of a driver that died
    con = duckdb.connect(str(db), read_only=True)
    partial = con.execute("SELECT count(*) FROM steps").fetchone()[0]
    has_samples = con.execute("SELECT count(*) FROM samples").fetchone()[0]
    con.close()
    assert 6 <= partial < n_steps and has_samples > 0
    r = driver()
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines()[-1].split() == ["done", str(n_steps - partial), str(partial)]
    assert_same_tables(dump(db), reference)
    con = duckdb.connect(str(db), read_only=True)
    assert sorted(s for (s,) in con.execute("SELECT status FROM runs").fetchall()) == ["done", "killed", "killed"]
    con.close()


def test_ctrl_c_stops_the_workers_and_leaves_the_store_consistent(two_nodes, study_file, reference, n_steps, tmp_path):
    from sparkql.store.lock import is_held

    db = tmp_path / "s.duckdb"
    cmd = [sys.executable, "-m", "tests.cluster.runner", str(study_file), str(db), two_nodes.address]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for line in p.stdout:  # Ctrl-C once four steps are saved, with others running
            lines.append(line)
            if sum(1 for x in lines if x.startswith("✓ ")) == 4:
                p.send_signal(signal.SIGINT)
                break
        lines += p.stdout.readlines()
        assert p.wait(timeout=60) == 130, "".join(lines)
    finally:
        if p.poll() is None:
            p.kill()
    log = "".join(lines)
    assert "interrupted: " in log and "rerun the same command to resume" in log, log
    assert not is_held(db)
    con = duckdb.connect(str(db), read_only=True)
    status, error = con.execute("SELECT status, error FROM runs").fetchone()
    saved = con.execute("SELECT count(*) FROM steps").fetchone()[0]
    con.close()
    assert status == "interrupted" and error.startswith("interrupted"), error
    assert 4 <= saved < n_steps
    # the run's workers are gone (their process titles name the actor class)
    no_workers_left()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].split() == ["done", str(n_steps - saved), str(saved)], r.stdout
    assert_same_tables(dump(db), reference)


def test_a_node_without_the_models_fails_with_a_clear_error(two_nodes, study_file, tmp_path):
    # a third node whose Ray processes see the study's directory elsewhere (where nothing is):
    # workers are placed only there through a custom resource
    root = study_file.parent
    node = two_nodes.add_node(num_cpus=0, resources={"elsewhere": 2}, object_store_memory=OBJECT_STORE,
                              env_vars={"SPARKQL_PATH_MAP": f"{root}={tmp_path / 'empty'}"})
    try:
        two_nodes.wait_for_nodes()
        with pytest.raises(SparkError) as info:
            run_here(study_file, tmp_path / "s.duckdb", two_nodes, worker_cpus=0, resources={"elsewhere": 1})
    finally:
        two_nodes.remove_node(node)
    msg = info.value.message
    assert re.search(r"^load \S+: node \S+ \([\d.]+\): model \S+ is missing: no config\.json or adapter_config\.json in "
                     + re.escape(str(tmp_path / "empty")) + r"/\S+ \(the plan's " + re.escape(str(root)), msg), msg
    assert "SPARKQL_PATH_MAP" in info.value.hint
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM steps").fetchone()[0] == 0
    assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    con.close()
