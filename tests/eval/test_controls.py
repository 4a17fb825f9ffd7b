"""Random-head controls: the draws (pure, the same on every machine), and end to end through the
compiler and executor on a tiny model: variants rows, and the `scores` view's control columns
checked against a reference computed here from the rows themselves."""

from __future__ import annotations

import statistics
from collections import Counter

import duckdb
import pytest

from sparkql.runtime.steps.controls import distinct_draws, draw_heads

from .stores import q, run_study

PROBLEMS = [
    {"qid": "a", "question": "What is 2 + 2?", "answer": "4"},
    {"qid": "b", "question": "What is 10 - 3?", "answer": "7"},
    {"qid": "c", "question": "Compute 6 * 7.", "answer": "42"},
    {"qid": "d", "question": "What is 9 + 9?", "answer": "18"},
]


def test_a_draw_is_a_fixed_function_of_seed_and_index():
    # pinned: sha256 ranks, no PRNG state, so these hold in any Python on any machine
    assert draw_heads(4, 4, seed=0, draw=0, count=3) == draw_heads(4, 4, seed=0, draw=0, count=3)
    firsts = {tuple(draw_heads(4, 4, seed=0, draw=i, count=3)[0]) for i in range(20)}
    assert len(firsts) > 10, "draws differ from each other"
    assert draw_heads(4, 4, seed=1, draw=0, count=3) != draw_heads(4, 4, seed=0, draw=0, count=3) or \
        draw_heads(4, 4, seed=1, draw=1, count=3) != draw_heads(4, 4, seed=0, draw=1, count=3)
    # the documented rule, written out: the K heads with the smallest sha256 of (seed, draw, layer, head)
    import hashlib

    every = [(l, h) for l in range(2) for h in range(4)]
    rank = lambda x: hashlib.sha256(f"sparkql-control\0{0}\0{0}\0{x[0]}\0{x[1]}".encode()).digest()  # noqa: E731
    assert draw_heads(2, 4, seed=0, draw=0, count=2) == (sorted(sorted(every, key=rank)[:2]), 0)
    assert draw_heads(2, 4, seed=0, draw=0, count=2) == ([(0, 0), (1, 2)], 0)  # pinned


def test_matching_draws_keep_the_depth_profile_and_avoid_the_set():
    matched = [(0, 1), (3, 0), (3, 2)]
    seen = set()
    for i in range(50):
        heads, short = draw_heads(4, 4, seed=5, draw=i, matched=matched)
        assert short == 0
        assert not set(heads) & set(matched)
        assert Counter(l for l, _ in heads) == Counter(l for l, _ in matched)
        seen.add(tuple(heads))
    # 3 choices in layer 0, C(2, 2) = 1 in layer 3: every possible draw shows up in 50
    assert len(seen) == distinct_draws(4, 4, matched=matched) == 3
    # a layer without enough heads outside the set: the shortfall is reported
    heads, short = draw_heads(1, 2, seed=0, draw=0, matched=[(0, 0), (0, 1)])
    assert (heads, short) == ([], 2)


def _study(model_dir, data) -> str:
    return f'''
model base = "{model_dir}"
dataset probs = "{data}" (problem = "question", answer = "answer", id = "qid")
heads picked = {{L0H1, L1H2}}
ablate picked top 2 on base as chosen
ablate picked top 3 on base as too_few
ablate random matching picked on base as matched with seeds = 4
ablate random 2 on base as anywhere with seeds = 3, seed = 9
eval pass@k on probs with n = 2, k = [1, 2], temperature = 0, max_tokens = 8
'''


@pytest.fixture(scope="module")
def run(tiny_qwen2, tmp_path_factory):
    return run_study(tmp_path_factory.mktemp("controls"), PROBLEMS, lambda data: _study(tiny_qwen2, data))


def test_each_draw_is_a_variant_with_its_own_heads(run):
    rows = q(run["db"], "SELECT name, control, draw, matches, heads, n_heads, matched, top_k FROM variants ORDER BY name")
    by = {r[0]: r for r in rows}
    assert by["chosen"][1:] == (None, None, None, ["L0H1", "L1H2"], 2, None, 2)
    assert by["too_few"][5:] == (2, None, 3)  # top 3 of a 2-head set: 2 heads, and the row says 3 were asked
    matched = [r for r in rows if r[1] == "matched"]
    assert [r[0] for r in matched] == [f"matched #{i}" for i in range(4)] and [r[2] for r in matched] == [0, 1, 2, 3]
    for r in matched:
        assert r[3] == "picked" and r[5] == 2 and r[6] == ["L0H1", "L1H2"]
        assert not set(r[4]) & {"L0H1", "L1H2"}
        assert sorted(h[:2] for h in r[4]) == ["L0", "L1"]
        assert r[4] == [f"L{l}H{h}" for l, h in draw_heads(2, 4, seed=0, draw=r[2], matched=[(0, 1), (1, 2)])[0]]
    anywhere = [r for r in rows if r[1] == "anywhere"]
    assert len(anywhere) == 3 and all(r[3] is None and r[5] == 2 for r in anywhere)
    assert anywhere[0][4] == [f"L{l}H{h}" for l, h in draw_heads(2, 4, seed=9, draw=0, count=2)[0]]


