"""The README's store examples run as printed: its `sparkql sql` commands, its SQL block (the `?`
query through `--param`) and its Python example, against a store of the shape they describe (a
base model, two checkpoint series `grpo` and `sft` with their cohorts, an intact and an ablated
eval). The CLI runs in a subprocess at 80 columns, as a user's terminal would."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import sparkql

from . import fakes

README = (Path(__file__).parents[2] / "README.md").read_text()

STUDY = """\
model base = "{root}/base"
model grpo = "{root}/run/checkpoint-*"
model sft = "{root2}/run/checkpoint-*"
circuit gsm8k on grpo[*] diff base using eap_ig(steps = 2, top_n = 20, tau = 0) as emergent_grpo
circuit gsm8k on sft[*] diff base using eap_ig(steps = 2, top_n = 20, tau = 0) as emergent_sft
cohort emergent_grpo
cohort emergent_sft
"""


@pytest.fixture(scope="module")
def two_series(tmp_path_factory):
    from sparkql.runtime.execution import handlers
    from sparkql.store.api import Store

    from .conftest import FAKE_CIRCUIT, FAKE_SCORES

    tmp = tmp_path_factory.mktemp("readme")
    fakes.make_model_dirs(tmp / "m1")
    fakes.make_model_dirs(tmp / "m2")
    (tmp / "m2" / "base").rename(tmp / "m2" / "unused")
    study = tmp / "grpo.spark"
    study.write_text(STUDY.format(root=tmp / "m1", root2=tmp / "m2"))
    db = tmp / "grpo.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(handlers.HANDLERS, "circuit", FAKE_CIRCUIT)
        mp.setitem(handlers.HANDLERS, "edge_scores", FAKE_SCORES)
        assert sparkql.run(str(study), db=str(db), quiet=True).status == "done"
    con = duckdb.connect(str(db), read_only=True)
    last = con.execute("SELECT model_id FROM models WHERE name = 'grpo' ORDER BY step DESC LIMIT 1").fetchone()[0]
    con.close()
    s = Store(db)
    evals, metrics = [], []
    for variant, acc in (("intact", 0.4), ("ablate emergent_grpo top 2", 0.3)):
        eid = hashlib.sha256(variant.encode()).hexdigest()  # ids are content addresses, 64 hex digits
        evals.append({"eval_id": eid, "model_id": last, "variant": variant, "dataset": "aime24", "n": 4,
                      "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "think": True, "n_problems": 30})
        metrics.append({"eval_id": eid, "metric": "pass@k", "k": 1, "value": acc, "stderr": 0.02})
    s.write({"evals": evals, "metrics": metrics})
    s.close()
    return db


def sparkql_sql(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "sparkql.cli.main", "sql", *args, "--db", str(db)],
                          capture_output=True, text=True, env=env, timeout=120)


def readme_sql_commands() -> list[list[str]]:
    """Every `sparkql sql "..."` line of the README's shell blocks, as argv after `sql` (no --db)."""
    out = []
    for block in re.findall(r"```\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            if line.startswith("sparkql sql "):
                argv = shlex.split(line, comments=True)[2:]
                if "--db" in argv:
                    i = argv.index("--db")
                    del argv[i: i + 2]
                out.append(argv)
    return out


def test_readme_sql_commands_run_and_read_one_series(two_series):
    commands = readme_sql_commands()
    assert len(commands) >= 2
    for argv in commands:
        r = sparkql_sql(two_series, *argv, "--format", "json")
        assert r.returncode == 0, (argv, r.stderr)
        rows = json.loads(r.stdout)
        assert rows, argv
        if "cohort_checkpoints" in argv[0]:
            steps = [row["step"] for row in rows]
            assert steps == sorted(set(steps)), ("two series mixed", argv[0], steps)


def test_readme_sql_block_runs_from_the_cli_with_param(two_series):
    block = re.findall(r"```sql\n(.*?)```", README, flags=re.S)
    assert len(block) == 1
    statements = [s.strip() for s in block[0].split(";") if s.strip()]
    queries = ["\n".join(line for line in s.splitlines() if not line.startswith("--")) for s in statements]
    assert len(queries) == 3 and sum("?" in q for q in queries) == 1
    circuit = sparkql_sql(two_series, "SELECT circuit_id FROM circuits LIMIT 1", "--format", "csv").stdout.split()[1]
    for q in queries:
        params = ["--param", circuit[:12]] if "?" in q else []  # a prefix, as the table shows ids
        r = sparkql_sql(two_series, q, *params, "--format", "json")
        assert r.returncode == 0, (q, r.stderr)
        assert json.loads(r.stdout), q


def test_readme_python_example_runs(two_series, monkeypatch, capsys):
    """The example as printed, with `sparkql.run` recorded instead of run (the store is built)."""
    code = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    example = next(c for c in code if "sparkql.connect(" in c)
    calls = []
    monkeypatch.setattr(sparkql, "run", lambda *a, **k: calls.append((a, k)))
    monkeypatch.chdir(two_series.parent)
    exec(compile(example, "README.md", "exec"), {"__name__": "__main__"})
    assert calls and calls[0][1]["db"] == two_series.name
    assert "emergent_grpo" in capsys.readouterr().out


def test_sql_table_at_80_columns_keeps_values_whole(two_series):
    """`SELECT * FROM scores` in an 80-column terminal: no line is wider, no 64-hex id is printed
    whole or split, numbers and labels appear whole; the shortened id finds its row again."""
    r = sparkql_sql(two_series, "SELECT * FROM scores")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    assert not re.search(r"[0-9a-f]{32}", r.stdout)
    eval_id = sparkql_sql(two_series, "SELECT eval_id FROM scores ORDER BY value LIMIT 1", "--format", "csv").stdout.split()[1]
    assert len(eval_id) == 64
    assert any(line.split() == ["eval_id", eval_id[:12] + "…"] for line in lines)  # one line per value
    for whole in ("grpo[step=400]", "ablate emergent_grpo top 2", "-0.1", "0.4", "0.3"):
        assert any(whole in line for line in lines), whole
    n_cols = len(sparkql_sql(two_series, "SELECT * FROM scores LIMIT 1", "--format", "csv").stdout.splitlines()[0].split(","))
    assert len(lines) <= 2 * (n_cols + 1) + 4  # two records of a line per column and a header line, then the footer
    again = sparkql_sql(two_series, "SELECT value FROM scores WHERE eval_id LIKE ? || '%'",
                        "--param", eval_id[:12], "--format", "csv")
    assert again.stdout.split() == ["value", "0.3"]
    full = sparkql_sql(two_series, "SELECT eval_id FROM scores ORDER BY value LIMIT 1", "--full-ids")
    assert eval_id in full.stdout.replace("\n", "").replace("│", "").replace(" ", "")


def test_a_narrow_result_stays_a_table(two_series):
    r = sparkql_sql(two_series, "SELECT model, variant, value FROM scores ORDER BY value")
    assert r.returncode == 0 and "┃ model" in r.stdout and "-[ row" not in r.stdout
    rows = [line for line in r.stdout.splitlines() if "grpo[step=400]" in line]
    assert len(rows) == 2 and "0.3" in rows[0] and "0.4" in rows[1]


def test_param_errors_are_user_errors(two_series):
    q = "SELECT count(*) FROM models WHERE step = ?"
    assert sparkql_sql(two_series, q, "--param", "200", "--format", "csv").stdout.split() == ["count_star()", "2"]
    missing = sparkql_sql(two_series, q)
    assert missing.returncode == 2 and "--param" in missing.stderr and "Traceback" not in missing.stderr
    named = sparkql_sql(two_series, "SELECT count(*) AS n FROM models WHERE name = $series", "--param", "series=sft",
                        "--format", "csv")
    assert named.returncode == 0 and named.stdout.split() == ["n", "4"]
    mixed = sparkql_sql(two_series, "SELECT count(*) FROM models WHERE name = $series", "--param", "series=sft",
                        "--param", "200")
    assert mixed.returncode == 2 and "mixes named" in mixed.stderr
    text = sparkql_sql(two_series, "SELECT ? AS v", "--param", "a=b", "--format", "csv")  # no $a: a plain value
    assert text.stdout.split() == ["v", "a=b"]


def test_reading_views_carry_labels_beside_their_ids(two_series):
    r = sparkql_sql(two_series, "SELECT DISTINCT model FROM circuit_heads ORDER BY model", "--format", "csv")
    assert r.stdout.split()[1:] == ["base"] + [f"{s}[step={n}]" for s in ("grpo", "sft") for n in fakes.STEPS]
    r = sparkql_sql(two_series, "SELECT DISTINCT series, read_from_label FROM reward_curve WHERE step = 150 ORDER BY 1",
                    "--format", "csv")  # logged at 150: first held by checkpoint-200's trainer_state.json
    assert r.stdout.split()[1:] == ["grpo,grpo[step=200]", "sft,sft[step=200]"]
