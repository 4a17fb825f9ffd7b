"""``sparkql grade FILE``: grade completions that came from anywhere (no store, no model).

Reads JSONL, JSON, CSV or Parquet rows with ``completion`` and ``gold`` (optional
``finish_reason``, ``think``, ``id``), writes JSONL with the input fields plus ``extracted``,
``status`` and ``correct``, and prints a summary with the status counts (to stderr when the
JSONL goes to stdout, so the output stays pipeable).
"""

from __future__ import annotations

import sys

import click

from sparkql.cli.common import console, err_console


@click.command("grade")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--grader", type=click.Choice(["math", "gsm8k", "gpqa", "triviaqa", "exact"]), default="math",
              show_default=True, help="How answers are extracted and compared.")
@click.option("--extract", "rule", type=click.Choice(["strict", "lenient"]), default="strict", show_default=True,
              help="Math answers: strict (last \\boxed{}) or lenient (Math-Verify's order).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the graded JSONL here (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv", "parquet"]), default=None,
              help="Input format (default: from the extension).")
@click.option("--think/--no-think", default=True, show_default=True,
              help="Whether completions were to open with a thinking block (a row's `think` field wins).")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds math-verify may spend on one answer.")
@click.option("--workers", default=2, show_default=True, help="math-verify worker processes.")
def grade(file: str, grader: str, rule: str, out: str | None, fmt: str | None, think: bool, timeout: float,
          workers: int) -> None:
    """Grade a file of completions; JSONL with extracted/status/correct out."""
    from sparkql.runtime.grading.files import grade_rows

    result = grade_rows(file, grader=grader, extract=rule, think=think, timeout=timeout, workers=workers, fmt=fmt)
    if out is None:
        for line in result.jsonl_lines():
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        err_console.print(result.summary(), markup=False)
    else:
        result.write_jsonl(out)
        console.print(result.summary() + f"\nwrote {out}", markup=False)
