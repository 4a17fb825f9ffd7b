"""The TUI's data layer (pure SQL, no Textual) against the hand-made fixture store."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest

from sparkql.store.schema import SCHEMA_VERSION
from sparkql.tui import data
from sparkql.tui.data import StoreState

from . import fixtures as fx


def test_check_store_ok(fixture_store):
    check = data.check_store(fixture_store)
    assert check.state is StoreState.OK and check.usable
    assert check.version == SCHEMA_VERSION and check.has_results


def test_check_store_missing(tmp_path):
    check = data.check_store(tmp_path / "nope.duckdb")
    assert check.state is StoreState.MISSING and not check.usable
    assert "nope.duckdb" in check.message and "sparkql run" in check.message


def test_check_store_empty(tmp_path):
    check = data.check_store(fx.build_empty_store(tmp_path / "empty.duckdb"))
    assert check.state is StoreState.EMPTY and not check.usable


def test_check_store_without_schema_version(tmp_path):
    check = data.check_store(fx.build_old_store(tmp_path / "old.duckdb"))
    assert check.state is StoreState.NOT_SPARKQL
    assert "schema_version" in check.message


def test_check_store_older_version(store_copy):
    con = duckdb.connect(str(store_copy))
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.execute("DROP TABLE cohort_members CASCADE")
    con.close()
    check = data.check_store(store_copy)
    assert check.state is StoreState.OLDER and not check.usable
    assert "schema version 1" in check.message and "cohort_members" in check.message


def test_check_store_not_duckdb(tmp_path):
    p = tmp_path / "text.duckdb"
    p.write_text("not a database at all, just text\n" * 100)
    assert data.check_store(p).state is StoreState.UNREADABLE


def test_runs_and_study_scope(store_copy):
    # A second study's run and circuit must not show under the first study.
    con = duckdb.connect(str(store_copy))
    con.execute("INSERT INTO runs (run_id, study_path, status, started_at) VALUES ('run-2', 'studies/other.spark', 'running', TIMESTAMP '2026-01-02 10:00:00')")
    con.execute("INSERT INTO circuits (circuit_id, model_id, dataset) VALUES ('c-other', 'm-base', 'gsm8k')")
    con.execute("INSERT INTO steps (key, kind, run_id) VALUES ('c-other', 'circuit', 'run-2')")
    con.close()
    with data.connect(store_copy) as con:
        runs = data.list_runs(con)
        assert [r.run_id for r in runs] == ["run-2", fx.RUN_ID]  # newest first
        assert runs[1].n_steps == 15 and runs[1].status == "done"
        mine = data.study_contents(con, fx.RUN_ID)
        other = data.study_contents(con, "run-2")
        everything = data.study_contents(con, data.ALL_RUNS)
    assert len(mine.circuits) == 6 and "c-other" not in {c.circuit_id for c in mine.circuits}
    assert [c.circuit_id for c in other.circuits] == ["c-other"] and not other.evals
    assert len(everything.circuits) == 7
    assert len(mine.head_sets) == len(fx.STEPS) and len(mine.evals) == 2
    assert [s.cohort_key for s in mine.series] == [fx.COHORT_KEY]
    assert {m.label for m in mine.models} == {"base"} | {f"ckpt[step={s}]" for s in fx.STEPS}


@pytest.mark.parametrize("step", fx.STEPS)
def test_head_map_of_a_checkpoint_circuit(fixture_store, step):
    with data.connect(fixture_store) as con:
        hm = data.head_map(con, "circuit", fx.circuit_id(step))
    assert (hm.n_layers, hm.n_heads) == (fx.N_LAYERS, fx.N_HEADS)
    assert hm.cohort_key == fx.COHORT_KEY and hm.circuit_id == fx.circuit_id(step)
    assert hm.siblings == tuple(fx.circuit_id(s) for s in fx.STEPS)  # the series, in step order
    active = {k for k, c in hm.cells.items() if c.active}
    assert active == fx.heads_at(step)
    assert {k for k, c in hm.cells.items() if c.emergent} == fx.heads_at(step) - fx.BASE_HEADS
    assert {k for k, c in hm.cells.items() if c.base} == fx.BASE_HEADS
    # Cohort = first step at which the head emerged; survives = active at the final checkpoint.
    for (l, h), (first, last) in fx.EMERGENT.items():
        cell = hm.cell(l, h)
        assert cell.cohort == first
        assert cell.survives == (last is None)
        assert cell.frequency == pytest.approx(sum((l, h) in fx.heads_at(s) for s in fx.STEPS) / len(fx.STEPS))
    assert hm.cohort_steps == tuple(sorted({a for a, _ in fx.EMERGENT.values()}))
    assert hm.max_score == pytest.approx(max(fx.head_score(l, h, step) for l, h in fx.heads_at(step)))


def test_head_map_of_base_circuit_is_not_a_series(fixture_store):
    with data.connect(fixture_store) as con:
        hm = data.head_map(con, "circuit", fx.circuit_id(None))
    assert hm.cohort_key is None and hm.cohort_steps == ()
    assert {k for k, c in hm.cells.items() if c.active} == fx.BASE_HEADS
    assert not any(c.emergent for c in hm.cells.values())


def test_head_map_of_a_head_set(fixture_store):
    with data.connect(fixture_store) as con:
        hm = data.head_map(con, "set", f"set-300|{fx.model_id(300)}")
    assert hm.kind == "set" and hm.circuit_id == fx.circuit_id(300)
    assert {k for k, c in hm.cells.items() if c.active} == fx.heads_at(300) - fx.BASE_HEADS
    assert hm.siblings == tuple(f"set-{s}|{fx.model_id(s)}" for s in fx.STEPS)


def test_head_detail(fixture_store):
    layer, head = 4, 3  # emerges at 200, survives
    with data.connect(fixture_store) as con:
        d = data.head_detail(con, layer, head, fx.circuit_id(300), fx.DATASET)
    col = {c: i for i, c in enumerate(d.across.columns)}
    assert [r[col["step"]] for r in d.across.rows] == [None] + fx.STEPS
    assert [r[col["in_circuit"]] for r in d.across.rows] == [(layer, head) in fx.heads_at(s) for s in [None] + fx.STEPS]
    cohort_row = dict(zip(d.cohorts.columns, d.cohorts.rows[0]))
    assert cohort_row["cohort"] == 200 and cohort_row["survives"] and cohort_row["origin"] == "emergent"
    assert [r[1] for r in d.sets.rows] == [f"ckpt[step={s}]" for s in fx.STEPS if (layer, head) in fx.heads_at(s)]
    # Strongest edges: all touch the head, ordered by |score|, and they are the top of all such edges.
    node = "a4.h3"
    assert d.edges.rows and all(r[0] == node or r[1].startswith(node + "<") for r in d.edges.rows)
    scores = [abs(r[2]) for r in d.edges.rows]
    assert scores == sorted(scores, reverse=True)
    touching = [abs(fx._edge_score(u, v, 300)) for u, v in fx.graph_edges(fx.N_LAYERS, fx.N_HEADS) if u == node or v.startswith(node + "<")]
    assert scores[0] == pytest.approx(max(touching), abs=1e-5)


def test_cohort_view_matches_the_definitions(fixture_store):
    with data.connect(fixture_store) as con:
        cv = data.cohort_view(con, fx.COHORT_KEY)
    assert cv.steps == fx.STEPS
    assert cv.newly_activated == [len(fx.heads_at(s) - fx.BASE_HEADS) for s in fx.STEPS]
    assert cv.maintained == [len(fx.heads_at(s) & fx.BASE_HEADS) for s in fx.STEPS]
    # The stacked cohorts sum to the newly activated count at every checkpoint (figure 2 A).
    assert [sum(col) for col in zip(*cv.stacked.values())] == cv.newly_activated
    assert sorted(cv.stacked) == [100, 200, 300, 500]
    assert cv.stacked[300] == [0, 0, 2, 2, 1]  # (5,0) and (2,3) emerge at 300; (2,3) is gone at 500
    assert cv.reward_key == "rewards/accuracy_reward"
    assert cv.reward_steps == list(range(50, 501, 50))


def test_eval_table_deltas(fixture_store):
    with data.connect(fixture_store) as con:
        t = data.eval_table(con)
    rows = [dict(zip(t.columns, r)) for r in t.rows]
    by = {(r["variant"], r["metric"]): r for r in rows}
    assert set(by) == {(v, m) for v in ("intact", fx.VARIANT) for m in ("accuracy", "pass@1", "pass@4")}
    for m in ("accuracy", "pass@1", "pass@4"):
        assert by[("intact", m)]["delta"] is None
        assert by[(fx.VARIANT, m)]["delta"] == pytest.approx(by[(fx.VARIANT, m)]["value"] - by[("intact", m)]["value"])
    assert by[(fx.VARIANT, "pass@1")]["delta"] == pytest.approx((11 - 14) / 24)


def test_problems_and_samples(fixture_store):
    with data.connect(fixture_store) as con:
        probs = data.problems(con, fx.EVAL_INTACT)
        samples = data.samples(con, fx.EVAL_INTACT, "3")
        assert data.intact_counterpart(con, fx.EVAL_ABLATED) == fx.EVAL_INTACT
    assert [(r[0], r[1], r[2]) for r in probs.rows] == [(p, fx.CORRECT_INTACT[p], 4) for p in fx.PROBLEMS]
    assert [s.correct for s in samples] == [True, False, False, False]
    # the answer column: most common extracted answer, ties to the earliest sample (stable across reads)
    with data.connect(fixture_store) as con:
        ablated = data.problems(con, fx.EVAL_ABLATED)
    assert [r[ablated.columns.index("answer")] for r in ablated.rows] == ["10", "90", "12", "13", "14", "15"]
    assert samples[0].prompt == "Problem 3: what is 3 + 10?" and "\\boxed{13}" in samples[0].completion


def test_eval_diff_newly_correct_and_incorrect(fixture_store):
    with data.connect(fixture_store) as con:
        d = data.eval_diff(con, fx.EVAL_INTACT, fx.EVAL_ABLATED)
    # Solved = at least one correct sample: problem 2 (0 -> 3 of 4) and problem 1 (3 -> 0 of 4).
    assert [r.problem_id for r in d.newly_correct] == ["2"]
    assert [r.problem_id for r in d.newly_incorrect] == ["1"]
    nc = d.newly_correct[0]
    assert nc.extracted_b == nc.gold == "12" and nc.extracted_a != "12"
    assert "ablate" in nc.completion_b and "intact" in nc.completion_a
    assert "intact" in d.label_a and fx.VARIANT in d.label_b


def test_run_sql_is_read_only_and_limited(fixture_store):
    with data.connect(fixture_store) as con:
        t = data.run_sql(con, "SELECT layer, count(*) AS n FROM nodes WHERE kind = 'head' GROUP BY 1 ORDER BY 1;")
        assert t.columns == ["layer", "n"] and len(t.rows) == fx.N_LAYERS
        big = data.run_sql(con, "SELECT * FROM edges", limit=10)
        assert len(big.rows) == 10 and big.truncated
        with pytest.raises(data.QueryRefused, match="read-only: DELETE is not a query"):
            data.run_sql(con, "DELETE FROM edges")
        assert data.run_sql(con, "  ;  ").rows == []  # an empty box runs nothing


def test_fingerprint_changes_when_a_writer_commits(store_copy):
    with data.connect(store_copy) as con:
        before = data.fingerprint(con)
    w = duckdb.connect(str(store_copy))
    w.execute("INSERT INTO steps (key, kind, run_id, completed_at) VALUES ('k-new', 'circuit', 'run-0001', TIMESTAMP '2026-01-01 10:00:00')")
    w.close()
    with data.connect(store_copy) as con:
        assert data.fingerprint(con) != before


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_connect_reports_busy_while_another_process_writes(store_copy):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(store_copy), "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        with pytest.raises(data.StoreBusy):
            with data.connect(store_copy):
                pass
        assert time.perf_counter() - t0 < 3  # gives up quickly: the caller retries on its next tick
    finally:
        proc.kill()
        proc.wait()
    with data.connect(store_copy) as con:  # and reads again once the writer is gone
        assert con.execute("SELECT count(*) FROM circuits").fetchone()[0] == 6


def test_run_sql_interrupts_a_runaway_query(fixture_store):
    with data.connect(fixture_store) as con:
        t0 = time.perf_counter()
        with pytest.raises(data.QueryTimeout, match="interrupted after 0.3 s"):
            data.run_sql(con, "SELECT count(*) FROM range(100000000000) a", timeout=0.3)
        assert time.perf_counter() - t0 < 10
        assert data.run_sql(con, "SELECT 42 AS x").rows == [(42,)]  # the connection is still usable


def test_cohort_reward_per_checkpoint_falls_back_to_the_curve(store_copy):
    con = duckdb.connect(str(store_copy))
    con.execute("UPDATE cohort_checkpoints SET reward = NULL WHERE step = 300")
    con.execute("DELETE FROM rewards WHERE step = 300")  # the log has 250 and 350, not 300
    con.close()
    with data.connect(store_copy) as con:
        cv = data.cohort_view(con, fx.COHORT_KEY)
    assert cv.reward[0] == pytest.approx(0.2) and cv.reward[4] == pytest.approx(0.6)  # the cohort step's readings
    assert cv.reward[2] == pytest.approx(cv.reward_values[cv.reward_steps.index(250)])  # last point before 300
