"""Read-only means read-only: `sparkql sql` without --write, the TUI's SQL tab and sparkql.connect()
change no byte of the store and create no file, whatever the SQL tries (issue: COPY TO the store's
own path replaced a 10 MB store with a 4-byte file)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb
import pytest

import sparkql
from sparkql.cli.main import main as cli_main
from sparkql.errors import SparkError
from sparkql.store.api import connect
from sparkql.store.connection import READER_CONFIG, open_db
from sparkql.store.readonly import FILE_WRITERS, QueryRefused, check_query
from sparkql.tui import data

V1 = Path(__file__).parent / "data" / "schema_v1.sql"


def sparkql_cli(*args) -> int:
    with pytest.raises(SystemExit) as e:
        cli_main(list(args))
    return e.value.code


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with its hash: what no read-only command may change."""
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def place(tmp_path):
    """A store with some rows, another DuckDB database beside it, and a hard link to the store."""
    db = tmp_path / "store.duckdb"
    con = connect(db, read_only=False)
    con.execute("INSERT INTO models (model_id, name, path, step) SELECT 'm' || i, 'ckpt', '/x', i FROM range(2000) t(i)")
    con.close()
    other = tmp_path / "other.duckdb"
    o = duckdb.connect(str(other))
    o.execute("CREATE TABLE t AS SELECT range AS x FROM range(100)")
    o.close()
    os.link(db, tmp_path / "link.duckdb")
    (tmp_path / "input.csv").write_text("a,b\n1,x\n2,y\n")
    return tmp_path, db, other


def attacks(tmp: Path, db: Path, other: Path) -> dict[str, str]:
    """The statements of the issue, and the ways around a naive check."""
    return {
        "copy-to-the-store": f"COPY (SELECT 1) TO '{db.resolve()}' (FORMAT csv)",
        "copy-elsewhere": f"COPY (SELECT * FROM models) TO '{tmp / 'leak.csv'}' (FORMAT csv)",
        "export-database": f"EXPORT DATABASE '{tmp / 'exported'}'",
        "attach-read-write-and-delete": f"ATTACH '{other}' AS o (READ_WRITE); DELETE FROM o.t",
        "attach-the-store-through-a-hard-link": f"ATTACH '{tmp / 'link.duckdb'}' AS s (READ_WRITE); DELETE FROM s.models",
        "a-query-first": f"SELECT 1; COPY (SELECT 1) TO '{db.resolve()}' (FORMAT csv)",
        "explain-analyze-copy": f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp / 'leak.csv'}'",
        "install-extension": "INSTALL httpfs",
        "profile-to-a-file": f"PRAGMA enable_profiling = 'json'; PRAGMA profiling_output = '{tmp / 'profile.json'}'; SELECT 1",
        "set-back-the-lock": "SET lock_configuration = false",
        "call-enable-logging": f"CALL enable_logging(storage = 'file', storage_path = '{tmp / 'logs'}')",
        "checkpoint": "CHECKPOINT",
    }


ATTACKS = list(attacks(Path("/t"), Path("/t/s"), Path("/t/o")))


@pytest.mark.parametrize("attack", ATTACKS)
def test_sparkql_sql_refuses_and_changes_nothing(place, attack, capsys):
    tmp, db, other = place
    before = snapshot(tmp)
    assert sparkql_cli("sql", attacks(tmp, db, other)[attack], "--db", str(db)) == 2
    err = capsys.readouterr().err
    assert "is not a query" in err and "nothing was run" in err and "add --write" in err
    assert "Traceback" not in err
    assert snapshot(tmp) == before  # the store, the other database, the link: same bytes, no new file


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_tui_sql_tab_refuses_and_changes_nothing(place, attack):
    tmp, db, other = place
    before = snapshot(tmp)
    with data.connect(db) as con:
        with pytest.raises(data.QueryRefused, match="is not a query"):
            data.run_sql(con, attacks(tmp, db, other)[attack])
        assert data.run_sql(con, "SELECT count(*) FROM models").rows == [(2000,)]  # still usable
    assert snapshot(tmp) == before


@pytest.mark.parametrize("attack", ATTACKS)
def test_sparkql_connect_refuses_and_changes_nothing(place, attack):
    tmp, db, other = place
    before = snapshot(tmp)
    sql = attacks(tmp, db, other)[attack]
    with sparkql.connect(str(db)) as con:
        for run in (con.execute, con.sql, con.query, lambda q: con.sql("SELECT 1 AS x").query("v", q)):
            with pytest.raises(QueryRefused, match="is not a query"):
                run(sql)
        with pytest.raises(QueryRefused, match="is not a query"):
            con.cursor().execute(sql)  # a cursor is guarded too
    assert snapshot(tmp) == before


def test_a_select_cannot_reach_around_the_check(place):
    """What a query itself could do is closed by the reader's locked configuration."""
    tmp, db, _ = place
    before = snapshot(tmp)
    con = open_db(db)
    try:
        settings = dict(con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN (SELECT unnest(?::VARCHAR[]))",
            [list(READER_CONFIG)]).fetchall())
        assert settings == {k: str(v).lower() for k, v in READER_CONFIG.items()}
        for sql in (f"SELECT * FROM enable_logging(storage = 'file', storage_path = '{tmp / 'logs'}')",
                    "SELECT * FROM query('COPY (SELECT 1) TO ''leak.csv''')",
                    "SELECT * FROM read_parquet('https://example.invalid/x.parquet')"):  # would autoinstall httpfs
            check_query(sql)  # each is a SELECT...
            with pytest.raises(duckdb.Error):  # ...that DuckDB refuses to run here
                con.execute(sql)
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET autoinstall_known_extensions = true")  # our own code cannot unlock it either
    finally:
        con.close()
    assert snapshot(tmp) == before


