"""`sparkql check FILE`: compile a study and report errors (exit 2 on a mistake)."""

from __future__ import annotations

import json

import click

from sparkql.cli.common import generation_backends, print_error, print_warnings
from sparkql.errors import SparkError, SparkErrors


def error_json(e: SparkError) -> dict:
    """One error as JSON; a group of several (SparkErrors) is its first error plus ``errors``, all of them."""
    if isinstance(e, SparkErrors):
        return {**error_json(e.errors[0]), "rendered": e.render(), "errors": [error_json(x) for x in e.errors]}
    span = e.span.model_dump(include={"line", "column", "end_line", "end_column"}) if e.span else None
    return {"message": e.message, "file": e.file, "span": span, "hint": e.hint, "rendered": e.render()}


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(files: tuple[str, ...], as_json: bool) -> None:
    """Compile FILES and report errors (file:line:col, caret, hint): every independent error of a file."""
    from sparkql.plan.compile import compile_file

    results, failed = [], False
    for f in files:
        try:
            plan = compile_file(f)
        except SparkError as e:
            failed = True
            if as_json:
                results.append({"file": f, "ok": False, "error": error_json(e)})
            else:
                print_error(e)
            continue
        kinds: dict[str, int] = {}
        for s in plan.steps:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
        if as_json:
            choices = generation_backends(plan)
            results.append({"file": f, "ok": True, "steps": len(plan.steps), "kinds": kinds,
                            "backend": ",".join(c.backend for c in choices) or plan.backend,
                            "backend_reason": "; ".join(c.reason for c in choices) or None,
                            **({"warnings": plan.warnings} if plan.warnings else {})})
        else:
            print_warnings(plan)
            summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
            click.echo(f"ok {f}: {len(plan.steps)} steps ({summary})")
    if as_json:
        click.echo(json.dumps(results if len(results) > 1 else results[0], indent=2))
    if failed:
        raise SystemExit(2)
