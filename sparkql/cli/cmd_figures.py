"""``sparkql figures --out DIR``: the paper's figures from a results store (PNG and SVG)."""

from __future__ import annotations

from pathlib import Path

import click

from sparkql.cli.common import console, db_option, require_tables, writing


@click.command("figures")
@db_option
@click.option("--out", "out", type=click.Path(file_okay=False), default="figures", show_default=True,
              help="Directory for the figures.")
@click.option("--only", multiple=True, type=click.Choice(["cohort", "frequency", "emergent_map", "passk", "scores"]),
              help="Draw only these figures (repeatable).")
@click.option("--format", "formats", multiple=True, type=click.Choice(["png", "svg", "pdf"]),
              help="Output formats (repeatable; default png and svg).")
def figures(db: str, out: str, only: tuple[str, ...], formats: tuple[str, ...]) -> None:
    """Cohort plot (fig. 2 A-B), activation-frequency heatmap (2 C), emergent-head map (10),
    pass@k / success@k curves (5) and the intact-vs-variant score table."""
    from sparkql.figures import draw_all
    from sparkql.store.connection import open_db, require_current_schema
    from sparkql.store.schema import TABLES

    con = open_db(db)
    try:
        require_current_schema(con, db)
        require_tables(con, db, *TABLES)
        with writing(out):  # also when there is nothing to draw: an unwritable --out is said now
            Path(out).mkdir(parents=True, exist_ok=True)
            results = draw_all(con, out, list(only) or None, tuple(formats) or ("png", "svg"))
    finally:
        con.close()
    for r in results:
        if r.skipped:
            console.print(f"- {r.name}: skipped, {r.skipped}", highlight=False, markup=False, soft_wrap=True)
        else:
            console.print(f"+ {r.name}: " + ", ".join(str(p) for p in r.files), highlight=False, markup=False, soft_wrap=True)
