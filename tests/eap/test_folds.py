"""`with folds = K`: selection stability over leave-one-fold-out resamples of a circuit's pairs.

A tiny-model diff study (sft against base, 7 pairs, 3 folds) through `sparkql run`:
(a) each fold's stored scores equal a plain study's scores on a dataset file holding only the
    pairs that fold scored, and the folds' held-out pairs partition the pairs;
(b) the stored frequencies are counts / K and match selecting (the runtime's numpy selection)
    from each fold's scores, for the circuits and for the emergent set fold by fold;
(c) a rerun computes nothing, and changing top_n recomputes no scoring.
The compile-time errors (folds > pairs, folds < 1) are snapshots in tests/lang/test_errors.py."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from sparkql.cli.main import cli
from sparkql.runtime.eap.folds import assign_folds

K = 3
TOP_N = 18


def _pairs() -> list[dict]:
    """Seven a+b= pairs; the corruption changes the first operand and keeps every length."""
    out = []
    for i, (a, b, x) in enumerate([(12, 34, 25), (21, 13, 41), (30, 11, 17), (14, 52, 33), (40, 27, 16),
                                   (23, 45, 51), (35, 31, 18)]):
        out.append({"id": f"r{i}", "clean": f"{a}+{b}={a + b}. {a}+{b}=", "corrupt": f"{x}+{b}={x + b}. {x}+{b}="})
    return out


def _study(d: Path, base: str, sft: str, top_n: int, folds: bool = True) -> Path:
    f = d / f"s_{top_n}.spark"
    f.write_text(
        f'model base = "{base}"\nmodel sft = "{sft}"\n'
        'dataset pairs = "pairs.jsonl" (clean = "clean", corrupt = "corrupt", id = "id")\n'
        "set dtype = fp64\nset device = cpu\nset seed = 11\n"
        f"circuit pairs on sft diff base using eap_ig(steps = 3, top_n = {top_n}, tau = 0) as emergent_sft"
        + (f" with folds = {K}\n" if folds else "\n"))
    return f


class Q:
    """Read-only queries that close their connection at once (a run in this process needs the store)."""

    def __init__(self, db: Path):
        self.db = str(db)

    def execute(self, sql: str, params: list | None = None) -> "Q":
        con = duckdb.connect(self.db, read_only=True)
        try:
            self.rows = con.execute(sql, params or []).fetchall()
        finally:
                return self

    def fetchall(self) -> list[tuple]:
        return self.rows

    def fetchone(self) -> tuple | None:
        return self.rows[0] if self.rows else None


def _run(*args) -> str:
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from sparkql.runtime.models.tiny import make_tiny_model

    d = tmp_path_factory.mktemp("folds")
    base = make_tiny_model(d / "base", "qwen2", seed=0)
    sft = make_tiny_model(d / "sft", "qwen2", seed=7)  # same shape, other weights: a "post-trained" model
    with open(d / "pairs.jsonl", "w") as f:
        for r in _pairs():
            f.write(json.dumps(r) + "\n")
    db = d / "r.duckdb"
    s = _study(d, base, sft, TOP_N)
    _run("run", str(s), "--db", str(db), "-q")
    return d, db, s, base, sft


def _scorings(con, model_id: str) -> list[tuple[str, int]]:
    return con.execute("SELECT scores_id, fold FROM scorings WHERE model_id = ? AND fold IS NOT NULL ORDER BY fold",
                       [model_id]).fetchall()


def _model_id(con, path: str) -> str:
    return con.execute("SELECT model_id FROM models WHERE dir = ? OR path = ?", [path, path]).fetchone()[0]


def test_folds_partition_the_pairs_and_each_scores_the_rest(study):
    d, db, _, base, sft = study
    con = Q(db)
    every = [r["id"] for r in _pairs()]
    held_by_model = []
    for path in (base, sft):
        folds = _scorings(con, _model_id(con, str(path)))
        assert [f for _, f in folds] == list(range(K))
        held = []
        for sid, _ in folds:
            used = [r for (r,) in con.execute("SELECT row_id FROM scored_pairs WHERE scores_id = ? ORDER BY idx",
                                              [sid]).fetchall()]
            assert used == [r for r in every if r in used]  # in dataset order
            held.append(set(every) - set(used))
            assert con.execute("SELECT n_examples, folds FROM scorings WHERE scores_id = ?", [sid]).fetchone() == \
                (len(used), K)
        # the held-out sets are a partition of the pairs into folds of sizes 3, 2, 2
        assert set().union(*held) == set(every) and sum(len(h) for h in held) == len(every)
        assert sorted(len(h) for h in held) == [2, 2, 3]
        held_by_model.append(held)
    assert held_by_model[0] == held_by_model[1]  # fold i of the checkpoint is fold i of the base


def test_each_fold_scores_equal_a_plain_study_on_its_pairs(study):
    """The reference: one plain study (no folds) with a dataset file per fold holding exactly the
    pairs the fold scored, into another store."""
    d, db, _, base, sft = study
    con = Q(db)
    rows = {r["id"]: r for r in _pairs()}
    text = f'model base = "{base}"\nmodel sft = "{sft}"\nset dtype = fp64\nset device = cpu\nset seed = 11\n'
    want = {}
    for name, path in (("base", base), ("sft", sft)):
        for sid, fold in _scorings(con, _model_id(con, str(path))):
            used = [r for (r,) in con.execute("SELECT row_id FROM scored_pairs WHERE scores_id = ? ORDER BY idx",
                                              [sid]).fetchall()]
            ds = f"f_{name}_{fold}"
            (d / f"{ds}.jsonl").write_text("".join(json.dumps(rows[r]) + "\n" for r in used))
            text += (f'dataset {ds} = "{ds}.jsonl" (clean = "clean", corrupt = "corrupt", id = "id")\n'
                     f"circuit {ds} on {name} using eap_ig(steps = 3, top_n = {TOP_N}, tau = 0)\n")
            want[ds] = dict(((s, t), x) for s, t, x in con.execute(
                "SELECT src, dst, score FROM edge_scores WHERE scores_id = ?", [sid]).fetchall())
    (d / "ref.spark").write_text(text)
    ref_db = d / "ref.duckdb"
    _run("run", str(d / "ref.spark"), "--db", str(ref_db), "-q")
    ref = Q(ref_db)
    assert len(want) == 2 * K
    for ds, scores in want.items():
        got = dict(((s, t), x) for s, t, x in ref.execute(
            "SELECT src, dst, score FROM edge_scores JOIN scorings USING (scores_id) WHERE dataset = ?",
            [ds]).fetchall())
        assert got.keys() == scores.keys() and len(got) > 0
        keys = sorted(got)
        assert np.allclose([scores[k] for k in keys], [got[k] for k in keys], rtol=1e-12, atol=1e-300), ds


def _selected(con, sid: str, top_n: int) -> set[tuple[int, int]]:
    """The runtime's numpy selection (sparkql.runtime.eap.selection) on a scoring's stored edges."""
    from sparkql.runtime.eap.graph import Graph
    from sparkql.runtime.eap.selection import select

    g = Graph(2, 4)
    stored = dict(((s, t), x) for s, t, x in con.execute(
        "SELECT src, dst, score FROM edge_scores WHERE scores_id = ?", [sid]).fetchall())
    scores = np.zeros((g.n_sources, g.n_dests))
    for s, t, i, j in zip(*g.edge_names(), *g.edge_index):
        scores[i, j] = stored[(s, t)]
    return {(l, h) for l, h, _ in select(g, scores, top_n, 0.0).heads(g)}


def _check_frequencies(con, top_n: int) -> None:
    base_id = con.execute("SELECT base_model_id FROM fold_heads WHERE kind = 'emergent' LIMIT 1").fetchone()[0]
    sft_id = con.execute("SELECT model_id FROM fold_heads WHERE kind = 'emergent' LIMIT 1").fetchone()[0]
    sel = {m: [_selected(con, sid, top_n) for sid, _ in _scorings(con, m)] for m in (base_id, sft_id)}
    want = {
        ("circuit", base_id): sel[base_id],
        ("circuit", sft_id): sel[sft_id],
        ("emergent", sft_id): [a - b for a, b in zip(sel[sft_id], sel[base_id])],
    }
    cids = dict(con.execute("SELECT model_id, circuit_id FROM circuits WHERE top_n = ?", [top_n]).fetchall())
    for (kind, model), per_fold in want.items():
        rows = con.execute("""
            SELECT f.layer, f.head, f.n_folds, f.folds, f.frequency, f.in_full FROM fold_heads f
            JOIN steps s ON s.key = f.fold_key WHERE f.kind = ? AND f.model_id = ? AND f.circuit_id = ?""",
                           [kind, model, cids[model]]).fetchall()
        full = {(l, h) for l, h in con.execute(
            "SELECT layer, head FROM circuit_heads WHERE circuit_id = ?", [cids[model]]).fetchall()}
        if kind == "emergent":
            full -= {(l, h) for l, h in con.execute(
                "SELECT layer, head FROM circuit_heads WHERE circuit_id = ?", [cids[base_id]]).fetchall()}
        counts = {h: sum(h in s for s in per_fold) for h in set().union(full, *per_fold)}
        assert {(l, h): n for l, h, n, *_ in rows} == counts, (kind, model)
        for l, h, n, k, freq, in_full in rows:
            assert k == K and 0.0 <= freq <= 1.0 and freq == n / K and in_full == ((l, h) in full)
    assert any(n > 0 for (n,) in con.execute("SELECT n_folds FROM fold_heads WHERE kind = 'circuit'").fetchall())


def test_frequencies_are_counts_over_folds_of_each_folds_selection(study):
    d, db, *_ = study
    con = Q(db)
    _check_frequencies(con, TOP_N)
    # the views: head_stability puts the emergent frequency beside each head of the diff set
    rows = con.execute("SELECT h.layer, h.head, h.fold_stability, h.folds FROM head_stability h "
                       "WHERE set_name = 'emergent_sft'").fetchall()
    freq = dict(((l, h), f) for l, h, f in con.execute(
        "SELECT layer, head, frequency FROM fold_stability WHERE kind = 'emergent'").fetchall())
    assert rows and all(f == freq[(l, h)] and k == K for l, h, f, k in rows)
    # docs/store.md's example query over fold_stability
    doc = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
    (query,) = [q for q in doc.split("```") if "FROM fold_stability WHERE" in q]
    got = con.execute(query).fetchall()
    assert got and all(n < k for *_, n, k, _ in got)


def test_rerun_computes_nothing_and_a_new_top_n_no_scoring(study):
    d, db, s, base, sft = study
    out = _run("run", str(s), "--db", str(db))
    con = Q(db)
    last = con.execute("SELECT run_id, n_done FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    assert last[1] == 0, out
    # the run summary: the emergent heads with their fold counts, and a table of selection over folds
    assert "selection over folds" in out and f"/{K}" in out and "emergent_sft" in out, out
    s2 = _study(d, base, sft, TOP_N - 2)
    plan = json.loads(_run("plan", str(s2), "--db", str(db), "--json"))
    scorings = [x for x in plan["steps"] if x["kind"] == "edge_scores"]
    assert len(scorings) == 2 * (K + 1) and all(x["cached"] for x in scorings)
    assert sum("left out" in x["label"] for x in scorings) == 2 * K
    assert {x["kind"] for x in plan["steps"] if not x["cached"]} == {"circuit", "diff", "fold_heads"}
    _run("run", str(s2), "--db", str(db), "-q")
    con = Q(db)
    run_id = con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    kinds = {k for (k,) in con.execute("SELECT kind FROM steps WHERE run_id = ?", [run_id]).fetchall()}
    assert kinds == {"circuit", "diff", "fold_heads"}
    _check_frequencies(con, TOP_N - 2)


def test_without_folds_the_plan_is_todays(study):
    from sparkql.plan.compile import compile_file

    d, _, s, base, sft = study
    with_folds = compile_file(s)
    plain = compile_file(_study(d, base, sft, TOP_N, folds=False))
    assert {x.kind for x in plain.steps} == {"load_model", "edge_scores", "circuit", "diff"}
    assert {x.key for x in plain.steps} < {x.key for x in with_folds.steps}
    assert len(with_folds.steps) - len(plain.steps) == 2 * K + 2  # the fold scorings and two fold_heads


@pytest.mark.parametrize("seed", [0, 1, 11])
def test_fold_assignment_is_balanced_deterministic_and_seeded(seed):
    ids = [f"row{i}" for i in range(23)]
    folds = assign_folds(ids, 5, seed)
    assert sorted(folds.count(f) for f in range(5)) == [4, 4, 5, 5, 5]
    assert assign_folds(ids, 5, seed) == folds
    assert assign_folds(list(reversed(ids)), 5, seed) == list(reversed(folds))  # by row id, not position
    assert assign_folds(ids, 5, seed + 100) != folds


def test_fewer_usable_pairs_than_folds_is_a_located_error_at_run_time(study, tmp_path, capsys):
    """Check counts the dataset's rows; a pair dropped at run time (unequal token lengths) can leave
    fewer usable pairs than folds: the fold's step stops with the statement and a hint, exit 2."""
    d, _, _, base, _ = study
    rows = [r for r in _pairs()[:2]] + [{"id": "long", "clean": "1+2=3. 1+2=", "corrupt": "10+2=12. 10+2="}]
    (tmp_path / "few.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "few.spark").write_text(
        f'model base = "{base}"\ndataset few = "few.jsonl" (clean = "clean", corrupt = "corrupt", id = "id")\n'
        "set dtype = fp64\nset device = cpu\ncircuit few on base using eap_ig(steps = 2, top_n = 10, tau = 0) "
        "with folds = 3\n")
    from sparkql.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["run", str(tmp_path / "few.spark"), "--db", str(tmp_path / "few.duckdb"), "-q"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert e.value.code == 2, text
    assert "few.spark:5:1: error:" in text and "folds = 3, but few has only 2 usable pairs" in text
    assert "hint: use folds <= 2" in text and "Traceback" not in text
