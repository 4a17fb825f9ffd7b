"""``sparkql zoo``: build (and locate) the toy model organism (docs/toy.md)."""

from __future__ import annotations

import click

from sparkql.cli.common import console


@click.group(name="zoo")
def zoo() -> None:
    """The toy model organism: a tiny Qwen2 trained here, post-trained with SFT and GRPO."""


@zoo.command(name="build")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Build into this directory (default: the cache, see `sparkql zoo path`).")
@click.option("--preset", type=click.Choice(["full", "tiny"]), default=None,
              help="full (the demo) or tiny (tests); default $SPARKQL_ZOO_PRESET or full.")
@click.option("--force", is_flag=True, help="Rebuild even when a zoo of this recipe exists.")
def build(out: str | None, preset: str | None, force: bool) -> None:
    """Train the tokenizer, base, SFT and GRPO series; print timings and accuracies."""
    from sparkql.runtime.zoo.build import build_zoo

    manifest = build_zoo(out, preset=preset, force=force, log=lambda m: console.print(m, markup=False))
    _summary(manifest)


@zoo.command(name="path")
@click.option("--preset", type=click.Choice(["full", "tiny"]), default=None)
def path(preset: str | None) -> None:
    """Print the cache directory of the zoo (whether built or not)."""
    from sparkql import zoo as layout

    root = layout.cache_root(preset)
    console.print(str(root), markup=False)
    if not layout.is_built(preset):
        console.print("(not built yet: `sparkql zoo build`)", style="dim")


def _summary(manifest: dict) -> None:
    from rich.table import Table

    t = Table(title=f"zoo ({manifest['preset']}, recipe {manifest['recipe_hash'][:12]})")
    t.add_column("stage")
    t.add_column("wall s", justify="right")
    t.add_column("cpu s", justify="right")
    for k, v in manifest["timings_s"].items():
        t.add_row(k, f"{v:.1f}", f"{manifest['cpu_s'].get(k, 0):.1f}")
    t.add_row("total", f"{sum(manifest['timings_s'].values()):.1f}", f"{sum(manifest['cpu_s'].values()):.1f}")
    console.print(t)
    a = Table(title="greedy accuracy (traces: share of answers reasoned in <think>)")
    a.add_column("model")
    for name in ("easy", "hard"):
        a.add_column(name, justify="right")
    for model, sets in manifest["accuracy"].items():
        a.add_row(model, *(f"{sets[n]['accuracy']:.0%} ({sets[n]['trace_share']:.0%})" for n in ("easy", "hard")))
    console.print(a)
    rc = manifest.get("reward_curve") or {}
    if rc:
        console.print("GRPO reward by quarter of training: " + " -> ".join(f"{x:.2f}" for x in rc["by_quarter"]))
