"""`--cluster local`: Ray started in this process over this machine's CPUs, two workers of one CPU."""

from __future__ import annotations

import io
import re

from rich.console import Console

from sparkql.plan.compile import compile_file
from sparkql.runtime.execution.cluster import ClusterOptions
from sparkql.runtime.execution.executor import execute

from .conftest import OBJECT_STORE
from .study import assert_same_tables, dump


def test_local_ray_cluster_gives_the_local_executors_tables(study_file, reference, n_steps, tmp_path):
    db = tmp_path / "cluster.duckdb"
    out = io.StringIO()
    opts = ClusterOptions(address="local", workers=2, worker_cpus=1, object_store_mb=OBJECT_STORE // 2**20)
    summary = execute(compile_file(str(study_file)), db, live=False, console=Console(file=out, width=200),
                      cluster=opts)
    log = out.getvalue()
    assert summary.status == "done" and summary.n_done == n_steps, log
    assert_same_tables(dump(db), reference)

    # both workers ran steps, and some ran at the same time (a step started before another ended)
    ran = {m.group(1) for m in re.finditer(r"^✓ .*\((w\d)\)$", log, re.M)}
    assert ran == {"w1", "w2"}, log
    events = re.findall(r"^(→|✓) ", log, re.M)
    depth = peak = 0
    for e in events:
        depth += 1 if e == "→" else -1
        peak = max(peak, depth)
    assert peak == 2, log

    # a second run on the cluster reuses everything, and so does a local run: keys do not
    # depend on where steps ran
    again = execute(compile_file(str(study_file)), db, live=False, console=Console(quiet=True), cluster=opts)
    assert again.n_done == 0 and again.n_cached == n_steps
    assert execute(compile_file(str(study_file)), db, live=False, console=Console(quiet=True)).n_done == 0
