"""`sparkql fmt FILE`: canonical formatting (`--check` for CI, `--write` in place)."""

from __future__ import annotations

from pathlib import Path

import click

from sparkql.cli.common import console, err_console


@click.command("fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if a file is not formatted; change nothing.")
@click.option("--write", "-w", is_flag=True, help="Rewrite the files in place.")
def fmt(files: tuple[str, ...], check_only: bool, write: bool) -> None:
    """Print FILES in canonical form (one statement a line, comments kept)."""
    from sparkql.lang.fmt import format_study
    from sparkql.plan.compile import read_study

    unformatted = []
    for f in files:
        text = read_study(f)
        out = format_study(text, f)
        if check_only:
            if out != text:
                unformatted.append(f)
                err_console.print(f"would reformat {f}")
        elif write:
            if out != text:
                Path(f).write_text(out, encoding="utf-8")
                err_console.print(f"reformatted {f}")
        else:
            click.echo(out, nl=False)
    if check_only:
        if unformatted:
            raise SystemExit(1)
        console.print(f"{len(files)} file(s) already formatted")
