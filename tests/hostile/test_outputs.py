"""Outputs that cannot be written (issue 14): --out on a read-only file system or under a file,
a full device, `fmt -w` on a read-only study, an unwritable zoo cache, stdout closed by `| head`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from .conftest import assert_user_error, cli, cli_process, file_bytes
from .test_stores import variants_study

OUTPUTS = {
    "export_csv": ["export", "steps", "--out", "{d}/steps.csv"],
    "export_parquet": ["export", "variants", "--out", "{d}/sub/variants.parquet"],
    "sql_csv": ["sql", "SELECT * FROM steps", "--format", "csv", "--out", "{d}/q.csv"],
    "sql_parquet": ["sql", "SELECT * FROM steps", "--format", "parquet", "--out", "{d}/q.parquet"],
    "figures": ["figures", "--out", "{d}/figs"],
}


@pytest.fixture(scope="module")
def store(tiny_qwen2, tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    (d / "s.spark").write_text(variants_study(tiny_qwen2, 2))
    db = d / "s.duckdb"
    assert cli("run", str(d / "s.spark"), "--db", str(db), "-q").code == 0
    return db


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_out_on_a_read_only_file_system(store, readonly_dir, name):
    d, prefix = readonly_dir
    args = [a.format(d=d) for a in OUTPUTS[name]]
    before = file_bytes(store)
    r = cli_process(*args, "--db", str(store), prefix=prefix)
    assert_user_error(r, f"cannot write {d}/", "hint: choose a place you can write")
    assert any(why in r.err for why in ("Read-only file system", "Permission denied")), r.err
    assert file_bytes(store) == before
    assert sorted(p.name for p in d.iterdir()) == ["existing.spark"]


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_out_under_a_regular_file(store, tmp_path, name):
    """A parent that is a file (a typo in --out): ENOTDIR, for any user."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    args = [a.format(d=blocker) for a in OUTPUTS[name]]
    assert_user_error(cli(*args, "--db", str(store)), f"cannot write {blocker}/")


@pytest.mark.parametrize("name", ["sql_csv", "export_csv"])
def test_out_on_a_full_device(store, name):
    """/dev/full accepts the open and fails every write with ENOSPC, as a full disk does."""
    args = [a.replace("{d}/q.csv", "/dev/full").replace("{d}/steps.csv", "/dev/full") for a in OUTPUTS[name]]
    r = cli(*args, "--db", str(store))
    assert_user_error(r, "cannot write /dev/full")


def test_fmt_write_on_a_read_only_file(readonly_dir):
    d, prefix = readonly_dir
    f = d / "existing.spark"
    r = cli_process("fmt", "-w", str(f), prefix=prefix)
    assert_user_error(r, f"cannot rewrite {f}")
    assert f.read_text() == 'model   base = "x"\n'
    assert sorted(p.name for p in d.iterdir()) == ["existing.spark"]


def test_fmt_write_keeps_the_file_mode_and_leaves_no_temporary(tmp_path):
    f = tmp_path / "s.spark"
    f.write_text('model   base = "x"\n')
    f.chmod(0o640)
    assert cli("fmt", "-w", str(f)).code == 0
    assert f.read_text() == 'model base = "x"\n' and (f.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["s.spark"]


def test_an_unwritable_zoo_cache_fails_before_training(readonly_dir):
    d, prefix = readonly_dir
    r = cli_process("zoo", "build", "--preset", "tiny", env={"SPARKQL_ZOO_DIR": str(d / "zoo")}, prefix=prefix,
                    timeout=120)
    assert_user_error(r, f"cannot write the zoo cache {d}/zoo", "hint: set SPARKQL_ZOO_DIR to a writable directory")
    assert "base step" not in r.out  # refused before training began


def test_a_zoo_cache_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    r = cli_process("zoo", "build", "--preset", "tiny", env={"SPARKQL_ZOO_DIR": str(tmp_path / "afile" / "zoo")},
                    timeout=120)
    assert_user_error(r, "cannot write the zoo cache", "Not a directory")


def test_a_run_whose_reader_goes_away_finishes_into_the_store(tiny_qwen2, tmp_path):
    """`sparkql run ... | head -1`: the run must not die of a closed pipe halfway through."""
    study = tmp_path / "s.spark"
    study.write_text(variants_study(tiny_qwen2, 30))
    db = tmp_path / "s.duckdb"
    p = subprocess.Popen([sys.executable, "-m", "sparkql.cli.main", "run", str(study), "--db", str(db)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    p.stdout.close()  # what `head -1` does after its line
    err = p.stderr.read()
    assert p.wait(timeout=300) == 0, err
    assert first.startswith("run ")
    assert "the reader of stdout went away (broken pipe); the run goes on" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM steps").fetchone()[0] == 31
    assert con.execute("SELECT status FROM runs").fetchall() == [("done",)]
    con.close()


def test_a_query_whose_reader_goes_away_stops_quietly(tmp_path, tiny_qwen2):
    study = tmp_path / "s.spark"
    study.write_text(variants_study(tiny_qwen2, 1))
    db = tmp_path / "s.duckdb"
    assert cli("run", str(study), "--db", str(db), "-q").code == 0
    r = subprocess.run(f'"{sys.executable}" -m sparkql.cli.main sql "SELECT * FROM range(200000)" --format csv '
                       f'--db "{db}" | head -1; exit ${{PIPESTATUS[0]}}', shell=True, executable="/bin/bash",
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "range\n"
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
