"""``sparkql.run``: run a study (a file or study text) from Python.

This is the one runtime module that compiles text into a plan; the import of
the compiler happens inside :func:`run`, so the executor and the handlers
never import the language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from sparkql.runtime.execution.executor import RunSummary, execute


def _looks_like_path(s: str) -> bool:
    return "\n" not in s and (s.endswith(".spark") or Path(s).is_file())


def run(
    path_or_text: str | Path,
    db: str | Path = "sparkql.duckdb",
    *,
    dry_run: bool = False,
    device: str | None = None,
    backend: str | None = None,
    memory: str | None = None,
    batch_size: int | None = None,
    partial: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> RunSummary:
    """Compile and execute a study into the DuckDB file ``db``; returns the :class:`RunSummary`.

    ``path_or_text`` is a ``.spark`` file or the text of a study. ``device``, ``backend``,
    ``memory`` and ``batch_size`` override how steps run (not what they mean: cached
    results stay valid). ``partial`` runs what this build can run when some step kinds
    have no handler. Raises SparkError for mistakes in the study.
    """
    from sparkql.plan.compile import compile_file, compile_text, read_study

    s = str(path_or_text)
    if isinstance(path_or_text, Path) or _looks_like_path(s):
        plan = compile_file(s)
        text = read_study(s)
    else:
        plan = compile_text(s)
        text = s
    if console is None:
        console = Console(quiet=quiet, highlight=False)
    for w in plan.warnings:  # rendered compiler warnings (a series that mixes runs, ...)
        console.print(w, markup=False)
    overrides: dict[str, Any] = {"device": device, "backend": backend, "memory": memory, "batch_size": batch_size}
    return execute(plan, db, study_text=text, dry_run=dry_run, exec_overrides=overrides, partial=partial,
                   console=console)
