"""A driver in its own process, for kill -9 tests:

    python -m tests.cluster.runner STUDY DB ADDRESS [--kill-after-commits N | --kill-after-samples]

prints the run's status and step counts as its last line ("done N_DONE N_CACHED"); exits 130
after Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal

from rich.console import Console

from sparkql.plan.compile import compile_file
from sparkql.runtime.execution.cluster import ClusterOptions
from sparkql.runtime.execution.executor import execute
from sparkql.store import api

from .conftest import worker_env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("study")
    ap.add_argument("db")
    ap.add_argument("address")
    ap.add_argument("--kill-after-commits", type=int)
    ap.add_argument("--kill-after-samples", action="store_true")
    a = ap.parse_args()
    # Ctrl-C as a terminal delivers it, however the tests were started: a shell's background job
    # (`.ci/run &` in a script) starts its children with SIGINT ignored, and Python keeps it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if a.kill_after_samples:
        real_write = api.Store.write

        def write(self, tables):
            out = real_write(self, tables)
            if "samples" in tables:  # committed: the driver dies with other steps in flight
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        api.Store.write = write
    commits = []

    def after(rec):
        commits.append(rec.label)
        if a.kill_after_commits and len(commits) >= a.kill_after_commits:
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        s = execute(compile_file(a.study), a.db, live=False, console=Console(width=200), on_step_done=after,
                    cluster=ClusterOptions(address=a.address, worker_cpus=1, env=worker_env()))
    except KeyboardInterrupt:
        print("stopped by Ctrl-C", flush=True)
        raise SystemExit(130)
    print(s.status, s.n_done, s.n_cached, flush=True)


if __name__ == "__main__":
    main()
