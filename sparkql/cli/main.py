"""The ``sparkql`` console script.

Commands live one per module in this package and are imported only when
invoked, so ``sparkql check`` never pays for torch, transformers or textual.
Every command reports user mistakes as a SparkError (exit code 2, no
traceback; ``--debug`` shows one).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from sparkql import __version__

# name -> (module, attribute, one-line help shown by `sparkql --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "check": ("sparkql.cli.cmd_check", "check", "Compile a study and report errors."),
    "plan": ("sparkql.cli.cmd_plan", "plan", "Print the compiled plan (DAG of steps)."),
    "fmt": ("sparkql.cli.cmd_fmt", "fmt", "Format a study canonically."),
    "run": ("sparkql.cli.cmd_run", "run", "Execute a study into the results store."),
    "sql": ("sparkql.cli.cmd_sql", "sql", "Query the results store with SQL."),
    "export": ("sparkql.cli.cmd_export", "export", "Export tables, views or circuits."),
    "figures": ("sparkql.cli.cmd_figures", "figures", "Draw the paper's figures from a store."),
    "regrade": ("sparkql.cli.cmd_regrade", "regrade", "Regrade stored completions (no generation)."),
    "grade": ("sparkql.cli.cmd_grade", "grade", "Grade a JSONL/CSV/Parquet file of completions."),
    "diff": ("sparkql.cli.cmd_diff", "diff", "Problems newly solved / missed between two variants."),
    "zoo": ("sparkql.cli.cmd_zoo", "zoo", "Build the toy model organism."),
    "tui": ("sparkql.cli.cmd_tui", "tui", "Browse a results store in the terminal."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, short = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError:
            # A command whose module is not there yet: say so plainly instead of failing `--help`.
            @click.command(name=name, help=short + " (not available in this build)")
            def unavailable() -> None:
                raise click.ClickException(f"`sparkql {name}` is not available in this build")

            return unavailable

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so `--help` imports nothing.
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, _, h) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sparkql")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """sparkql: mechanistic studies of reasoning models, declared in .spark files."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    # pydantic looks up plugins through importlib.metadata entry points on first use, which
    # costs tens of milliseconds of every `sparkql check`; the CLI uses no pydantic plugins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from sparkql.cli.common import run_cli

    sys.exit(run_cli(cli, argv))


if __name__ == "__main__":  # pragma: no cover
    main()
