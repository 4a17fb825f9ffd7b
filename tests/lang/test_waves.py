"""`sparkql plan --cluster`: waves of the DAG (which steps can run side by side) and the critical
path, checked against a brute-force reference on studies/grpo.spark; the command stays light."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from click.testing import CliRunner

from sparkql.cli.main import cli
from sparkql.plan.waves import plan_waves, step_weight

from lang_helpers import compile_in_tree

REPO = Path(__file__).resolve().parents[2]


def _grpo(study_tree):
    return compile_in_tree(study_tree, (REPO / "studies" / "grpo.spark").read_text(), "grpo.spark")


def test_waves_are_the_longest_chain_of_dependencies(study_tree):
    plan = _grpo(study_tree)
    by_key = plan.by_key()

    @lru_cache(maxsize=None)
    def depth(key: str) -> int:  # reference: 1 + the deepest dependency, by recursion
        return 1 + max((depth(d) for d in by_key[key].deps), default=0)

    w = plan_waves(plan)
    assert w.wave_of == {s.key: depth(s.key) for s in plan.steps}
    assert sum(len(x) for x in w.waves) == len(plan.steps)
    # within a wave no step depends on another: they can all run at once
    for wave in w.waves:
        keys = {s.key for s in wave}
        assert not any(d in keys for s in wave for d in s.deps)
    # 4 checkpoints + base: the 5 loads, then 5 edge scorings and the intact generates of base/grpo[-1]...,
    # then the 5 circuits selected from the scores
    assert [s.kind for s in w.waves[0]] == ["load_model"] * 5
    assert {s.kind for s in w.waves[1]} == {"edge_scores", "generate"}
    assert "circuit" in {s.kind for s in w.waves[2]}


def test_critical_path_is_the_heaviest_chain(study_tree):
    plan = _grpo(study_tree)
    by_key = plan.by_key()

    def chains(key):  # every dependency chain ending at key (brute force)
        deps = by_key[key].deps
        if not deps:
            return [[key]]
        return [c + [key] for d in deps for c in chains(d)]

    best = max(sum(step_weight(by_key[k]) for k in c) for s in plan.steps for c in chains(s.key))
    path = plan_waves(plan).critical_path
    assert sum(step_weight(s) for s in path) == best
    assert all(a.key in b.deps for a, b in zip(path, path[1:]))


def test_done_steps_leave_the_waves(study_tree):
    plan = _grpo(study_tree)
    loads = {s.key for s in plan.steps if s.kind == "load_model"}
    w = plan_waves(plan, loads)
    assert not set(w.wave_of) & loads
    assert {s.kind for s in w.waves[0]} == {"edge_scores", "generate"}


def test_plan_cluster_shows_waves(study_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(study_tree)
    (study_tree / "grpo.spark").write_text((REPO / "studies" / "grpo.spark").read_text())
    r = CliRunner().invoke(cli, ["plan", "grpo.spark", "--db", str(tmp_path / "none.duckdb"), "--cluster", "auto"])
    assert r.exit_code == 0, r.output
    w = plan_waves(_grpo(study_tree))
    text = " ".join(r.output.split())  # the console wraps at 80 columns
    assert f"side by side on a cluster (auto): {len(w.waves)} waves, at most {w.widest} steps at once" in text
    assert "wave 1: 5 step(s): load_model x5" in text
    assert "wave 2: 11 step(s): edge_scores x5, generate x6 15.0k f+b 160.7M tok" in text
    assert f"critical path: {len(w.critical_path)} steps" in text and "faster than one" in text
    header = next(line for line in r.output.splitlines() if line.lstrip().startswith("#"))
    assert header.split()[-1] == "wave"
    # without --cluster (and without $SPARKQL_CLUSTER) the table is as before
    monkeypatch.delenv("SPARKQL_CLUSTER", raising=False)
    r = CliRunner().invoke(cli, ["plan", "grpo.spark", "--db", str(tmp_path / "none.duckdb")])
    assert "wave" not in r.output


def test_a_bad_cluster_address_is_a_user_error(study_tree, tmp_path, monkeypatch, capsys):
    import pytest

    from sparkql.cli.main import main

    monkeypatch.chdir(study_tree)
    monkeypatch.delenv("SPARKQL_CLUSTER", raising=False)
    (study_tree / "grpo.spark").write_text((REPO / "studies" / "grpo.spark").read_text())
    for args, message in (
        (["plan", "grpo.spark", "--cluster", "my-cluster"], "error: --cluster 'my-cluster' is not a cluster address"),
        (["run", "grpo.spark", "--cluster", "my-cluster"], "error: --cluster 'my-cluster' is not a cluster address"),
        (["run", "grpo.spark", "--workers", "2"], "error: --workers needs --cluster"),
    ):
        with pytest.raises(SystemExit) as e:
            main([*args, "--db", str(tmp_path / "x.duckdb")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(message) and "hint: " in err, err
    # $SPARKQL_CLUSTER is read like --cluster (a dry run needs no cluster, but the address is checked)
    monkeypatch.setenv("SPARKQL_CLUSTER", "nowhere")
    with pytest.raises(SystemExit) as e:
        main(["run", "grpo.spark", "--dry-run", "--db", str(tmp_path / "x.duckdb")])
    assert e.value.code == 2 and "--cluster 'nowhere' is not a cluster address" in capsys.readouterr().err
    assert not (tmp_path / "x.duckdb").exists()
