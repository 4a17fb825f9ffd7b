"""The store's schema, migrations, payload forms, idempotent writes and opening rules."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from sparkql.errors import SparkError
from sparkql.runtime.execution.context import StepOutput
from sparkql.store.api import Store, completed_keys, connect
from sparkql.store.migrations import ensure_schema
from sparkql.store.schema import SCHEMA_VERSION, TABLES, VIEWS

V1 = Path(__file__).parent / "data" / "schema_v1.sql"


def shape(con) -> list[tuple]:
    return con.execute(
        "SELECT table_name, column_name, data_type, column_index FROM duckdb_columns() "
        "WHERE schema_name = 'main' ORDER BY table_name, column_index").fetchall()


def views(con) -> list[str]:
    return sorted(r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal").fetchall())


def test_a_v1_store_migrates_to_the_shape_of_a_fresh_store(tmp_path):
    old = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(old))
    con.execute(V1.read_text())
    con.execute("INSERT INTO models (model_id, name, path, step) VALUES ('m', 'base', '/x', NULL)")
    con.close()

    before = old.read_bytes()
    reader = connect(old)  # a reader reads an old store as it is: only writers migrate
    assert reader.execute("SELECT name FROM models").fetchall() == [("base",)]
    assert reader.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    reader.close()
    assert old.read_bytes() == before
    s = Store(old)
    assert s.found_version == 1  # the writer found v1 and migrated it
    s.close()
    fresh = tmp_path / "fresh.duckdb"
    Store(fresh).close()
    a, b = duckdb.connect(str(old), read_only=True), duckdb.connect(str(fresh), read_only=True)
    try:
        assert shape(a) == shape(b)
        assert views(a) == views(b) == sorted(VIEWS)
        assert a.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert a.execute("SELECT model_id, name, dir FROM models").fetchall() == [("m", "base", None)]  # data kept
        tables = {r[0] for r in b.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
        assert tables == set(TABLES)
    finally:
        a.close()
        b.close()


def test_newer_stores_and_foreign_duckdb_files_are_refused(tmp_path):
    newer = tmp_path / "newer.duckdb"
    Store(newer).close()
    con = duckdb.connect(str(newer))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    with pytest.raises(SparkError, match="newer than this sparkql"):
        Store(newer)
    foreign = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    with pytest.raises(SparkError, match="not a sparkql store"):
        Store(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SparkError, match="cannot open the results store"):
        connect(text)


def test_connect_and_completed_keys_on_a_missing_store(tmp_path):
    missing = tmp_path / "nope.duckdb"
    assert completed_keys(missing) == set()
    assert not missing.exists()  # asking created nothing
    with pytest.raises(SparkError) as e:
        connect(missing)
    assert "no results store" in e.value.message and "sparkql run" in e.value.hint


def test_every_payload_form_lands_the_same_rows(tmp_path):
    s = Store(tmp_path / "s.duckdb")
    rows = [{"circuit_id": "c", "node": "input", "kind": "input", "in_circuit": True},
            {"circuit_id": "c", "node": "a0.h1", "layer": 0, "head": 1, "kind": "head", "score": 2.5,
             "in_circuit": False}]  # keys missing from the first row still land
    cols = {"circuit_id": ["d", "d"], "node": ["input", "a0.h1"], "layer": np.array([-1, 0]),
            "head": np.array([-1, 1]), "kind": ["input", "head"], "score": np.array([0.0, 2.5]),
            "in_circuit": np.array([True, False])}
    s.write({"nodes": rows})
    s.write({"nodes": cols})
    s.write({"nodes": pa.table({"circuit_id": ["e"] * 2000, "node": [f"n{i}" for i in range(2000)],
                                "score": np.arange(2000, dtype=float)})})
    got = s.query("SELECT circuit_id, node, layer, head, kind, score, in_circuit FROM nodes "
                  "WHERE circuit_id IN ('c', 'd') ORDER BY circuit_id, node")
    assert got == [("c", "a0.h1", 0, 1, "head", 2.5, False), ("c", "input", None, None, "input", None, True),
                   ("d", "a0.h1", 0, 1, "head", 2.5, False), ("d", "input", -1, -1, "input", 0.0, True)]
    # a constant long string column is sent as one parameter: same rows
    assert s.query("SELECT count(*), count(DISTINCT circuit_id), sum(score) FROM nodes WHERE circuit_id = 'e'") == [
        (2000, 1, float(sum(range(2000))))]
    with pytest.raises(ValueError, match="has no column"):
        s.write({"nodes": [{"circuit_id": "x", "nodee": "typo"}]})
    with pytest.raises(ValueError, match="unknown table"):
        s.write({"node": [{"circuit_id": "x"}]})
    s.close()


def test_samples_are_idempotent_and_keyed_tables_keep_the_newest_row(tmp_path):
    s = Store(tmp_path / "s.duckdb")
    s.write({"samples": [{"eval_id": "e", "problem_id": "p", "sample_idx": 0, "completion": "graded", "correct": True}]})
    s.write({"samples": [{"eval_id": "e", "problem_id": "p", "sample_idx": 0, "completion": "again"},
                         {"eval_id": "e", "problem_id": "p", "sample_idx": 1, "completion": "new"}]})
    assert s.query("SELECT sample_idx, completion, correct FROM samples ORDER BY 1") == [
        (0, "graded", True), (1, "new", None)]
    s.write({"models": [{"model_id": "m", "name": "old"}]})
    s.write({"models": [{"model_id": "m", "name": "new"}]})
    assert s.query("SELECT name FROM models") == [("new",)]
    s.close()


class _Step:
    def __init__(self, key):
        self.key, self.kind, self.label = key, "circuit", "circuit x"


def test_a_step_rewritten_after_its_mark_was_removed_does_not_duplicate_rows(tmp_path):
    s = Store(tmp_path / "s.duckdb")
    out = StepOutput(tables={
        "circuits": [{"circuit_id": "k1", "model_id": "m"}],
        "edges": {"circuit_id": ["k1"] * 3, "src": ["input"] * 3, "dst": ["logits", "m0", "a0.h0<q>"],
                  "score": [1.0, 2.0, 3.0]},
    }, summary={"edges": np.int64(3)})
    s.complete_step(_Step("k1"), out, run_id="r", started_at=None, seconds=1.0)
    s.query("DELETE FROM steps")  # a user forcing a recompute
    s.complete_step(_Step("k1"), out, run_id="r", started_at=None, seconds=1.0)
    assert s.query("SELECT count(*) FROM edges") == [(3,)]
    assert s.query("SELECT key, kind, summary::VARCHAR FROM steps") == [("k1", "circuit", '{"edges": 3}')]
    assert s.completed_keys() == {"k1"}
    s.close()
    assert completed_keys(tmp_path / "s.duckdb") == {"k1"}


def test_a_failing_write_rolls_back_the_whole_step(tmp_path):
    s = Store(tmp_path / "s.duckdb")
    out = StepOutput(tables={"edges": {"circuit_id": ["k"], "src": ["input"], "dst": ["logits"]},
                             "nodes": [{"circuit_id": "k", "nodee": 1}]})
    with pytest.raises(ValueError):
        s.complete_step(_Step("k"), out, run_id="r", started_at=None, seconds=0.0)
    assert s.query("SELECT count(*) FROM edges") == [(0,)]
    assert s.completed_keys() == set()
    s.close()


def test_in_memory_schema_is_creatable():
    con = duckdb.connect(":memory:")
    assert ensure_schema(con) == 0
    assert ensure_schema(con) == SCHEMA_VERSION  # idempotent
    con.close()
