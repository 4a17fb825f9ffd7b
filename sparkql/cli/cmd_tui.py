"""`sparkql tui [DB]`: browse a results store in the terminal."""

from __future__ import annotations

import click

from sparkql.cli.common import db_option


@click.command("tui")
@click.argument("database", required=False, type=click.Path(dir_okay=False))
@db_option
@click.option("--poll", default=2.0, show_default=True, type=float, help="Seconds between checks for new results (0: never).")
@click.option(
    "--tab",
    type=click.Choice(["runs", "heads", "cohorts", "evals", "sql"]),
    default="runs",
    show_default=True,
    help="The tab to open on (heads: the latest checkpoint's head map).",
)
def tui(database: str | None, db: str, poll: float, tab: str) -> None:
    """Browse runs, circuits, head cohorts, evals and samples of a results store.

    DATABASE defaults to --db. The store is opened read-only and briefly, so
    a `sparkql run` writing to the same file is never blocked; new results
    appear on the next poll.
    """
    # Textual is imported here so that other commands never pay for it.
    from sparkql.tui.app import run

    run(database or db, poll_seconds=poll, tab=tab)
