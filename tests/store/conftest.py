"""Fixtures of the store tests: the hand-made study run in-process with the test-only circuit handler."""

from __future__ import annotations

import pytest

from sparkql.runtime.execution import handlers

from . import fakes

FAKE_CIRCUIT = f"{fakes.__name__}:run_fake_circuit"
FAKE_SCORES = f"{fakes.__name__}:run_fake_edge_scores"


@pytest.fixture
def fake_circuits(monkeypatch):
    """Route `circuit` steps to the test-only handler of fakes.py (by its module name as imported here)."""
    monkeypatch.setitem(handlers.HANDLERS, "circuit", FAKE_CIRCUIT)
    monkeypatch.setitem(handlers.HANDLERS, "edge_scores", FAKE_SCORES)


@pytest.fixture(scope="session")
def hand_store(tmp_path_factory):
    """A store holding the whole hand-made study (16 steps) plus intact/ablated evals, and its plan.
    Built once per session: tests only read it."""
    from sparkql.runtime.execution.executor import execute

    from .test_figures import add_evals

    tmp = tmp_path_factory.mktemp("hand")
    plan = fakes.build_plan(tmp / "study")
    db = tmp / "hand.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(handlers.HANDLERS, "circuit", FAKE_CIRCUIT)
        mp.setitem(handlers.HANDLERS, "edge_scores", FAKE_SCORES)
        summary = execute(plan, db, live=False)
    assert summary.status == "done" and summary.n_done == 16
    add_evals(db)
    return db, plan
