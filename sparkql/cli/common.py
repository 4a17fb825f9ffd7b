"""What every command shares: error handling, the console, the --db option."""

from __future__ import annotations

import os
import sys

import click
from rich.console import Console

from sparkql.errors import SparkError

EXIT_USER_ERROR = 2

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

db_option = click.option(
    "--db",
    default=lambda: os.environ.get("SPARKQL_DB", "sparkql.duckdb"),
    show_default="sparkql.duckdb (or $SPARKQL_DB)",
    help="The DuckDB results store.",
)


def print_error(err: SparkError) -> None:
    err_console.print(err.render(), markup=False, highlight=False)


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
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except BrokenPipeError:  # pragma: no cover - `sparkql sql ... | head`
        return 0
