"""``sparkql sql "SELECT ..."``: query the results store (read-only unless --write).

Never imports torch. Without --write, the store is opened read-only and locked
(sparkql.store.connection.open_db, which waits briefly while a running study
commits a step), and the text runs only if every statement is a query
(sparkql.store.readonly.check_query): no byte of the store or of any other
file changes. An older store is read as it is; only writers migrate.
"""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import io
import json
import re
import sys
import uuid
from pathlib import Path

import click

from sparkql.cli.common import console, db_option, writing
from sparkql.errors import SparkError
from sparkql.store.ids import SHORT_ID, is_id, short_id


def _jsonable(v):
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v


def _known_relations(con) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
        "UNION SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"
    ).fetchall()
    return sorted(r[0] for r in rows)


WRITE_HINT = "`sparkql sql` opens the store read-only and runs queries only; add --write to run anything else"


def query_error(e: Exception, con, db: str) -> SparkError:
    """A DuckDB error as a SparkError with a useful hint."""
    import duckdb

    msg = str(e).strip()
    if "read-only" in msg.lower():
        return SparkError(f"the statement changes the store, which `sparkql sql` opens read-only: {msg}",
                          hint="add --write to allow changes", file=db)
    hint = None
    if isinstance(e, duckdb.CatalogException) and con is not None:
        hint = "tables and views: " + ", ".join(_known_relations(con))
        note = _older_store_note(con, db)
        if note:
            hint = f"{note}; {hint}"
    elif isinstance(e, duckdb.ParserException):
        hint = "check the SQL syntax (DuckDB dialect); quote the whole query for the shell"
    elif "parameter" in msg.lower():
        hint = 'give one --param per ? (in order), or --param NAME=VALUE per $NAME, e.g. --param 160'
    return SparkError(f"query failed: {msg}", hint=hint, file=db)


def _older_store_note(con, db: str) -> str | None:
    """Said when a query fails on a store older than this build (readers never migrate it)."""
    from sparkql.store.connection import upgrade_hint
    from sparkql.store.migrations import current_version
    from sparkql.store.schema import SCHEMA_VERSION

    try:
        version = current_version(con)
    except Exception:  # noqa: BLE001 - only a hint
        return None
    if version is None or version >= SCHEMA_VERSION:
        return None
    return f"{db} has schema version {version} (this sparkql writes {SCHEMA_VERSION}); {upgrade_hint(db)}"


def write_rows(fmt: str, columns: list[str], rows: list[tuple], out) -> None:
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])
    elif fmt == "json":
        json.dump([{c: _jsonable(v) for c, v in zip(columns, r)} for r in rows], out, indent=1)
        out.write("\n")
    else:  # pragma: no cover - guarded by click.Choice
        raise ValueError(fmt)


# Ids are shown by their first SHORT_ID digits in the table (sparkql.store.ids: the TUI's SQL tab
# shows them the same way); csv, json, parquet and --full-ids keep the whole key for joins.
def _cell(v, full_ids: bool) -> tuple[str, bool]:
    """The text of one value, and whether it is a shortened id."""
    if v is None:
        return "NULL", False
    if isinstance(v, float):
        return f"{v:.6g}", False
    text = str(v)
    if not full_ids and is_id(v):
        return short_id(text), True
    return text, False


def print_table(columns: list[str], rows: list[tuple], limit: int | None, full_ids: bool = False,
                layout: str = "auto") -> None:
    """Rows as a table, or, when the table is wider than the terminal (``layout`` auto) or asked
    for (``records``), as one block of ``column  value`` lines per row: folded into an 80-column
    terminal, a 13-column table wraps every value over several lines, digits included."""
    from rich.table import Table
    from rich.text import Text

    shown = rows if limit is None else rows[:limit]
    cells = [[_cell(v, full_ids) for v in r] for r in shown]
    shortened = any(short for r in cells for _, short in r)
    texts = [[text for text, _ in r] for r in cells]
    widths = [max([len(c)] + [max(map(len, r[i].splitlines() or [""])) for r in texts]) for i, c in enumerate(columns)]
    natural = sum(widths) + 3 * len(columns) + 1  # rich's box: a border and padding around every cell
    if layout == "records" or (layout == "auto" and natural > console.width and len(columns) > 1):
        name_width = max(map(len, columns))
        for n, r in enumerate(texts, 1):
            console.print(Text(f"-[ row {n} ]" + "-" * max(0, min(console.width, 40) - 11 - len(str(n))), style="dim"))
            for c, text in zip(columns, r):
                console.print(Text(f"{c.ljust(name_width)}  {text}"), overflow="fold")
    else:
        t = Table(show_lines=False)
        for c in columns:
            t.add_column(Text(c), overflow="fold")
        for r in texts:
            # Text, not str: values are data, and `ckpt[step=200]` must not be read as rich markup.
            t.add_row(*[Text(text) for text in r])
        console.print(t)
    if len(shown) == len(rows):
        console.print(f"{len(rows)} row(s)", style="dim")
    else:
        console.print(f"first {len(shown)} row(s) shown; --limit 0 or --format csv for all", style="dim")
    if shortened:
        console.print(f"ids shown by their first {SHORT_ID} hex digits (… marks them); --full-ids or "
                      "--format csv/json for whole keys", style="dim")


