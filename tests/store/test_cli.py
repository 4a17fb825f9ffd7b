"""End to end through the compiler: `sparkql run` (dry run, run, rerun), `sparkql sql`, `sparkql export`,
and the Python API (`sparkql.run`, `sparkql.connect`). Only the circuit handler is the test's own."""

from __future__ import annotations

import json
import sys
import types

import duckdb
import pyarrow.parquet as pq
import pytest

import sparkql
from sparkql.cli.main import main as cli_main
from sparkql.errors import SparkError

from . import fakes

STUDY = """\
model base = "{root}/base"
model ckpt = "{root}/run/checkpoint-*"
circuit gsm8k on ckpt[*] diff base using eap_ig(steps = 2, top_n = 20, tau = 0) as emergent_grpo
cohort emergent_grpo
heads late = emergent_grpo - {{L1H1}}
"""


def sparkql_cli(*args) -> int:
    with pytest.raises(SystemExit) as e:
        cli_main(list(args))
    return e.value.code


@pytest.fixture
def study(tmp_path, fake_circuits):
    root = tmp_path / "models"
    fakes.make_model_dirs(root)
    path = tmp_path / "grpo.spark"
    path.write_text(STUDY.format(root=root))
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The study run once for the read-only tests of this module."""
    from sparkql.runtime.execution import handlers

    from .conftest import FAKE_CIRCUIT, FAKE_SCORES

    tmp = tmp_path_factory.mktemp("cli")
    root = tmp / "models"
    fakes.make_model_dirs(root)
    study = tmp / "grpo.spark"
    study.write_text(STUDY.format(root=root))
    db = tmp / "r.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(handlers.HANDLERS, "circuit", FAKE_CIRCUIT)
        mp.setitem(handlers.HANDLERS, "edge_scores", FAKE_SCORES)
        summary = sparkql.run(str(study), db=str(db), quiet=True)
    assert summary.status == "done"
    return db


def test_run_dry_run_then_run_then_rerun(study, tmp_path, capsys):
    db = tmp_path / "r.duckdb"
    assert sparkql_cli("run", str(study), "--db", str(db), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "24 step(s) would run, 0 cached" in out and not db.exists()
    log = tmp_path / "run.log"
    assert sparkql_cli("run", str(study), "--db", str(db), "-q", "--log", str(log)) == 0
    out = capsys.readouterr().out
    assert "✓ [24/24] heads late of ckpt[step=400]" in out and " done in " in out
    lines = log.read_text().splitlines()
    assert "24 step(s) to run, 0 cached" in lines[0] and "✓ [1/24] load base" in lines[1]
    assert " done: 24 step(s) in " in lines[-1] and len(lines) == 26
    assert sparkql_cli("run", str(study), "--db", str(db), "-q") == 0
    out = capsys.readouterr().out
    assert "✓" not in out  # nothing recomputed
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM steps").fetchone()[0] == 24
        assert con.execute("SELECT list(status ORDER BY started_at) FROM runs").fetchone()[0] == ["done", "done"]
    finally:
        con.close()


def test_sql_formats(ran, tmp_path, capsys):
    q = "SELECT step, newly_activated, maintained FROM cohort_checkpoints ORDER BY step"
    assert sparkql_cli("sql", q, "--db", str(ran), "--format", "csv") == 0
    assert capsys.readouterr().out == ("step,newly_activated,maintained\n100,2,3\n200,3,3\n300,2,3\n400,3,2\n")
    assert sparkql_cli("sql", "SELECT set_name, layer, head, rank FROM head_sets JOIN models USING (model_id) "
                              "WHERE set_name = 'late' AND label = 'ckpt[step=400]' ORDER BY rank",
                       "--db", str(ran), "--format", "json") == 0
    got = json.loads(capsys.readouterr().out)
    assert [(r["layer"], r["head"]) for r in got] == [(3, 2), (3, 0)]  # L1H1 removed from {L3H2, L3H0, L1H1}
    out = tmp_path / "o" / "edges.parquet"
    assert sparkql_cli("sql", "SELECT * FROM edges", "--db", str(ran), "--format", "parquet", "--out", str(out)) == 0
    assert pq.read_table(out).num_rows == 15
    assert sparkql_cli("sql", "SELECT count(*) AS n FROM nodes", "--db", str(ran)) == 0
    assert "110" in capsys.readouterr().out


def test_sql_is_read_only_unless_asked_and_errors_have_hints(ran, capsys):
    assert sparkql_cli("sql", "DELETE FROM steps", "--db", str(ran)) == 2
    err = capsys.readouterr().err
    assert "<query>:1:1: error: read-only: DELETE is not a query" in err and "add --write" in err
    assert sparkql_cli("sql", "SELECT * FROM edgez", "--db", str(ran)) == 2
    err = capsys.readouterr().err
    assert "edgez" in err and "hint: tables and views:" in err and "cohort_heads" in err
    assert sparkql_cli("sql", "UPDATE models SET name = name", "--db", str(ran), "--write") == 0
    assert sparkql_cli("sql", "SELECT 1", "--db", str(ran.parent / "missing.duckdb")) == 2
    assert "no results store" in capsys.readouterr().err


def test_export_tables_views_and_circuits(ran, tmp_path, capsys, monkeypatch):
    out = tmp_path / "heads.csv"
    assert sparkql_cli("export", "cohort_heads_live", "--db", str(ran), "--out", str(out)) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("cohort_key,set_name,layer,head,cohort") and len(lines) == 1 + 8
    pq_out = tmp_path / "nodes.parquet"
    assert sparkql_cli("export", "nodes", "--db", str(ran), "--format", "parquet", "--out", str(pq_out)) == 0
    assert pq.read_table(pq_out).num_rows == 110
    assert sparkql_cli("export", "cohort_head", "--db", str(ran), "--out", str(out)) == 2
    assert "did you mean 'cohort_heads'" in capsys.readouterr().err

    calls = []
    fake = types.ModuleType("sparkql.runtime.eap.export")
    fake.export_circuit = lambda con, cid, fmt, path: calls.append((cid, fmt, str(path)))
    monkeypatch.setitem(sys.modules, "sparkql.runtime.eap.export", fake)
    con = duckdb.connect(str(ran), read_only=True)
    ids = sorted(r[0] for r in con.execute("SELECT circuit_id FROM circuits").fetchall())
    con.close()
    prefix = next(i[:6] for i in ids if sum(j.startswith(i[:6]) for j in ids) == 1)
    full = next(i for i in ids if i.startswith(prefix))
    assert sparkql_cli("export", "circuit", prefix, "--db", str(ran), "--out", str(tmp_path / "c.dot")) == 0
    assert calls == [(full, "dot", str(tmp_path / "c.dot"))]
    assert sparkql_cli("export", "circuit", "zzzz", "--db", str(ran), "--out", str(tmp_path / "c.json")) == 2
    assert "no circuit with id zzzz" in capsys.readouterr().err


def test_python_api(study, tmp_path):
    db = tmp_path / "api.duckdb"
    summary = sparkql.run(study.read_text(), db=str(db), quiet=True)
    assert summary.status == "done" and summary.n_done == 24
    con = sparkql.connect(str(db))
    try:
        assert con.sql("SELECT count(*) FROM steps").fetchall() == [(24,)]  # relations work on it too
        assert con.execute("SELECT count(*) FROM cohort_heads WHERE origin = 'emergent'").fetchone()[0] == 4
        with pytest.raises(SparkError, match="read-only: DELETE is not a query"):
            con.execute("DELETE FROM steps")
    finally:
        con.close()
    again = sparkql.run(str(study), db=str(db), quiet=True)  # a path this time: same keys, all cached
    assert (again.n_done, again.n_cached) == (0, 24)


def raise_spark_error(step, ctx):
    from sparkql.errors import SparkError

    raise SparkError("out of memory", hint="use a smaller dtype")


def test_a_user_error_in_a_step_points_at_its_statement(study, tmp_path, capsys, monkeypatch):
    from sparkql.runtime.execution import handlers

    monkeypatch.setitem(handlers.HANDLERS, "cohort", f"{__name__}:raise_spark_error")
    assert sparkql_cli("run", str(study), "--db", str(tmp_path / "e.duckdb"), "-q") == 2
    err = capsys.readouterr().err
    assert f"{study}:4:1: error: cohort emergent_grpo" in err and "out of memory" in err
    assert "  cohort emergent_grpo\n  ^" in err and "hint: use a smaller dtype" in err