def test_scores_put_the_delta_beside_its_controls(run):
    db = run["db"]
    rows = q(db, """SELECT variant, k, delta, control, controls, control_mean, control_sd, beats_controls
                    FROM scores WHERE metric = 'pass@k' ORDER BY variant, k""")
    delta = {(r[0], r[1]): r[2] for r in rows}
    chosen = {r[1]: r for r in rows if r[0] == "chosen"}
    assert set(chosen) == {1, 2}
    for k, r in chosen.items():
        # reference: every draw of both control statements (same model, op, factor, 2 heads)
        ctl = [delta[(f"matched #{i}", k)] for i in range(4)] + [delta[(f"anywhere #{i}", k)] for i in range(3)]
        assert r[3] is None and r[4] == 7
        assert r[5] == pytest.approx(statistics.mean(ctl))
        assert r[6] == pytest.approx(statistics.stdev(ctl))
        d = r[2]
        want = sum((d < 0 and d < c) or (d > 0 and d > c) for c in ctl) / len(ctl)
        assert r[7] == pytest.approx(want)
    # too_few edits 2 heads: compared with the same 2-head controls
    assert {r[4] for r in rows if r[0] == "too_few"} == {7}
    # controls and intact rows carry no comparison of their own
    assert all(r[4] is None for r in rows if r[0] == "intact" or r[3] is not None)
    assert {r[3] for r in rows if r[3]} == {"matched", "anywhere"}


def test_the_run_summary_shows_controls_and_the_short_top_k(run, tiny_qwen2):
    from io import StringIO

    from rich.console import Console

    from sparkql.store.summary import render, study_summary

    con = duckdb.connect(str(run["db"]), read_only=True)
    try:
        summary = study_summary(con, run["plan"])
    finally:
        con.close()
    assert {r.variant for r in summary.scores} == {"intact", "chosen", "too_few"}  # draws summarised, not listed
    assert summary.n_control_evals == 7
    assert {(r.variant, r.k, r.controls) for r in summary.controls} == {("chosen", 1, 7), ("chosen", 2, 7),
                                                                        ("too_few", 1, 7), ("too_few", 2, 7)}
    assert [(r.variant, r.top_k, r.heads) for r in summary.short] == [("too_few", 3, ["L0H1", "L1H2"])]
    buf = StringIO()
    render(summary, Console(file=buf, width=140, color_system=None))
    text = buf.getvalue()
    assert "interventions vs random controls" in text and "7 evals of random-control draws" in text
    assert "too_few on base: top 3 asked, the set has 2 head(s) (L0H1, L1H2)" in text


def test_the_summary_at_80_columns_never_cuts_a_model_name_or_a_number():
    """A cut name reads as another model ("sft[step=80…" for sft[step=800] beside sft[step=80]),
    and a cut number as another value: both stay whole, the variant's name folds instead."""
    from io import StringIO

    from rich.console import Console

    from sparkql.store.summary import ControlRow, ScoreRow, StudySummary, render

    controls = [ControlRow(dataset="toy_hard", model="sft[step=800]", variant=v, k=1, delta=-0.425, controls=20,
                           control_mean=-0.038, control_sd=0.009, beats=1.0)
                for v in ("sft_ablated", "a_variant_with_a_long_name_that_cannot_fit")]
    scores = [ScoreRow(dataset="toy_hard", model=m, variant="intact", metric="pass@k", k=1, value=0.4,
                       stderr=None, delta=None)
              for m in ("sft[step=80]", "sft[step=800]", "grpo[step=160]")]
    buf = StringIO()
    render(StudySummary(scores=scores, controls=controls, n_control_evals=20),
           Console(file=buf, width=80, color_system=None))
    lines = buf.getvalue().splitlines()
    rows = [line.split() for line in lines if line.lstrip().startswith("toy_hard")]
    assert [r[1] for r in rows] == ["sft[step=80]", "sft[step=800]", "grpo[step=160]",
                                    "sft[step=800]", "sft[step=800]"]
    assert all(r[-5:] == ["-0.425", "20", "-0.038", "0.009", "100%"] for r in rows[3:])
    assert rows[3][2] == "sft_ablated"  # a short variant's name fits whole
    assert max(len(line) for line in lines) <= 80
