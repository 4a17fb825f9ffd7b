"""Fixtures of the TUI tests: the hand-made store, built once per session."""

from __future__ import annotations

import shutil

import pytest

from .fixtures import build_fixture_store


@pytest.fixture(scope="session")
def fixture_store(tmp_path_factory):
    """The shared fixture store: tests must not write to it (copy it with ``store_copy``)."""
    return build_fixture_store(tmp_path_factory.mktemp("store") / "fixture.duckdb")


@pytest.fixture
def store_copy(fixture_store, tmp_path):
    """A private copy a test may write to (same file name, so screens render alike)."""
    dst = tmp_path / "fixture.duckdb"
    shutil.copy(fixture_store, dst)
    return dst


@pytest.fixture
def anyio_backend():
    """Async tests run on asyncio (Textual's loop) through anyio's pytest plugin."""
    return "asyncio"
