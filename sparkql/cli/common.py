"""What every command shares: error handling, the consoles, the --db option.

The rich consoles are created on first use: `sparkql check` on a clean study
never pays for importing rich.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import click

from sparkql.errors import SparkError

EXIT_USER_ERROR = 2


class _LazyConsole:
    """A rich Console built on first attribute access."""

    def __init__(self, **kwargs):
        self._kwargs = kwargs
        self._console = None

    def __getattr__(self, name):
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False, **self._kwargs)
        return getattr(self._console, name)


console = _LazyConsole()
err_console = _LazyConsole(stderr=True)

db_option = click.option(
    "--db",
    default=lambda: os.environ.get("SPARKQL_DB", "sparkql.duckdb"),
    show_default="sparkql.duckdb (or $SPARKQL_DB)",
    help="The DuckDB results store.",
)


@contextlib.contextmanager
def writing(path: str | os.PathLike, *also: type[BaseException]) -> Iterator[None]:
    """Writing an output file (--out, fmt -w): a failure (read-only file system, no permission, a
    full disk, a parent that is a file) is a SparkError naming the file and the reason. ``also``:
    more exception types that mean the same (DuckDB's IOException for COPY ... TO)."""
    try:
        yield
    except (OSError, *also) as e:
        reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
        raise SparkError(f"cannot write {os.fspath(path)}: {reason}",
                         hint="choose a place you can write (a writable directory with free space)") from None


def require_tables(con, db: str, *tables: str) -> None:
    """A command that reads sparkql's tables, on a DuckDB file that lacks them: say so (instead of
    DuckDB's "Table with name evals does not exist")."""
    have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    missing = [t for t in tables if t not in have]
    if missing:
        raise SparkError(f"{db} is not a sparkql results store (it has no {missing[0]} table)", file=db,
                         hint="point --db at a store written by `sparkql run`")


def print_error(err: SparkError) -> None:
    click.echo(err.render(), err=True)


def print_warnings(plan) -> None:
    """The compiler's warnings (already rendered: location, line, caret, hint), on stderr."""
    for w in plan.warnings:
        click.echo(w, err=True)


def run_cli(group: click.Group, argv: list[str] | None) -> int:
    """Run the click group; SparkError -> rendered message and exit code 2, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SPARKQL_DEBUG") == "1"
    try:
        group.main(args=args, prog_name="sparkql", standalone_mode=False)
        return 0
    except SparkError as e:
        if debug:
            raise
        print_error(e)
        return EXIT_USER_ERROR
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return EXIT_USER_ERROR
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:  # `sparkql sql ... | head`: the reader has what it wanted
        _stdout_to_devnull()  # or the interpreter's last flush fails again, noisily
        return 0


def generation_backends(plan) -> list:
    """What each distinct (backend, device) of the plan's generate steps picks on this machine
    (the run decides with the same function, step by step)."""
    from sparkql.runtime.generation.backend import choose_backend

    asked = dict.fromkeys((s.exec.backend, s.exec.device) for s in plan.steps if s.kind == "generate")
    return list(dict.fromkeys(choose_backend(b, d) for b, d in asked))


def _stdout_to_devnull() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stdout (tests)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


class PipeSafeStdout:
    """sys.stdout for `sparkql run`: when the reader of a pipe goes away (`sparkql run ... | head -1`)
    the run must not die of it halfway (that is a run killed for its progress lines). Output is
    dropped from then on, the computation goes on into the store, and stderr says so once."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.broken = True
        _stdout_to_devnull()
        click.echo("sparkql: the reader of stdout went away (broken pipe); the run goes on, without printing, "
                   "and saves everything to the store", err=True)

    def __getattr__(self, name):  # isatty, fileno, encoding, ... as the real stream has them
        return getattr(self._stream, name)

