"""`sparkql regrade --extract lenient` into a new eval row, status counts everywhere, and the
regrade defects (a huge integer aborting it, DuckDB leak messages on stderr). No model needed."""

from __future__ import annotations

import duckdb
import pytest

from sparkql.store.api import Store

from .test_cli_eval import cli, q

BOXED = "<think>\nwork\n</think>\nSo the answer is $\\boxed{{{}}}$."
PLAIN = "<think>\nwork\n</think>\nThe answer is {}."

# problem -> gold, two intact completions
SAMPLES = {
    "p1": ("12", [BOXED.format(12), PLAIN.format(12)]),         # strict: 1 of 2; lenient: 2 of 2
    "p2": ("\\frac{1}{2}", [PLAIN.format("$\\frac{1}{2}$"), PLAIN.format(3)]),  # strict: 0; lenient: 1
    "p3": ("7", [BOXED.format("7" * 5000), "<think>\nstill going"]),  # a runaway number; truncated
}


def make_store(db) -> None:
    store = Store(db)
    try:
        store.write({"models": [{"model_id": "m1", "name": "base", "label": "base", "path": "/x"}]})
        store.write({"evals": [{"eval_id": "e_intact_000", "model_id": "m1", "variant": "intact", "dataset": "toy",
                                "n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "think": True,
                                "n_problems": 3, "grader": "math", "backend": "transformers"}],
                     "samples": [{"eval_id": "e_intact_000", "problem_id": pid, "sample_idx": i, "prompt": f"Q {pid}",
                                  "completion": c, "finish_reason": "length" if c.endswith("going") else "stop",
                                  "n_tokens": 10, "gold": gold}
                                 for pid, (gold, comps) in SAMPLES.items() for i, c in enumerate(comps)]})
    finally:
        store.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("extract") / "s.duckdb"
    make_store(path)
    r = cli("regrade", db=path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # the store is closed: no "nanobind: leaked ..." lines
    r = cli("regrade", "--extract", "lenient", db=path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return path, r.stdout


def evals(db) -> dict:
    return {e: (x, src) for e, x, src in q(db, "SELECT eval_id, extract, regraded_from FROM evals")}


def test_lenient_regrade_is_a_new_eval_beside_the_strict_one(db):
    path, _ = db
    rows = evals(path)
    assert len(rows) == 2
    assert rows["e_intact_000"] == ("strict", None)
    (new_id, (rule, source)), = [(e, v) for e, v in rows.items() if e != "e_intact_000"]
    assert (rule, source) == ("lenient", "e_intact_000")
    # the same completions, graded twice
    same = q(path, "SELECT count(*) FROM samples a JOIN samples b USING (problem_id, sample_idx) "
                   "WHERE a.eval_id = 'e_intact_000' AND b.eval_id = ? AND a.completion = b.completion", [new_id])
    assert same == [(6,)]
    acc = dict(q(path, "SELECT eval_id, value FROM metrics WHERE metric = 'accuracy'"))
    assert acc["e_intact_000"] == pytest.approx(1 / 6)  # p1 sample 0
    assert acc[new_id] == pytest.approx(3 / 6)  # + p1 sample 1 and p2 sample 0


def test_status_counts_in_metrics_and_the_view(db):
    path, _ = db
    shares = {(e, m): v for e, m, v in q(path, "SELECT eval_id, metric, value FROM metrics "
                                               "WHERE metric IN ('ok', 'no_answer', 'truncated', 'timeout', 'error')")}
    assert shares[("e_intact_000", "no_answer")] == pytest.approx(3 / 6)
    assert shares[("e_intact_000", "truncated")] == pytest.approx(1 / 6)
    assert shares[("e_intact_000", "timeout")] == 0 and shares[("e_intact_000", "error")] == 0
    view = {r[0]: r[1:] for r in q(path, "SELECT extract, samples, correct, ok, no_answer, truncated, timeout, error "
                                         "FROM eval_status")}
    assert view["strict"] == (6, 1, 2, 3, 1, 0, 0)
    assert view["lenient"] == (6, 3, 5, 0, 1, 0, 0)


def test_regrade_table_shows_every_status(db):
    _, out = db
    header = next(ln for ln in out.splitlines() if "extract" in ln and "acc" in ln)
    for col in ("ok", "none", "trunc", "t/o", "err", "chg"):
        assert col in header
    line = next(ln for ln in out.splitlines() if ln.startswith("│ base"))
    cells = [c.strip() for c in line.split("│")[1:-1]]
    assert cells[2] == "lenient*" and cells[4] == "3" and cells[5] == "2"  # right, changed vs strict
    assert cells[6:11] == ["5", "0", "1", "0", "0"]
    assert "a new eval row" in out


def test_regrading_again_replaces_the_lenient_eval(db):
    path, _ = db
    before = q(path, "SELECT count(*) FROM samples"), q(path, "SELECT count(*) FROM metrics")
    r = cli("regrade", "--eval", "base@lenient", db=path)  # in place, under its own rule
    assert r.returncode == 0, r.stderr
    r = cli("regrade", "--eval", "base", "--extract", "lenient", db=path)  # the derived row again
    assert r.returncode == 0, r.stderr
    assert (q(path, "SELECT count(*) FROM samples"), q(path, "SELECT count(*) FROM metrics")) == before
    assert len(evals(path)) == 2


def test_diff_strict_against_lenient(db):
    path, _ = db
    r = cli("diff", "base", "base@lenient", db=path)
    assert r.returncode == 0, r.stderr
    assert "base vs base @lenient" in r.stdout
    assert "newly correct 1" in r.stdout  # p2
    assert "A: ok 2 · no answer 3 · truncated 1 · timeout 0 · error 0" in r.stdout
    assert "B: ok 5 · no answer 0 · truncated 1 · timeout 0 · error 0" in r.stdout


def test_naming_a_grading_that_does_not_exist(db):
    path, _ = db
    r = cli("diff", "base", "base@strict", db=path)  # the generated eval is the strict one
    assert r.returncode == 0, r.stderr
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM evals WHERE extract = 'lenient'")
    con.close()
    r = cli("diff", "base", "base@lenient", db=path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "graded with extract = lenient" in r.stderr and "--extract lenient" in r.stderr


def test_scores_compare_like_with_like(tmp_path):
    """A lenient ablation's delta is taken against the lenient intact eval, not the strict one."""
    db = tmp_path / "s.duckdb"
    store = Store(db)
    try:
        rows, metrics = [], []
        for eid, variant, extract, acc in (("i-s", "intact", "strict", 0.5), ("i-l", "intact", "lenient", 0.6),
                                           ("a-s", "abl", "strict", 0.3), ("a-l", "abl", "lenient", 0.45)):
            rows.append({"eval_id": eid, "model_id": "m", "variant": variant, "dataset": "d", "n": 1,
                         "temperature": 0.6, "top_p": 0.95, "max_tokens": 8, "think": True, "extract": extract})
            metrics.append({"eval_id": eid, "metric": "accuracy", "k": None, "value": acc, "stderr": None})
        store.write({"evals": rows, "metrics": metrics})
    finally:
        store.close()
    deltas = dict(q(db, "SELECT eval_id, delta FROM scores"))
    assert deltas == pytest.approx({"i-s": 0.0, "i-l": 0.0, "a-s": -0.2, "a-l": -0.15})
