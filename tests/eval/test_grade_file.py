"""`sparkql grade FILE` and `sparkql.grade(...)`: completions from anywhere, no store, no model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

import sparkql
from sparkql.errors import SparkError

from .test_cli_eval import cli

ROWS = [
    {"id": "a", "completion": "<think>hm</think> so $\\boxed{0.5}$", "gold": "\\frac12", "source": "x"},
    {"id": "b", "completion": "<think>hm</think> The answer is 7.", "gold": 7},
    {"id": "c", "completion": "still thinking about it", "gold": "3", "finish_reason": "length"},
    {"id": "d", "completion": "No thinking block here: \\boxed{12}", "gold": "13"},
]


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_jsonl_to_stdout_with_a_summary_on_stderr(tmp_path):
    src = tmp_path / "c.jsonl"
    write_jsonl(src, ROWS)
    r = cli("grade", str(src), "--extract", "lenient", db=tmp_path / "unused.duckdb")
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(o["id"], o["extracted"], o["status"], o["correct"]) for o in out] == [
        ("a", "0.5", "ok", True), ("b", "7", "ok", True), ("c", None, "truncated", False), ("d", "12", "ok", False)]
    assert out[0]["source"] == "x" and out[1]["gold"] == 7  # input fields pass through unchanged
    assert "2 correct (accuracy 0.500)" in r.stderr
    assert "ok 3 · no answer 0 · truncated 1 · timeout 0 · error 0" in r.stderr
    assert not (tmp_path / "unused.duckdb").exists()  # no store involved


def test_strict_is_the_default(tmp_path):
    src = tmp_path / "c.jsonl"
    write_jsonl(src, ROWS)
    r = cli("grade", str(src), "--out", str(tmp_path / "out.jsonl"), db=tmp_path / "x.duckdb")
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["status"] for o in out] == ["ok", "no_answer", "truncated", "ok"]  # "The answer is 7." has no box
    assert "extract strict" in r.stdout and "wrote" in r.stdout


def test_csv_and_parquet_and_json(tmp_path):
    rows = [{"id": str(i), "completion": f"</think>\\boxed{{{i}}}", "gold": str(i if i % 2 else i + 1),
             "think": "true"} for i in range(6)]
    with (tmp_path / "c.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    (tmp_path / "c.json").write_text(json.dumps(rows))
    for name in ("c.csv", "c.parquet", "c.json"):
        res = sparkql.grade(tmp_path / name)
        assert [r["correct"] for r in res] == [False, True, False, True, False, True], name
        assert res.counts == {"ok": 6, "no_answer": 0, "truncated": 0, "timeout": 0, "error": 0}


@pytest.mark.parametrize("grader, completion, gold, correct", [
    ("gsm8k", "#### 1,250", 1250, True),
    ("gpqa", "Answer: C", "C", True),
    ("triviaqa", "\\boxed{Jay-Z}", ["Jay Z", "Shawn Carter"], True),
    ("triviaqa", "\\boxed{Jay-Z}", "Jay Z", True),
    ("triviaqa", "\\boxed{Nas}", '["Jay Z"]', False),
    ("exact", "  hello   world ", "hello world", True),
])
def test_other_graders_from_python(grader, completion, gold, correct):
    res = sparkql.grade([{"completion": "</think>" + completion, "gold": gold}], grader=grader)
    assert res.rows[0]["correct"] is correct and res.rows[0]["status"] == "ok"


@pytest.mark.parametrize("rows, message", [
    ([{"completion": "x", "gold": "1"}, {"completion": "y"}], "row 2: has no 'gold' field"),
    ([{"completion": "x", "gold": None}], "row 1: 'gold' is None"),
    ([{"completion": 5, "gold": "1"}], "row 1: 'completion' is int, not text"),
    ([["x", "1"]], "row 1: is list, not an object"),
    ([{"completion": "x", "gold": "1", "think": "maybe"}], "row 1: 'think' is 'maybe'"),
])
def test_bad_rows_are_named(rows, message):
    with pytest.raises(SparkError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sparkql.grade(rows)


def test_bad_rows_in_a_file_stop_the_command(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"completion": "x", "gold": "1"}\n\n{"completion": "y", "gold": "2"\n')
    out = tmp_path / "out.jsonl"
    r = cli("grade", str(src), "--out", str(out), db=tmp_path / "x.duckdb")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{src}:3:1: error: row 2: is not valid JSON" in r.stderr
    assert not out.exists()
    (tmp_path / "c.csv").write_text("completion,answer\nx,1\n")
    r = cli("grade", str(tmp_path / "c.csv"), db=tmp_path / "x.duckdb")
    assert r.returncode == 2 and "c.csv:2:1: error: row 1: has no 'gold' field" in r.stderr
    assert "its fields: answer, completion" in r.stderr
    r = cli("grade", str(tmp_path / "c.txt"), db=tmp_path / "x.duckdb")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_import_sparkql_stays_light_and_grade_works_without_a_main_guard(tmp_path):
    script = tmp_path / "g.py"
    script.write_text(
        "import sys\n"
        "import sparkql\n"
        "light = not any(m in sys.modules for m in ('torch', 'transformers', 'math_verify', 'sympy', 'duckdb'))\n"
        "res = sparkql.grade([{'completion': '\\\\boxed{\\\\sqrt{8}}', 'gold': '2\\\\sqrt{2}'}], think=False)\n"
        "print(light, res.rows[0]['correct'], 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "False"]
