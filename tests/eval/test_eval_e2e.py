"""End to end: a study with `ablate` and `scale` on a tiny model and a small JSONL, greedy,
through the compiler and the executor; then a rerun and a resume after a simulated kill."""

from __future__ import annotations

import duckdb
import pytest

from sparkql.plan.compile import compile_text
from sparkql.plan.steps import SamplingParams
from sparkql.runtime.execution.executor import execute
from sparkql.runtime.generation.transformers_backend import GenRequest, generate_transformers
from sparkql.runtime.models.interventions import HeadEditor, Variant
from sparkql.runtime.models.loading import load_model

from .stores import q, run_study

PROBLEMS = [
    {"qid": "a", "question": "What is 2 + 2?", "answer": "4"},
    {"qid": "b", "question": "What is 10 - 3?", "answer": "7"},
    {"qid": "c", "question": "Compute 6 * 7.", "answer": "42"},
]


def study(model_dir, data) -> str:
    return f'''
model base = "{model_dir}"
dataset probs = "{data}" (problem = "question", answer = "answer", id = "qid")
heads picked = {{L0H1, L1H2}}
ablate picked top 2 on base
scale picked by 1.3 on base
eval pass@k on probs with n = 2, k = [1, 2], temperature = 0, max_tokens = 8
'''


@pytest.fixture(scope="module")
def run(tiny_qwen2, tmp_path_factory):
    out = run_study(tmp_path_factory.mktemp("e2e"), PROBLEMS, lambda data: study(tiny_qwen2, data))
    return {**out, "model": tiny_qwen2}


def test_rows_for_intact_and_both_variants(run):
    db = run["db"]
    assert run["summary"].status == "done"
    evals = q(db, "SELECT variant, n, n_problems, grader, backend, temperature, top_k FROM evals ORDER BY variant")
    assert evals == [
        ("ablate picked top 2", 2, 3, "math", "transformers", 0.0, 0),
        ("intact", 2, 3, "math", "transformers", 0.0, 0),
        ("scale picked by 1.3", 2, 3, "math", "transformers", 0.0, 0),
    ]
    # dtype auto is stored resolved (fp32 on a CPU); the canary is the vLLM backend's, not run here
    assert q(db, "SELECT DISTINCT dtype, canary_agreement, device FROM evals") == [("fp32", None, "cpu")]
    assert q(db, "SELECT name, op, factor, heads FROM variants ORDER BY name") == [
        ("ablate picked top 2", "ablate", 0.0, ["L0H1", "L1H2"]),
        ("scale picked by 1.3", "scale", 1.3, ["L0H1", "L1H2"]),
    ]
    # every (eval, problem, sample) once, graded, with its exact prompt
    rows = q(db, "SELECT problem_id, sample_idx, prompt, finish_reason, n_tokens, gold, status, correct FROM samples")
    assert len(rows) == 3 * 3 * 2
    golds = {p["qid"]: p["answer"] for p in PROBLEMS}
    for pid, idx, prompt, finish, n_tok, gold, status, correct in rows:
        assert gold == golds[pid]
        assert prompt.startswith("<|im_start|>user\n") and "\\boxed{}" in prompt
        assert finish in ("stop", "length") and 1 <= n_tok <= 8
        assert status in ("ok", "no_answer", "truncated") and correct is not None
        if finish == "length" and status != "ok":
            assert status == "truncated"


def test_metrics_match_the_samples(run):
    db = run["db"]
    for eval_id, in q(db, "SELECT eval_id FROM evals"):
        m = {(metric, k): v for metric, k, v in q(db, "SELECT metric, k, value FROM metrics WHERE eval_id = ?", [eval_id])}
        assert {("pass@k", 1), ("pass@k", 2), ("success@k", 1), ("success@k", 2), ("accuracy", None)} <= set(m)
        (acc,), = q(db, "SELECT avg(correct::INT) FROM samples WHERE eval_id = ?", [eval_id])
        assert m[("accuracy", None)] == pytest.approx(acc)
        (trunc,), = q(db, "SELECT avg((status = 'truncated')::INT) FROM samples WHERE eval_id = ?", [eval_id])
        assert m[("truncated", None)] == pytest.approx(trunc)
    # the paper's table layout: each variant beside the intact model, with deltas
    deltas = q(db, "SELECT variant, delta FROM scores WHERE metric = 'accuracy' AND variant <> 'intact'")
    assert len(deltas) == 2 and all(d is not None for _, d in deltas)


