"""The reward curve from real TRL output (tests/trl_runs): which key is read, the value at each
checkpoint, checkpoints without trainer_state.json, and the cohort step through the real compiler
and executor (circuits come from a test-only handler: the fixtures carry no weights).

The reference values are read straight from the last checkpoint's log_history with json, not
through the code under test."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from sparkql.errors import SparkError
from sparkql.plan.compile import compile_file
from sparkql.runtime.execution import handlers
from sparkql.runtime.execution.executor import execute
from sparkql.runtime.steps.cohort import choose_reward_key, reward_at_checkpoints, reward_rows
from sparkql.store.cohorts import pick_reward_key

from . import fake_circuits
from .trl_layout import log_history, manifest, recreate

STEPS = [2, 4, 6, 8]


def window_means(run: str, key: str, steps: list[int]) -> list[float]:
    """Mean of ``key`` over (previous checkpoint, checkpoint], from the last checkpoint's file."""
    last = max(manifest(run)["checkpoints"], key=lambda c: int(c.split("-")[1]))
    hist = [e for e in log_history(run, last) if key in e]
    out, prev = [], 0
    for s in steps:
        vals = [e[key] for e in hist if prev < e["step"] <= s]
        out.append(sum(vals) / len(vals))
        prev = s
    return out


def series(dirs: Path, steps=STEPS):
    return [(f"m{s}", s, dirs / f"checkpoint-{s}") for s in steps]


def test_default_keys_on_real_trl_logs(tmp_path):
    grpo = reward_rows(series(recreate("grpo", tmp_path / "grpo")))
    sft = reward_rows(series(recreate("sft", tmp_path / "sft"), [2, 4, 6]))
    assert pick_reward_key({r["key"] for r in grpo}) == "rewards/accuracy_reward/mean"
    # SFT logs no reward: TRL's token accuracy, not a falling loss
    assert {"loss", "mean_token_accuracy"} <= {r["key"] for r in sft}
    assert pick_reward_key({r["key"] for r in sft}) == "mean_token_accuracy"


@pytest.mark.parametrize("run, key, steps", [
    ("grpo", "rewards/digits_reward/mean", STEPS),
    ("grpo", "reward", STEPS),
    ("sft", "mean_token_accuracy", [2, 4, 6]),
    ("grpo_lora", "rewards/digits_reward/mean", [2, 4]),
])
def test_reward_at_each_checkpoint_is_the_window_mean(run, key, steps, tmp_path):
    rows = reward_rows(series(recreate(run, tmp_path / run), steps))
    assert reward_at_checkpoints(rows, key, steps) == pytest.approx(window_means(run, key, steps))
    # the stored curve is the whole log once: every step of the last file, each key once per step
    last = log_history(run, f"checkpoint-{steps[-1]}")
    assert sorted(r["step"] for r in rows if r["key"] == key) == [e["step"] for e in last if key in e]


def test_a_checkpoint_without_its_log_gets_no_borrowed_reward(tmp_path):
    dirs = recreate("grpo", tmp_path / "grpo")
    key = "rewards/digits_reward/mean"
    want = window_means("grpo", key, STEPS)
    # the last checkpoint has no trainer_state.json: nothing logged reaches step 8 -> NULL, not step 6's value
    (dirs / "checkpoint-8" / "trainer_state.json").unlink()
    rows = reward_rows(series(dirs))
    has_log = [True, True, True, False]
    assert reward_at_checkpoints(rows, key, STEPS, has_log) == pytest.approx(want[:3] + [None])
    # a middle one: checkpoint-8's log covers its window, so its reward is known
    dirs = recreate("grpo", tmp_path / "grpo2")
    (dirs / "checkpoint-4" / "trainer_state.json").unlink()
    rows = reward_rows(series(dirs))
    assert reward_at_checkpoints(rows, key, STEPS, [True, False, True, True]) == pytest.approx(want)


