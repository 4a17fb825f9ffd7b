"""`sparkql plan FILE`: the compiled DAG with costs and what the store already has."""

from __future__ import annotations

import json

import click

from sparkql.cli.common import console, db_option


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

    from sparkql.plan.compile import compile_file

    p = compile_file(file)
    cached = _cached_keys(db)
    if as_json:
        data = json.loads(p.model_dump_json())
        for s in data["steps"]:
            s["cached"] = None if cached is None else s["key"] in cached
        click.echo(json.dumps(data, indent=2))
        return
    index = {s.key: i for i, s in enumerate(p.steps, 1)}
    table = Table(title=f"{file}: {len(p.steps)} steps, generation backend {p.backend}", title_justify="left")
    for col in ("#", "kind", "step", "inputs", "fwd+bwd", "fwd", "tokens", "cached", "key"):
        table.add_column(col, justify="right" if col in ("#", "fwd+bwd", "fwd", "tokens") else "left")
    totals = {"fb": 0, "f": 0, "t": 0, "todo": 0}
    for i, s in enumerate(p.steps, 1):
        done = cached is not None and s.key in cached
        if not done:
            totals["fb"] += s.cost.forward_backward
            totals["f"] += s.cost.forward
            totals["t"] += s.cost.tokens
            totals["todo"] += 1
        table.add_row(
            str(i), s.kind, s.label, ",".join(str(index[d]) for d in s.deps),
            _fmt_count(s.cost.forward_backward) if s.cost.forward_backward else "",
            _fmt_count(s.cost.forward) if s.cost.forward else "",
            _fmt_count(s.cost.tokens) if s.cost.tokens else "",
            "-" if cached is None else ("yes" if done else "no"), s.key[:10],
        )
    console.print(table)
    state = "no store yet" if cached is None else f"{len(p.steps) - totals['todo']} cached"
    console.print(
        f"to run: {totals['todo']} steps ({state}); {_fmt_count(totals['fb'])} forward+backward passes, "
        f"{_fmt_count(totals['f'])} forward passes, up to {_fmt_count(totals['t'])} tokens to generate"
    )
