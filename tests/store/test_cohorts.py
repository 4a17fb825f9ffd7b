"""Cohorts on a hand-made head table: known cohorts, frequencies, survival, the reward curve and its
correlation with the newly-activated count; the SQL views agree with the Python reference."""

from __future__ import annotations

import json
import math

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkql.store.cohorts import Checkpoint, checkpoint_rows, cohort_sizes, head_rows, pearson
from sparkql.store.migrations import ensure_schema
from sparkql.store.write import insert
from sparkql.runtime.steps.cohort import reward_at_checkpoints, reward_rows
from sparkql.store.cohorts import pick_reward_key

from .fakes import STEPS, reward


def _rows(con, sql):
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def test_cohort_step_on_the_hand_made_study(hand_store, snapshot):
    db, _ = hand_store
    con = duckdb.connect(str(db), read_only=True)
    try:
        ck = _rows(con, "SELECT step, n_active, newly_activated, maintained, n_base, round(reward, 6) AS reward, "
                        "reward_key FROM cohort_checkpoints ORDER BY step")
        heads = _rows(con, "SELECT layer, head, origin, cohort, activation_frequency, survives, n_active "
                           "FROM cohort_heads ORDER BY layer, head")
        areas = _rows(con, "SELECT step, cohort, n_heads FROM cohort_areas ORDER BY step, cohort")
        summary = _rows(con, "SELECT n_checkpoints, n_emergent, n_surviving, n_base, reward_key, "
                             "round(reward_newly_corr, 6) AS corr FROM cohort_summary")
        live_ck = _rows(con, "SELECT step, n_active, newly_activated, maintained, n_base "
                             "FROM cohort_checkpoints_live ORDER BY step")
        live_heads = _rows(con, "SELECT layer, head, origin, cohort, activation_frequency, survives, n_active "
                                "FROM cohort_heads_live ORDER BY layer, head")
        n_rewards = con.execute("SELECT count(*), count(DISTINCT step) FROM rewards "
                                "WHERE key = 'rewards/accuracy_reward'").fetchone()
    finally:
        con.close()

    # Known by construction (fakes.HEADS): base = L0H0 L0H1 L1H0 L2H3
    assert [(r["newly_activated"], r["maintained"]) for r in ck] == [(2, 3), (3, 3), (2, 3), (3, 2)]
    by_head = {(r["layer"], r["head"]): r for r in heads}
    assert by_head[(3, 2)] == {"layer": 3, "head": 2, "origin": "emergent", "cohort": 100,
                               "activation_frequency": 1.0, "survives": True, "n_active": 4}
    assert by_head[(2, 0)]["cohort"] == 200 and by_head[(2, 0)]["survives"] is False
    assert by_head[(3, 0)]["cohort"] == 400 and by_head[(3, 0)]["activation_frequency"] == 0.25
    assert by_head[(2, 3)]["origin"] == "base" and by_head[(2, 3)]["activation_frequency"] == 0.25
    assert by_head[(0, 1)]["survives"] is False and by_head[(0, 0)]["survives"] is True
    # the stacked areas sum to the newly-activated line
    for r in ck:
        assert sum(a["n_heads"] for a in areas if a["step"] == r["step"]) == r["newly_activated"]
    # reward at a checkpoint = mean accuracy reward over the steps since the previous checkpoint
    expected = [sum(reward(t) for t in range(prev + 10, s + 1, 10)) / ((s - prev) // 10)
                for prev, s in zip([0] + STEPS[:-1], STEPS)]
    assert [r["reward"] for r in ck] == pytest.approx(expected, abs=1e-6)
    assert summary[0]["corr"] == pytest.approx(pearson(expected, [2, 3, 2, 3]), abs=1e-6)
    assert n_rewards == (40, 40)  # each logged step once although four files repeat the history
    # the live views compute what the step materialised
    assert live_ck == [{k: r[k] for k in ("step", "n_active", "newly_activated", "maintained", "n_base")} for r in ck]
    assert live_heads == heads
    assert {"checkpoints": ck, "heads": heads, "areas": areas, "summary": summary} == snapshot


heads_st = st.frozensets(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=10)


@pytest.fixture(scope="module")
def memory_store():
    con = duckdb.connect(":memory:")
    ensure_schema(con)
    yield con
    con.close()


@settings(max_examples=25, deadline=None)
@given(base=heads_st, series=st.lists(heads_st, min_size=1, max_size=5))
def test_sql_views_agree_with_the_python_reference(memory_store, base, series):
    con = memory_store
    for t in ("circuits", "nodes", "cohort_members", "cohort_heads"):
        con.execute(f"DELETE FROM {t}")
    cps = [Checkpoint(i, 100 * (i + 1), h) for i, h in enumerate(series)]
    circuits = [("base", base)] + [(f"c{i}", h) for i, h in enumerate(series)]
    insert(con, "circuits", {"circuit_id": [c for c, _ in circuits]})
    grid = [(l, h) for l in range(4) for h in range(4)]
    insert(con, "nodes", {
        "circuit_id": [c for c, _ in circuits for _ in grid],
        "layer": [l for _ in circuits for l, _ in grid],
        "head": [h for _ in circuits for _, h in grid],
        "kind": ["head"] * (len(circuits) * len(grid)),
        "in_circuit": [g in hs for _, hs in circuits for g in grid],
    })
    insert(con, "cohort_members", [
        {"cohort_key": "k", "set_name": "emergent", "idx": c.idx, "model_id": f"m{c.idx}", "step": c.step,
         "circuit_id": f"c{c.idx}", "base_circuit_id": "base"} for c in cps])
    live = _rows(con, "SELECT idx, step, n_active, newly_activated, maintained, n_base "
                      "FROM cohort_checkpoints_live ORDER BY idx")
    assert live == checkpoint_rows(base, cps)
    live_heads = _rows(con, "SELECT layer, head, origin, cohort, activation_frequency, survives, n_active "
                            "FROM cohort_heads_live ORDER BY layer, head")
    assert live_heads == head_rows(base, cps)
    # the areas view reads the materialised cohort_heads
    insert(con, "cohort_heads", [{"cohort_key": "k", **r} for r in head_rows(base, cps)])
    areas = _rows(con, "SELECT step, cohort, n_heads FROM cohort_areas ORDER BY step, cohort")
    assert areas == cohort_sizes(base, cps)


def _ckpt(tmp_path, step, hist):
    d = tmp_path / f"checkpoint-{step}"
    d.mkdir()
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": hist}))
    return d


def test_reward_keys_from_trl_and_hf_trainer():
    # TRL GRPOTrainer (recent): rewards/<func>/mean; older: rewards/<func>; total: reward
    assert pick_reward_key({"loss", "reward", "rewards/accuracy_reward/mean", "rewards/accuracy_reward/std",
                            "rewards/format_reward/mean"}) == "rewards/accuracy_reward/mean"
    assert pick_reward_key({"reward", "rewards/accuracy_reward", "loss"}) == "rewards/accuracy_reward"
    assert pick_reward_key({"reward", "reward_std", "rewards/format_reward/mean"}) == "reward"
    assert pick_reward_key({"rewards/format_reward/mean", "rewards/format_reward/std"}) == "rewards/format_reward/mean"
    assert pick_reward_key({"loss", "learning_rate", "grad_norm"}) == "loss"  # SFT: HF Trainer
    assert pick_reward_key({"learning_rate"}) is None


def test_reward_rows_take_each_log_entry_once_and_skip_missing_files(tmp_path):
    h = [{"step": s, "loss": 1.0 / s, "reward": s / 100} for s in (5, 10, 15, 20, 25, 30)]
    d10 = _ckpt(tmp_path, 10, h[:2])
    d30 = _ckpt(tmp_path, 30, h + [{"train_runtime": 9.0, "step": 30}])  # the end-of-training summary entry
    rows = reward_rows([("m10", 10, d10), ("m20", 20, tmp_path / "missing"), ("m30", 30, d30)])
    got = sorted((r["model_id"], r["step"]) for r in rows if r["key"] == "reward")
    assert got == [("m10", 5), ("m10", 10), ("m30", 15), ("m30", 20), ("m30", 25), ("m30", 30)]
    assert any(r["key"] == "train_runtime" for r in rows)
    vals = reward_at_checkpoints(rows, "reward", [10, 20, 30])
    assert vals == pytest.approx([0.075, 0.175, 0.275])
    # a checkpoint with no log entry in its window takes the last value before it
    assert reward_at_checkpoints(rows, "reward", [10, 12, 30])[1] == pytest.approx(0.10)
    assert reward_at_checkpoints(rows, None, [10]) == [None]


def test_pearson_edge_cases():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # no variance
    assert pearson([1, None, 3], [1, 5, 3]) == pytest.approx(1.0)  # pairs with a gap are dropped
    assert pearson([1], [1]) is None
    assert pearson([float("nan"), 1, 2], [0, 1, 2]) == pytest.approx(1.0)
    assert not math.isnan(pearson([0, 1, 2, 3], [1, 0, 1, 0]))