def test_greedy_samples_and_variants_are_the_models_outputs(run):
    """Greedy: both samples of a problem agree; each variant's completions are exactly what the
    model gives with the o_proj edit (computed here independently), and ablation changes them."""
    db = run["db"]
    got = {(v, p, i): c for v, p, i, c in q(db, "SELECT e.variant, s.problem_id, s.sample_idx, s.completion "
                                                "FROM samples s JOIN evals e USING (eval_id)")}
    for (v, p, i), c in got.items():
        assert c == got[(v, p, 0)]
    lm = load_model(run["model"], dtype="auto", device="cpu")
    prompts = dict(q(db, "SELECT DISTINCT problem_id, prompt FROM samples"))
    reqs = [GenRequest(pid, 0, prompts[pid], 0) for pid in sorted(prompts)]
    sp = SamplingParams(n=1, temperature=0, max_tokens=8)
    editor = HeadEditor(lm)
    for name, variant in [("intact", None), ("ablate picked top 2", Variant("a", "ablate", ((0, 1), (1, 2)))),
                          ("scale picked by 1.3", Variant("s", "scale", ((0, 1), (1, 2)), 1.3))]:
        with editor.applied(variant):
            for r in generate_transformers(lm, reqs, sp)[0]:
                assert got[(name, r.problem_id, 0)] == r.completion, (name, r.problem_id)
    assert any(got[("intact", p, 0)] != got[("ablate picked top 2", p, 0)] for p in prompts)


def test_rerun_regenerates_nothing(run):
    before = q(run["db"], "SELECT count(*) FROM samples")
    summary = execute(compile_text(run["text"]), run["db"], study_text=run["text"], live=False)
    assert {s.status for s in summary.steps} == {"cached"}
    assert q(run["db"], "SELECT count(*) FROM samples") == before


def test_resume_after_a_kill_generates_only_the_missing_samples(run):
    """Simulate a run killed inside the intact eval: some samples written, no completion marks."""
    db = run["db"]
    plan = compile_text(run["text"])
    gen = next(s for s in plan.steps if s.kind == "generate" and s.spec.variant == "intact")
    downstream = [s.key for s in plan.steps if gen.key in s.deps] + [gen.key]
    downstream += [s.key for s in plan.steps if any(d in downstream for d in s.deps)]
    old = dict(((p, i), c) for p, i, c in q(db, "SELECT problem_id, sample_idx, completion FROM samples WHERE eval_id = ?", [gen.key]))
    con = duckdb.connect(str(db))
    try:
        con.execute("DELETE FROM samples WHERE eval_id = ? AND (problem_id = 'b' OR sample_idx = 1)", [gen.key])
        con.execute("DELETE FROM steps WHERE key IN (" + ",".join("?" * len(set(downstream))) + ")", list(set(downstream)))
        con.execute("DELETE FROM metrics WHERE eval_id = ?", [gen.key])
    finally:
        con.close()
    summary = execute(plan, db, study_text=run["text"], live=False)
    rec = next(s for s in summary.steps if s.key == gen.key)
    assert rec.status == "done"
    assert rec.summary["generated"] == 4 and rec.summary["reused"] == 2  # b's two, and a/c's second
    new = dict(((p, i), c) for p, i, c in q(db, "SELECT problem_id, sample_idx, completion FROM samples WHERE eval_id = ?", [gen.key]))
    assert new == old
    assert q(db, "SELECT count(*) FROM metrics WHERE eval_id = ? AND metric = 'pass@k'", [gen.key]) == [(2,)]
    assert q(db, "SELECT count(*) FROM samples WHERE eval_id = ? AND correct IS NULL", [gen.key]) == [(0,)]