def test_the_chosen_key_must_be_logged(tmp_path):
    rows = reward_rows(series(recreate("grpo", tmp_path / "grpo")))
    assert choose_reward_key("reward", rows, "grpo") == "reward"
    assert choose_reward_key(None, rows, "grpo") == "rewards/accuracy_reward/mean"
    with pytest.raises(SparkError, match="log no such key") as info:
        choose_reward_key("rewards/accuracy/mean", rows, "grpo")
    assert "did you mean 'rewards/accuracy_reward/mean'" in info.value.hint
    with pytest.raises(SparkError, match="no checkpoint of grpo has a trainer_state.json"):
        choose_reward_key("reward", [], "grpo")


# ---- the cohort step, compiled and executed -----------------------------------------------------

STUDY = """model base = "base"
model grpo = "runs/checkpoint-*"
circuit toy_pairs on grpo[*] diff base
cohort emergent{opts}
"""


def run_study(tmp_path: Path, run: str, opts: str = "", monkeypatch=None):
    base = tmp_path / "base"
    base.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[1] / "trl_runs" / "grpo" / "checkpoint-2" / "config.json",
                    base / "config.json")
    (base / "model.safetensors").write_bytes(b"")
    (base / "tokenizer.json").write_text("{}")
    recreate(run, tmp_path / "runs")
    (tmp_path / "s.spark").write_text(STUDY.format(opts=opts))
    plan = compile_file(tmp_path / "s.spark")
    monkeypatch.setitem(handlers.HANDLERS, "circuit", f"{fake_circuits.__name__}:run")
    monkeypatch.setitem(handlers.HANDLERS, "edge_scores", f"{fake_circuits.__name__}:run_scores")
    db = tmp_path / "s.duckdb"
    summary = execute(plan, db, live=False)
    assert summary.status == "done", [(s.label, s.error) for s in summary.steps if s.error]
    cohort = next(s for s in summary.steps if s.kind == "cohort")
    return duckdb.connect(str(db), read_only=True), cohort, plan


def test_cohort_reads_the_key_the_study_names(tmp_path, monkeypatch):
    key = "rewards/digits_reward/mean"
    con, cohort, _ = run_study(tmp_path, "grpo", f' with reward = "{key}"', monkeypatch)
    got = con.execute("SELECT step, reward, reward_key FROM cohort_checkpoints ORDER BY step").fetchall()
    assert [g[0] for g in got] == STEPS and {g[2] for g in got} == {key}
    assert [g[1] for g in got] == pytest.approx(window_means("grpo", key, STEPS))
    assert cohort.summary["reward_key"] == key
    corr, summary_key = con.execute("SELECT reward_newly_corr, reward_key FROM cohort_summary").fetchone()
    assert summary_key == key and corr == pytest.approx(cohort.summary["reward_newly_corr"], abs=1e-4)
    # the reference: Pearson by hand over (reward, newly activated)
    newly = [len(fake_circuits.HEADS[s] - fake_circuits.HEADS[None]) for s in STEPS]
    xs, ys = window_means("grpo", key, STEPS), newly
    mx, my = sum(xs) / 4, sum(ys) / 4
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    den = (sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys)) ** 0.5
    assert corr == pytest.approx(num / den)


def test_an_undefined_correlation_is_null_not_nan(tmp_path, monkeypatch):
    """The default key of this run, TRL's accuracy reward, is 0 at every step of a random model: no
    correlation exists, and the store and the figure say so rather than print nan."""
    from sparkql.figures import cohort_figure

    con, cohort, _ = run_study(tmp_path, "grpo", "", monkeypatch)
    assert cohort.summary["reward_key"] == "rewards/accuracy_reward/mean"
    assert cohort.summary["reward_newly_corr"] is None
    assert con.execute("SELECT reward_newly_corr FROM cohort_summary").fetchone() == (None,)
    res = cohort_figure(con, tmp_path / "figs", formats=("svg",))
    svg = res.files[0].read_text()
    assert "r with newly activated: undefined" in svg and "= nan" not in svg
    assert "rewards/accuracy_reward/mean" in svg  # the axis names the key


def test_leftovers_and_missing_logs_are_in_the_step_summary(tmp_path, monkeypatch):
    con, cohort, plan = run_study(tmp_path, "grpo_leftovers", "", monkeypatch)
    assert cohort.summary["other_run"] == ["grpo[step=6]", "grpo[step=8]"]
    assert len(plan.warnings) == 1 and "mixes runs" in plan.warnings[0]