def test_reading_local_files_in_a_query_stays_allowed(place, capsys):
    tmp, db, _ = place
    q = f"SELECT a, b FROM read_csv('{tmp / 'input.csv'}') ORDER BY a"
    assert sparkql_cli("sql", q, "--db", str(db), "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines() == ["a,b", "1,x", "2,y"]
    with data.connect(db) as con:
        assert data.run_sql(con, q).rows == [(1, "x"), (2, "y")]
    with sparkql.connect(str(db)) as con:
        assert con.sql(q).fetchall() == [(1, "x"), (2, "y")]


def test_queries_of_every_kind_run(place, capsys):
    _, db, _ = place
    for q in ("WITH m AS (FROM models) SELECT count(*) FROM m", "DESCRIBE models", "SHOW TABLES",
              "SUMMARIZE models", "VALUES (1)", "EXPLAIN SELECT 1", "EXPLAIN ANALYZE SELECT count(*) FROM models",
              "SELECT 1; SELECT 2;"):
        assert sparkql_cli("sql", q, "--db", str(db)) == 0, q
    capsys.readouterr()


@pytest.mark.parametrize("text", ["", "  ;  ", "/* only a comment */"])
def test_an_empty_query_is_a_spark_error(place, text, capsys):
    _, db, _ = place
    assert sparkql_cli("sql", text, "--db", str(db)) == 2
    err = capsys.readouterr().err
    assert "error: no SQL statement to run" in err and "Traceback" not in err


def test_the_refusal_points_at_the_statement(place, capsys):
    _, db, _ = place
    assert sparkql_cli("sql", "SELECT 1;\n  COPY models TO 'x.csv'", "--db", str(db)) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[:3] == [
        err.splitlines()[0],
        "    COPY models TO 'x.csv'",
        "    ^^^^",
    ] and err.startswith("<query>:2:3: error: read-only: COPY is not a query")


def test_with_write_everything_goes(place, capsys):
    tmp, db, _ = place
    out = tmp / "out.csv"
    assert sparkql_cli("sql", f"COPY (SELECT 42 AS x) TO '{out}' (HEADER)", "--db", str(db), "--write") == 0
    assert out.read_text().splitlines() == ["x", "42"]
    assert sparkql_cli("sql", "DELETE FROM models WHERE step >= 10", "--db", str(db), "--write") == 0
    assert sparkql_cli("sql", "SELECT count(*) AS n FROM models", "--db", str(db), "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "10"


def test_notebook_file_writers_are_refused(place):
    tmp, db, _ = place
    before = snapshot(tmp)
    with sparkql.connect(str(db)) as con:
        rel = con.sql("SELECT * FROM models")
        for name in ("to_csv", "write_csv", "to_parquet", "write_parquet"):
            with pytest.raises(QueryRefused, match="writes a file"):
                getattr(rel, name)(str(tmp / f"x.{name}"))
        with pytest.raises(QueryRefused, match="writes a file"):
            con.install_extension("httpfs")
        assert len(rel.filter("step < 5")) == 5  # relations stay relations (and guarded)
        assert con.execute("SELECT 1").fetchall() == [(1,)]
    assert snapshot(tmp) == before


def test_every_duckdb_method_that_writes_a_file_is_known():
    """A DuckDB upgrade that adds a file-writing method must be looked at, not let through."""
    looks_like_writer = ("write", "to_csv", "to_parquet", "export", "install", "load_ext", "profil")
    reviewed_safe = {"disable_profiling", "get_profiling_information", "to_arrow_reader", "to_arrow_table",
                     "to_df", "to_dicts", "to_table", "to_view"}  # in memory, or into the read-only store
    for cls in (duckdb.DuckDBPyConnection, duckdb.DuckDBPyRelation):
        for name in dir(cls):
            if any(w in name for w in looks_like_writer) and not name.startswith("_"):
                assert name in FILE_WRITERS or name in reviewed_safe, f"{cls.__name__}.{name}: review it"


def test_a_v1_store_is_read_as_it_is_and_never_migrated(tmp_path, capsys):
    old = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(old))
    con.execute(V1.read_text())
    con.execute("INSERT INTO models (model_id, name, path, step) VALUES ('m', 'base', '/x', NULL)")
    con.close()
    before = snapshot(tmp_path)
    assert sparkql_cli("sql", "SELECT name FROM models", "--db", str(old), "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines() == ["name", "base"]
    # A view of this build is missing there: the hint says a writer upgrades the store.
    assert sparkql_cli("sql", "SELECT * FROM cohort_summary", "--db", str(old)) == 2
    err = capsys.readouterr().err
    assert "schema version 1" in err and "only writers migrate" in err
    assert sparkql_cli("figures", "--db", str(old), "--out", str(tmp_path / "figs")) == 2
    err = capsys.readouterr().err
    assert "has schema version 1" in err and "only writers migrate" in err
    with sparkql.connect(str(old)) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    assert snapshot(tmp_path) == before
    # and a writer does migrate it
    assert sparkql_cli("sql", "SELECT 1", "--db", str(old), "--write") == 0
    with sparkql.connect(str(old)) as c:
        assert c.execute("SELECT count(*) FROM cohort_summary").fetchone() == (0,)


def test_a_missing_store_is_not_created_by_a_reader(tmp_path, capsys):
    for args in (("sql", "SELECT 1"), ("figures", "--out", str(tmp_path / "f"))):
        assert sparkql_cli(*args, "--db", str(tmp_path / "none.duckdb")) == 2
        assert "no results store" in capsys.readouterr().err
    with pytest.raises(SparkError, match="is a directory"):
        sparkql.connect(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
