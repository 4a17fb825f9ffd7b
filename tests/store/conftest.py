"""Fixtures of the store tests: the hand-made study run in-process with the test-only circuit handler."""

from __future__ import annotations

import pytest

from sparkql.runtime import handlers

from . import fakes


@pytest.fixture
def fake_circuits(monkeypatch):
    """Route `circuit` steps to the test-only handler of fakes.py (by its module name as imported here)."""
    monkeypatch.setitem(handlers.HANDLERS, "circuit", f"{fakes.__name__}:run_fake_circuit")


@pytest.fixture
def hand_store(tmp_path, fake_circuits):
    """A store holding the whole hand-made study (16 steps), and its plan."""
    from sparkql.runtime.executor import execute

    plan = fakes.build_plan(tmp_path / "study")
    db = tmp_path / "hand.duckdb"
    summary = execute(plan, db, live=False)
    assert summary.status == "done" and summary.n_done == 16
    return db, plan
