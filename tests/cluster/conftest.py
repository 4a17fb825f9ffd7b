"""The Ray lane (`make test-ray`): the cluster executor against real Ray clusters on this machine.

Skipped where Ray is not installed (the main suite); CI installs `sparkql[ray]` for this lane.
Ray is kept small: 1 CPU per worker, a 200 MB object store per node, no dashboard.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
OBJECT_STORE = 200 * 2**20


@pytest.fixture(scope="session")
def study_file(tmp_path_factory) -> Path:
    from .study import build

    return build(tmp_path_factory.mktemp("cluster_study"), seed=3)


@pytest.fixture(scope="session")
def n_steps(study_file) -> int:
    """How many steps the study's plan has (counted, not written down: the plan grows with features)."""
    from sparkql.plan.compile import compile_file

    return len(compile_file(str(study_file)).steps)


@pytest.fixture(scope="session")
def reference(study_file, n_steps, tmp_path_factory):
    """The tables of the study run by the local executor (what every cluster run must give)."""
    from rich.console import Console

    from sparkql.plan.compile import compile_file
    from sparkql.runtime.execution.executor import execute

    from .study import dump

    db = tmp_path_factory.mktemp("reference") / "local.duckdb"
    summary = execute(compile_file(str(study_file)), db, live=False, console=Console(quiet=True))
    assert summary.status == "done" and summary.n_done == n_steps
    return dump(db)


def worker_env() -> dict[str, str]:
    """Workers import test handlers from this repository."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