def parse_params(query: str, given: tuple[str, ...]) -> list | dict | None:
    """``--param`` values: positional for ``?`` / ``$1`` (in order), or ``NAME=VALUE`` for ``$NAME``.

    A value is passed as text; DuckDB casts it to the type the query gives the parameter
    (``step = ?`` makes it an integer). A ``NAME=VALUE`` whose ``$NAME`` the query does not use is
    an ordinary positional value (so ``--param a=b`` still binds the text ``a=b`` to a ``?``)."""
    if not given:
        return None
    named: dict[str, str] = {}
    positional: list[str] = []
    for g in given:
        name, eq, value = g.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_]\w*", name) and re.search(rf"\${re.escape(name)}\b", query):
            if name in named:
                raise SparkError(f"--param {name} is given twice", hint=f"give ${name} one value")
            named[name] = value
        else:
            positional.append(g)
    if named and positional:
        raise SparkError("--param mixes named (NAME=VALUE) and positional values",
                         hint="DuckDB binds either ? / $1 parameters or $name ones in a query, not both")
    return named or positional


@click.command("sql")
@click.argument("query")
@db_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True, help="Output format.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of stdout (required for parquet).")
@click.option("--write", "write", is_flag=True,
              help="Open the store read-write and run any statement (INSERT, DELETE, CREATE, COPY TO, ...); "
                   "without it only queries run, and nothing but --out is written.")
@click.option("--limit", type=int, default=200, show_default=True, help="Rows shown by --format table (0: all).")
@click.option("--param", "params", multiple=True, metavar="VALUE|NAME=VALUE",
              help="A query parameter, repeatable: one per ? (or $1, $2, ...) in order, or NAME=VALUE for $NAME.")
@click.option("--layout", type=click.Choice(["auto", "table", "records"]), default="auto", show_default=True,
              help="--format table: a table, one block per row (records), or records only when the table "
                   "is wider than the terminal (auto).")
@click.option("--full-ids", is_flag=True,
              help="Show whole 64-hex ids in --format table (by default their first 12 digits).")
def sql(query: str, db: str, fmt: str, out: str | None, write: bool, limit: int, params: tuple[str, ...],
        full_ids: bool, layout: str) -> None:
    """Run SQL (DuckDB dialect) against the results store.

    Example: sparkql sql "SELECT set_name, step, newly_activated, maintained FROM cohort_checkpoints ORDER BY step"

    With a parameter: sparkql sql "SELECT src, dst, score FROM edges WHERE circuit_id LIKE ? || '%' LIMIT 20" --param 3f2a9c
    """
    import duckdb

    from sparkql.store.api import connect
    from sparkql.store.connection import open_db
    from sparkql.store.readonly import check_query

    if fmt == "parquet" and not out:
        raise SparkError("--format parquet needs --out FILE", hint="e.g. --out results.parquet")
    try:
        statements = check_query(query, hint=WRITE_HINT) if not write else duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise query_error(e, None, db) from None
    if not statements:
        raise SparkError("no SQL statement to run", hint='give a query, e.g. sparkql sql "SELECT * FROM runs"')
    bound = parse_params(query, params)
    con = connect(db, read_only=False) if write else open_db(db)
    try:
        if fmt == "parquet":
            try:
                rel = con.sql(query, params=bound)
                if rel is None:
                    raise SparkError("the statement returns no rows to write", hint="give a SELECT", file=db)
                table = rel.to_arrow_table()
            except duckdb.Error as e:
                raise query_error(e, con, db) from None
            import pyarrow.parquet as pq

            with writing(out):
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, out)
            console.print(f"wrote {table.num_rows} row(s) to {out}")
            return
        try:
            cur = con.execute(query, bound)
        except duckdb.Error as e:
            raise query_error(e, con, db) from None
        if cur.description is None:  # a statement without a result (with --write)
            console.print("ok")
            return
        columns = [d[0] for d in cur.description]
        if fmt == "table" and not out:
            # fetch only what is shown: `SELECT * FROM edges` must not pull millions of rows
            rows = cur.fetchall() if limit == 0 else cur.fetchmany(limit + 1)
        else:
            rows = cur.fetchall()
    finally:
        con.close()
    if fmt == "table":
        if out:
            raise SparkError("--format table prints to the terminal", hint="use --format csv or json with --out")
        print_table(columns, rows, None if limit == 0 else limit, full_ids, layout)
        return
    if out:
        with writing(out):
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            with open(out, "w", newline="", encoding="utf-8") as f:
                write_rows(fmt, columns, rows, f)
        console.print(f"wrote {len(rows)} row(s) to {out}")
    else:
        buf = io.StringIO()
        write_rows(fmt, columns, rows, buf)
        sys.stdout.write(buf.getvalue())
