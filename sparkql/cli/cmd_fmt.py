"""`sparkql fmt FILE`: canonical formatting (`--check` for CI, `--write` in place)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import click

from sparkql.cli.common import console, err_console, writing
from sparkql.errors import SparkError


def _rewrite(p: Path, text: str) -> None:
    """Replace the study with its formatted text: written beside it and renamed over it, so a full
    disk or a kill midway leaves the original whole. A file without write permission is refused
    (a rename would replace it regardless)."""
    if not os.access(p, os.W_OK):
        raise SparkError(f"cannot rewrite {p}: it is read-only",
                         hint=f"make it writable, or print the formatted text instead: sparkql fmt {p}")
    tmp = p.with_name(f".{p.name}.{os.getpid()}.fmt")
    try:
        with writing(p):
            tmp.write_text(text, encoding="utf-8")
            shutil.copymode(p, tmp)
            os.replace(tmp, p)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


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
                _rewrite(Path(f), out)
                err_console.print(f"reformatted {f}")
        else:
            click.echo(out, nl=False)
    if check_only:
        if unformatted:
            raise SystemExit(1)
        console.print(f"{len(files)} file(s) already formatted")
