"""``sparkql export``: a table or view to Parquet/CSV, or a circuit to JSON/DOT/SVG.

    sparkql export edges --format parquet --out edges.parquet
    sparkql export cohort_heads --format csv --out heads.csv
    sparkql export circuit 3f2a9c --format json --out circuit.json   # EAP-IG Graph.to_json layout
"""

from __future__ import annotations

from pathlib import Path

import click

from sparkql.cli.common import console, db_option, writing
from sparkql.errors import SparkError, known_names_hint


def _relations(con) -> list[str]:
    from sparkql.cli.cmd_sql import _known_relations

    return _known_relations(con)


def resolve_circuit_id(con, prefix: str) -> str:
    """A full circuit id from a unique prefix (like a git hash)."""
    rows = [r[0] for r in con.execute(
        "SELECT circuit_id FROM circuits WHERE starts_with(circuit_id, ?) ORDER BY circuit_id", [prefix]).fetchall()]
    if len(rows) == 1:
        return rows[0]
    if not rows:
        some = [r[0][:12] for r in con.execute("SELECT circuit_id FROM circuits LIMIT 8").fetchall()]
        raise SparkError(f"no circuit with id {prefix}",
                         hint=("circuits: " + ", ".join(some)) if some else "the store has no circuits yet")
    raise SparkError(f"circuit id {prefix} is ambiguous ({len(rows)} circuits start with it)",
                     hint="give more characters: " + ", ".join(r[:16] for r in rows[:5]))


def export_relation(con, name: str, fmt: str, out: str) -> int:
    rels = _relations(con)
    if name not in rels:
        raise SparkError(f"no table or view named {name}", hint=known_names_hint(name, rels, "tables and views"))
    import duckdb

    n = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
    opts = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    with writing(out, duckdb.IOException):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM \"{name}\") TO '{_sql_str(out)}' ({opts})")
    return n


def _sql_str(s: str) -> str:
    return str(s).replace("'", "''")


@click.command("export")
@click.argument("target")
@click.argument("circuit_id", required=False)
@db_option
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "json", "dot", "svg"]), default=None,
              help="parquet|csv for tables and views; json|dot|svg for a circuit (default: from --out's suffix).")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Output file.")
def export(target: str, circuit_id: str | None, db: str, fmt: str | None, out: str) -> None:
    """Export TARGET (a table or view) to Parquet/CSV, or `circuit CIRCUIT_ID` to JSON/DOT/SVG."""
    from sparkql.store.connection import open_db

    suffix = Path(out).suffix.lstrip(".").lower()
    fmt = fmt or (suffix if suffix in ("parquet", "csv", "json", "dot", "svg") else None)
    if target == "circuit":
        if not circuit_id:
            raise SparkError("`sparkql export circuit` needs a CIRCUIT_ID", hint="sparkql sql \"SELECT circuit_id, model_id, dataset FROM circuits\"")
        fmt = fmt or "json"
        if fmt not in ("json", "dot", "svg"):
            raise SparkError(f"a circuit exports to json, dot or svg, not {fmt}")
        try:
            from sparkql.runtime.eap.export import export_circuit
        except ImportError:
            raise SparkError("circuit export is not available in this build",
                             hint="export the edges instead: sparkql export edges --format parquet --out edges.parquet") from None
        con = open_db(db)
        try:
            full = resolve_circuit_id(con, circuit_id)
            with writing(out):
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                export_circuit(con, full, fmt, out)
        finally:
            con.close()
        console.print(f"wrote circuit {full[:12]} ({fmt}) to {out}")
        return
    if circuit_id:
        raise SparkError(f"unexpected argument {circuit_id}", hint="only `sparkql export circuit ID` takes a second argument")
    fmt = fmt or "parquet"
    if fmt not in ("parquet", "csv"):
        raise SparkError(f"tables and views export to parquet or csv, not {fmt}")
    con = open_db(db)  # locked, read-only; the COPY below is ours, to --out
    try:
        n = export_relation(con, target, fmt, out)
    finally:
        con.close()
    console.print(f"wrote {n} row(s) of {target} to {out}")
