"""`sparkql regrade` and `sparkql diff` on a store with known completions (no model needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest

from sparkql.store.api import Store

from .stores import q

BOX = "<think>\nworking\n</think>\nThe answer is $\\boxed{{{}}}$."

# problem -> gold, intact completions, ablated completions
TABLE = {
    "p1": ("12", [BOX.format(12), BOX.format(12)], [BOX.format(13), BOX.format(11)]),   # newly incorrect
    "p2": ("\\frac{1}{2}", [BOX.format(1), BOX.format(2)], [BOX.format("0.5"), BOX.format(3)]),  # newly correct
    "p3": ("7", [BOX.format(7), BOX.format(8)], [BOX.format(7), BOX.format(7)]),      # both solve
    "p4": ("9", ["<think>\nstill going", BOX.format(1)], [BOX.format(2), "no idea"]),  # neither
}


def make_store(db) -> None:
    store = Store(db)
    store.write({"models": [{"model_id": "m1", "name": "base", "label": "base", "path": "/x"}]})
    evals, samples = [], []
    for eval_id, variant, col in (("e_intact_000", "intact", 1), ("e_ablate_000", "ablate heads top 2", 2)):
        evals.append({"eval_id": eval_id, "model_id": "m1", "variant": variant, "dataset": "toy", "n": 2,
                      "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "think": True, "n_problems": 4,
                      "grader": "math", "backend": "transformers"})
        for pid, row in TABLE.items():
            for i, comp in enumerate(row[col]):
                finish = "length" if comp.endswith("going") else "stop"
                samples.append({"eval_id": eval_id, "problem_id": pid, "sample_idx": i, "prompt": f"Q {pid}",
                                "completion": comp, "finish_reason": finish, "n_tokens": 10, "gold": row[0]})
    store.write({"evals": evals, "samples": samples})


def cli(*args, db):
    env = {**os.environ, "COLUMNS": "140", "SPARKQL_DB": str(db), "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "sparkql.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "s.duckdb"
    make_store(path)
    r = cli("regrade", db=path)
    assert r.returncode == 0, r.stderr
    return path


def test_regrade_grades_and_computes_metrics(db):
    assert q(db, "SELECT count(*) FROM samples WHERE correct IS NULL") == [(0,)]
    got = dict(((e, p, i), (c, s)) for e, p, i, c, s in q(db, "SELECT eval_id, problem_id, sample_idx, correct, status FROM samples"))
    assert got[("e_intact_000", "p4", 0)] == (False, "truncated")
    assert got[("e_ablate_000", "p2", 0)] == (True, "ok")  # 0.5 == \frac{1}{2} through math-verify
    m = dict(((e, metric, k), v) for e, metric, k, v in q(db, "SELECT eval_id, metric, k, value FROM metrics"))
    assert m[("e_intact_000", "accuracy", None)] == pytest.approx(3 / 8)  # p1 x2, p3 x1
    assert m[("e_intact_000", "pass@k", 2)] == pytest.approx(2 / 4)  # p1, p3
    assert m[("e_ablate_000", "pass@k", 1)] == pytest.approx(3 / 8)
    assert m[("e_intact_000", "truncated", None)] == pytest.approx(1 / 8)


def test_regrade_repairs_a_wrong_grade_and_reports_it(db):
    con = duckdb.connect(str(db))
    con.execute("UPDATE samples SET correct = NOT correct WHERE eval_id = 'e_ablate_000' AND problem_id = 'p3' AND sample_idx = 0")
    con.close()
    r = cli("regrade", "--eval", "base:ablate heads top 2", db=db)
    assert r.returncode == 0, r.stderr
    assert "regraded 1 eval(s)" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if "ablate heads top 2" in ln)
    assert line.split("│")[6].strip() == "1"  # the `chg` (changed) column
    assert q(db, "SELECT correct FROM samples WHERE eval_id = 'e_ablate_000' AND problem_id = 'p3' AND sample_idx = 0") == [(True,)]
    assert q(db, "SELECT count(*) FROM metrics WHERE eval_id = 'e_ablate_000' AND metric = 'accuracy'") == [(1,)]


def test_diff_lists_newly_correct_and_incorrect(db, snapshot):
    r = cli("diff", "base", "ablate heads top 2", db=db)
    assert r.returncode == 0, r.stderr
    assert "newly correct 1" in r.stdout and "newly incorrect 1" in r.stdout
    assert r.stdout == snapshot


def test_diff_unknown_name_is_a_spark_error(db):
    r = cli("diff", "base", "ablate heads top 3", db=db)
    assert r.returncode == 2
    assert "no eval matches 'ablate heads top 3'" in r.stderr and "did you mean 'ablate heads top 2'" in r.stderr
    assert "Traceback" not in r.stderr


def test_metrics_table_sets_variants_beside_intact(db):
    from sparkql.runtime.grading.qualitative import metrics_table

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = metrics_table(lambda sql, p: con.execute(sql, p).fetchall())
    finally:
        con.close()
    acc = {r["variant"]: r for r in rows if r["metric"] == "accuracy"}
    assert acc["intact"]["value"] == pytest.approx(3 / 8) and acc["intact"]["delta"] == 0
    assert acc["ablate heads top 2"]["value"] == pytest.approx(3 / 8)
    p2 = {r["variant"]: r for r in rows if r["metric"] == "pass@k" and r["k"] == 2}
    assert p2["ablate heads top 2"]["delta"] == pytest.approx(2 / 4 - 2 / 4)
    assert [r["variant"] for r in rows][0] == "intact"  # intact first, as in the paper's tables
