"""Studies with ``set backend = vllm`` on a CPU, through the compiler and the executor: the samples
equal a transformers run of the same study (greedy, intact and edited, two models), engines are
released when no later step needs their model, the canary catches an edit that never reached
the engine, and a script without the ``__main__`` guard is told to add it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import duckdb
import psutil
import pytest

from sparkql.errors import SparkError
from sparkql.plan.compile import compile_text
from sparkql.runtime.generation import vllm_backend as V
from sparkql.runtime.execution.executor import execute
from sparkql.runtime.models.interventions import Variant
from sparkql.runtime.models.loading import load_model

from . import worker_probes

pytestmark = pytest.mark.vllm

PROBLEMS = [
    {"qid": "a", "question": "What is 2 + 2?", "answer": "4"},
    {"qid": "b", "question": "What is 10 - 3?", "answer": "7"},
    {"qid": "c", "question": "Compute 6 * 7.", "answer": "42"},
    {"qid": "d", "question": "Name a prime larger than 10.", "answer": "11"},
]


def study(a, b, data) -> str:
    return f'''
set backend = vllm
model a = "{a}"
model b = "{b}"
dataset probs = "{data}" (problem = "question", answer = "answer", id = "qid")
heads picked = {{L0H1, L1H2}}
ablate picked on a as ablated
scale picked by 1.5 on a as scaled
eval pass@k on probs for a, ablated, scaled with n = 2, temperature = 0, max_tokens = 24
eval pass@k on probs for b with n = 2, temperature = 0, max_tokens = 24
'''


def q(db, sql, params=()):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def engine_processes() -> set[tuple[int, str]]:
    """Live child processes (pid, command line), less multiprocessing's resource tracker, which
    the first spawned process starts and which lives as long as this one."""
    out = set()
    for c in psutil.Process().children(recursive=True):
        try:
            if c.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(c.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "resource_tracker" not in cmd:
            out.add((c.pid, cmd[:200]))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    f = tmp_path_factory.mktemp("data") / "probs.jsonl"
    f.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return f


def test_vllm_study_equals_transformers_and_releases_engines(vllm_qwen2, vllm_qwen2_b, data, tmp_path, monkeypatch):
    V.release_engines()  # engines of other test modules
    baseline = engine_processes()
    text = study(vllm_qwen2, vllm_qwen2_b, data)
    plan = compile_text(text)
    assert plan.backend == "vllm"
    ref = execute(plan, tmp_path / "t.duckdb", study_text=text, live=False, exec_overrides={"backend": "transformers"})
    assert ref.status == "done"

    starts = []
    real_engine_for = V.engine_for

    def recording(path, dtype, **kw):
        if not any(k[0] == path for k in V._ENGINES):
            starts.append((path, V.engine_models(), engine_processes() - baseline))
        return real_engine_for(path, dtype, **kw)

    monkeypatch.setattr(V, "engine_for", recording)
    got = execute(plan, tmp_path / "v.duckdb", study_text=text, live=False)
    assert got.status == "done"

    # the samples are the transformers backend's, token for token, intact and edited
    cols = "e.variant, e.model_id, s.problem_id, s.sample_idx, s.completion, s.finish_reason, s.n_tokens"
    sql = f"SELECT {cols} FROM samples s JOIN evals e USING (eval_id) ORDER BY ALL"
    assert q(tmp_path / "v.duckdb", sql) == q(tmp_path / "t.duckdb", sql)
    assert len({r[:2] for r in q(tmp_path / "v.duckdb", sql)}) == 4  # a intact, a ablated, a scaled, b intact
    # dtype auto is resolved once (fp32 on a CPU) for both backends, and stored with the eval;
    # the canary ran before every vLLM eval and agreed fully
    assert q(tmp_path / "v.duckdb", "SELECT DISTINCT backend, dtype, canary_agreement FROM evals") == [("vllm", "fp32", 1.0)]
    assert q(tmp_path / "t.duckdb", "SELECT DISTINCT backend, dtype, canary_agreement FROM evals") == [
        ("transformers", "fp32", None)]
    # greedy with n = 2: one sample, copied (vLLM refuses n > 1 at temperature 0)
    summaries = [json.loads(s) for (s,) in q(tmp_path / "v.duckdb", "SELECT summary FROM steps WHERE kind = 'generate'")]
    assert all(s["greedy_copies"] == len(PROBLEMS) for s in summaries)

    # one engine per model, and model a's engine was gone (process and all) before b's started
    assert [p for p, _, _ in starts] == [str(vllm_qwen2), str(vllm_qwen2_b)]
    _, alive_at_b, procs_at_b = starts[1]
    assert alive_at_b == set() and procs_at_b == set()
    assert V.engine_models() == set() and engine_processes() - baseline == set()


def test_canary_fails_an_edit_that_never_reached_the_engine(vllm_qwen2, data, tmp_path, monkeypatch):
    text = f'''
set backend = vllm
model a = "{vllm_qwen2}"
dataset probs = "{data}" (problem = "question", answer = "answer", id = "qid")
ablate heads L0H0, L0H1, L0H2, L0H3 on a
eval pass@k on probs with n = 1, temperature = 0, max_tokens = 24
'''
    # premise: the edit changes the transformers backend's greedy continuations from the start
    lm = load_model(vllm_qwen2, dtype="fp32", device="cpu")
    from sparkql.runtime.steps.generate import _requests  # the eval's own prompts

    plan = compile_text(text)
    gen = next(s for s in plan.steps if s.kind == "generate")
    prompts = [r.prompt for r in _requests(gen.spec, [{"id": p["qid"], "problem": p["question"]} for p in PROBLEMS],
                                           set(), lm.tokenizer, "math")]
    layer0 = Variant("v", "ablate", tuple((0, h) for h in range(4)))
    intact, edited = (V.transformers_reference(lm, prompts, v, 24) for v in (None, layer0))
    assert V.agreement(intact, edited) < V.CANARY_MIN_AGREEMENT

    monkeypatch.setattr(V, "EDIT_FN", worker_probes.noop_edit)
    with pytest.raises(SparkError, match="greedy canary failed") as e:
        execute(plan, tmp_path / "s.duckdb", study_text=text, live=False)
    assert "ablate" in e.value.message
    db = tmp_path / "s.duckdb"
    assert q(db, "SELECT variant, canary_agreement FROM evals") == [("intact", 1.0)]  # intact evals pass
    assert q(db, "SELECT count(*) FROM samples s JOIN evals e USING (eval_id) WHERE e.variant <> 'intact'") == [(0,)]
    assert q(db, "SELECT count(*) FROM steps WHERE kind = 'generate'") == [(1,)]
    assert V.engine_models() == set()  # a failed run releases its engines too


def test_unguarded_script_is_told_to_guard_its_call(vllm_qwen2, data, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f'''
        import sparkql

        STUDY = """
        model a = "{vllm_qwen2}"
        dataset probs = "{data}" (problem = "question", answer = "answer", id = "qid")
        eval pass@k on probs with n = 1, temperature = 0, max_tokens = 4
        """
        sparkql.run(STUDY, db={str(tmp_path / "s.duckdb")!r}, backend="vllm", quiet=True)
    '''))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode != 0
    assert 'if __name__ == "__main__":' in r.stderr
    assert "vLLM starts its engine in a new process" in r.stderr
