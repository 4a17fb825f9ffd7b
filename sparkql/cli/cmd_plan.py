"""`sparkql plan FILE`: the compiled DAG with costs and what the store already has."""

from __future__ import annotations

import json

import click

from sparkql.cli.common import console, db_option, generation_backends, print_warnings


def _cached_keys(db: str) -> set[str] | None:
    """Keys already complete in the store; None when the store cannot be read (no store yet)."""
    try:
        from sparkql.store.api import completed_keys
    except ImportError:
        return None
    return completed_keys(db)


def _fmt_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


@click.command("plan")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (Plan.model_dump_json).")
@db_option
def plan(file: str, as_json: bool, db: str) -> None:
    """Print the steps FILE compiles to: kind, inputs, cost, cached."""
    from rich.table import Table
    from rich.text import Text

    from sparkql.plan.compile import compile_file

    p = compile_file(file)
    if not as_json:  # the JSON carries them in "warnings"
        print_warnings(p)
    cached = _cached_keys(db)
    choices = generation_backends(p)
    if as_json:
        data = json.loads(p.model_dump_json())
        data["generation"] = [{"backend": c.backend, "reason": c.reason, "error": c.error} for c in choices]
        for s in data["steps"]:
            s["cached"] = None if cached is None else s["key"] in cached
        click.echo(json.dumps(data, indent=2))
        return
    index = {s.key: i for i, s in enumerate(p.steps, 1)}
    backends = "; ".join(c.describe() for c in choices) or "none"
    table = Table(title=Text(f"{file}: {len(p.steps)} steps, generation backend {backends}"), title_justify="left",
                  box=None, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("step", ratio=1)
    table.add_column("inputs", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("cached", no_wrap=True)
    totals = {"fb": 0, "f": 0, "t": 0, "todo": 0}
    for i, s in enumerate(p.steps, 1):
        done = cached is not None and s.key in cached
        if not done:
            totals["fb"] += s.cost.forward_backward
            totals["f"] += s.cost.forward
            totals["t"] += s.cost.tokens
            totals["todo"] += 1
        cost = []
        if s.cost.forward_backward:
            cost.append(f"{_fmt_count(s.cost.forward_backward)} f+b")
        if s.cost.tokens:
            cost.append(f"{_fmt_count(s.cost.tokens)} tok")
        table.add_row(
            str(i), s.kind, Text(s.label), ",".join(str(index[d]) for d in s.deps), " ".join(cost),
            "-" if cached is None else ("yes" if done else "no"),
        )
    console.print(table)
    state = "no store yet" if cached is None else f"{len(p.steps) - totals['todo']} cached"
    console.print(
        f"to run: {totals['todo']} steps ({state}); {_fmt_count(totals['fb'])} forward+backward passes, "
        f"{_fmt_count(totals['f'])} forward passes, up to {_fmt_count(totals['t'])} tokens to generate"
    )
