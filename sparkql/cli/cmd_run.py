"""``sparkql run FILE``: compile a study and execute it into the results store."""

from __future__ import annotations

import os
import sys

import click

from sparkql.cli.common import PipeSafeStdout, console, db_option, print_warnings
from sparkql.errors import SparkError


def _print_plan(summary) -> None:
    from rich.table import Table

    t = Table(title=f"dry run: {summary.study} -> {summary.db}", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("kind")
    t.add_column("step")
    t.add_column("key")
    t.add_column("status")
    style = {"cached": "dim", "pending": "bold", "unavailable": "red", "blocked": "yellow"}
    for i, s in enumerate(summary.steps, 1):
        t.add_row(str(i), s.kind, s.label, s.key[:12], f"[{style.get(s.status, '')}]{s.status}[/]")
    console.print(t)
    n_run = summary.count("pending")
    console.print(f"{n_run} step(s) would run, {summary.n_cached} cached"
                  + (f", {summary.count('unavailable') + summary.count('blocked')} cannot run in this build"
                     if summary.count('unavailable') + summary.count('blocked') else ""))


def _print_summary(summary) -> None:
    from rich.table import Table

    by_kind: dict[str, dict[str, int]] = {}
    for s in summary.steps:
        by_kind.setdefault(s.kind, {}).setdefault(s.status, 0)
        by_kind[s.kind][s.status] += 1
    t = Table(title=f"run {summary.run_id} {summary.status} in {summary.seconds:.1f} s", title_justify="left")
    t.add_column("kind")
    for col in ("done", "cached", "not run"):
        t.add_column(col, justify="right")
    for kind, c in by_kind.items():
        other = sum(v for k, v in c.items() if k not in ("done", "cached"))
        t.add_row(kind, str(c.get("done", 0)), str(c.get("cached", 0)), str(other) if other else "")
    console.print(t)
    skipped = [s for s in summary.steps if s.status in ("unavailable", "blocked")]
    if skipped:
        kinds = sorted({s.kind for s in skipped if s.status == "unavailable"})
        console.print(f"not run: {len(skipped)} step(s) (no handler in this build for: {', '.join(kinds)})")
    console.print(f"results in {summary.db}: try `sparkql sql \"SELECT * FROM steps\" --db {summary.db}`",
                  highlight=False, markup=False)


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
@click.option("--dry-run", is_flag=True, help="Show which steps would run (and which are cached); change nothing.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None, help="Override the study's device.")
@click.option("--backend", type=click.Choice(["transformers", "vllm", "auto"]), default=None, help="Generation backend.")
@click.option("--memory", default=None, help="Memory budget for fused IG batching, e.g. 8GiB.")
@click.option("--vllm-memory", default=None,
              help="Memory of a vLLM engine: a fraction of the device's memory (0.8) or a KV cache size (2GiB).")
@click.option("--batch-size", type=int, default=None, help="Generation batch size.")
@click.option("--partial", is_flag=True, help="Run every step this build can run; list the rest instead of refusing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display (the summary is still printed).")
@click.option("--log", "log_file", type=click.Path(dir_okay=False), default=None,
              help="Also append the per-step log (with timestamps) to this file.")
@click.option("--cluster", default=lambda: os.environ.get("SPARKQL_CLUSTER") or None,
              show_default="$SPARKQL_CLUSTER",
              help="Run steps side by side on a Ray cluster: local, auto, ray://HOST:PORT or HOST:PORT.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Cluster: how many workers (default: as many as the resources allow).")
@click.option("--worker-cpus", type=click.FloatRange(min=0), default=None, help="Cluster: CPUs per worker (default 1).")
@click.option("--worker-gpus", type=click.FloatRange(min=0), default=None,
              help="Cluster: GPUs per worker (default 1 where the cluster has GPUs).")
@click.option("--worker-resources", default=None, metavar="NAME=N,...",
              help="Cluster: custom Ray resources per worker, e.g. a100=1.")
@click.option("--retries", type=click.IntRange(min=0), default=None,
              help="Cluster: reruns of a step whose worker died (default 2).")
@click.option("--tensor-parallel", type=click.IntRange(min=1), default=None,
              help="Cluster: vLLM tensor_parallel_size; each worker holds that many GPUs.")
@click.pass_context
def run(ctx: click.Context, file: str, db: str, dry_run: bool, device, backend, memory, vllm_memory, batch_size,
        partial: bool, quiet: bool, log_file: str | None, cluster, workers, worker_cpus, worker_gpus, worker_resources,
        retries, tensor_parallel) -> None:
    """Execute a study: every step not already in the store, in dependency order.

    A run killed at any point resumes where it stopped when rerun. One run per
    store at a time; `sparkql sql` and the TUI can read the store meanwhile.
    With --cluster, independent steps run at the same time on Ray workers; this
    process still writes the store, with the same guarantees.
    """
    real_stdout = sys.stdout
    sys.stdout = PipeSafeStdout(real_stdout)
    try:
        _run(ctx, file, db, dry_run, device, backend, memory, vllm_memory, batch_size, partial, quiet, log_file,
             cluster_options(cluster, workers=workers, worker_cpus=worker_cpus, worker_gpus=worker_gpus,
                             worker_resources=worker_resources, retries=retries, tensor_parallel=tensor_parallel))
    finally:
        sys.stdout = real_stdout


def _run(ctx, file, db, dry_run, device, backend, memory, vllm_memory, batch_size, partial, quiet, log_file,
         cluster_opts) -> None:
    from sparkql.plan.compile import compile_file, read_study
    from sparkql.runtime.execution.executor import execute

    from sparkql.lang.options import parse_share

    plan = compile_file(file)
    print_warnings(plan)
    overrides = {"device": device, "backend": backend, "memory": memory, "batch_size": batch_size,
                 "vllm_memory": parse_share(vllm_memory) if vllm_memory is not None else None}
    debug = bool((ctx.obj or {}).get("debug"))
    # Ctrl-C: the executor stops cleanly and re-raises; the CLI shell prints "interrupted", exit 130.
    from rich.console import Console

    # a real Console (not the lazy proxy of cli.common): rich's live display enters it as a context
    run_console = Console(highlight=False)
    summary = execute(plan, db, study_text=read_study(file), dry_run=dry_run, exec_overrides=overrides,
                      partial=partial, console=run_console, live=False if quiet else None, debug=debug,
                      log_file=log_file, cluster=cluster_opts)
    if dry_run:
        _print_plan(summary)
    else:
        _print_summary(summary)
        _print_findings(plan, db, run_console)


def cluster_options(address, **given):
    """ClusterOptions from the command line (None without --cluster); cluster flags need --cluster."""
    set_flags = [k for k, v in given.items() if v is not None]
    if not address:
        if set_flags:
            flag = "--" + set_flags[0].replace("_", "-")
            raise SparkError(f"{flag} needs --cluster", hint="add --cluster local (or auto, or an address)")
        return None
    from sparkql.runtime.execution.cluster import ClusterOptions, check_address

    opts = ClusterOptions(address=check_address(address))
    for k in ("workers", "worker_cpus", "worker_gpus", "retries", "tensor_parallel"):
        if given.get(k) is not None:
            setattr(opts, k, given[k])
    if given.get("worker_resources"):
        opts.resources = _parse_resources(given["worker_resources"])
    return opts


def _parse_resources(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, amount = item.partition("=")
        try:
            out[name.strip()] = float(amount) if sep else 1.0
        except ValueError:
            raise SparkError(f"--worker-resources: {item!r} is not NAME=NUMBER", hint="e.g. --worker-resources a100=1")
    return out


def _print_findings(plan, db: str, console) -> None:
    """Emergent heads per series and intact-vs-variant scores of this study, from the store."""
    from sparkql.store.connection import open_db
    from sparkql.store.summary import render, study_summary

    if not any(s.kind in ("diff", "generate", "fold_heads") for s in plan.steps):
        return
    con = open_db(db)  # the run has just migrated the store
    try:
        render(study_summary(con, plan), console)
    finally:
        con.close()
