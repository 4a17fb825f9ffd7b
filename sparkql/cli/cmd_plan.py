"""`sparkql plan FILE`: the compiled DAG with costs and what the store already has."""

from __future__ import annotations

import json
import os

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
@click.option("--cluster", default=lambda: os.environ.get("SPARKQL_CLUSTER") or None, show_default="$SPARKQL_CLUSTER",
              help="Also show which steps can run side by side on a cluster (waves of the DAG).")
@db_option
def plan(file: str, as_json: bool, cluster: str | None, db: str) -> None:
    """Print the steps FILE compiles to: kind, inputs, cost, cached."""
    from rich.table import Table
    from rich.text import Text

    from sparkql.plan.compile import compile_file

    p = compile_file(file)
    if not as_json:  # the JSON carries them in "warnings"
        print_warnings(p)
    cached = _cached_keys(db)
    choices = generation_backends(p)
    waves = None
    if cluster:
        from sparkql.plan.waves import plan_waves
        from sparkql.runtime.execution.cluster import check_address  # light: Ray is imported only to run

        cluster = check_address(cluster)
        waves = plan_waves(p, cached or set())
    if as_json:
        data = json.loads(p.model_dump_json())
        data["generation"] = [{"backend": c.backend, "reason": c.reason, "error": c.error} for c in choices]
        for s in data["steps"]:
            s["cached"] = None if cached is None else s["key"] in cached
            if waves is not None:
                s["wave"] = waves.wave_of.get(s["key"])
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
    table.add_column("cost", justify="right")
    table.add_column("cached", no_wrap=True)
    if waves is not None:
        table.add_column("wave", justify="right", no_wrap=True)
    from sparkql.plan.sizing import fmt_bytes
    from sparkql.runtime.eap.estimate import fmt_flops, plan_estimates

    estimates = plan_estimates(p)
    totals = {"fb": 0, "f": 0, "t": 0, "todo": 0, "flops": 0.0}
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
        est = estimates.get(s.key)
        if est is not None:
            flops = est.flops if s.kind == "edge_scores" else est.faith_flops
            if not done:
                totals["flops"] += flops
            if s.kind == "circuit":
                cost.append(f"{_fmt_count(s.cost.forward)} f")
            cost.append(fmt_flops(flops))
            if s.kind == "edge_scores" and est.peak is not None:
                cost.append(f"{fmt_bytes(est.peak).replace(' ', '')}/{est.chunks}")
            elif s.kind == "edge_scores":
                cost.append("GPU: sized at run time")
        row = [str(i), s.kind, Text(s.label), ",".join(str(index[d]) for d in s.deps), " ".join(cost),
               "-" if cached is None else ("yes" if done else "no")]
        if waves is not None:
            row.append(str(waves.wave_of.get(s.key, "")))
        table.add_row(*row)
    console.print(table)
    state = "no store yet" if cached is None else f"{len(p.steps) - totals['todo']} cached"
    console.print(
        f"to run: {totals['todo']} steps ({state}); {_fmt_count(totals['fb'])} forward+backward passes, "
        f"{_fmt_count(totals['f'])} forward passes, up to {_fmt_count(totals['t'])} tokens to generate"
        + (f"; circuits {fmt_flops(totals['flops'])}" if estimates else "")
    )
    if estimates:
        shown = [(s, estimates[s.key]) for s in p.steps if s.kind == "edge_scores" and s.key in estimates]
        if shown:
            s0, e0 = shown[0]
            how = "counted with the model's tokenizer" if e0.exact_tokens else "estimated at 4 characters a token"
            console.print(Text(
                f"circuits: prompt tokens {how}; e.g. {s0.label}: {e0.examples} examples, {e0.tokens} tokens "
                f"(longest {e0.longest}); FLOPs of EAP-IG (m forward+backward + a clean and a corrupted forward "
                f"per example) and of faithfulness (3 forwards per example); PEAK/CHUNKS: the predicted peak above "
                f"the weights, within the memory budget"
                + (f" ({fmt_bytes(e0.budget)})" if e0.budget else "")))
    if waves is not None:
        _print_waves(waves, cluster)


def _print_waves(waves, address: str) -> None:
    """Which steps can run side by side, wave by wave, and the chain no number of workers shortens."""
    from collections import Counter

    from rich.text import Text

    from sparkql.plan.waves import step_weight

    if not waves.waves:
        console.print(f"on a cluster ({address}): nothing to run")
        return
    console.print(Text(f"side by side on a cluster ({address}): {len(waves.waves)} waves, at most {waves.widest} "
                       "steps at once (a step starts as soon as its own inputs are done; one worker per GPU, "
                       "else per CPU, decided when the run starts)"))
    for i, wave in enumerate(waves.waves, 1):
        kinds = Counter(s.kind for s in wave)
        fb = sum(s.cost.forward_backward for s in wave)
        tok = sum(s.cost.tokens for s in wave)
        cost = "".join([f"  {_fmt_count(fb)} f+b" if fb else "", f"  {_fmt_count(tok)} tok" if tok else ""])
        console.print(Text(f"  wave {i}: {len(wave)} step(s): "
                           + ", ".join(f"{k} x{n}" for k, n in kinds.items()) + cost))
    total = sum(step_weight(s) for w in waves.waves for s in w)
    path = waves.critical_path
    share = sum(step_weight(s) for s in path) / total if total else 1.0
    console.print(Text(f"critical path: {len(path)} steps, {share:.0%} of the estimated work "
                       f"({path[0].label} -> ... -> {path[-1].label}): however many workers, at most "
                       f"{1 / share:.1f}x faster than one"))
