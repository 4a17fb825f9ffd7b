"""Step handlers for the failure tests: they run on cluster workers (imported there by name)."""

from __future__ import annotations

import os
from pathlib import Path


def generate_then_die_once(step, ctx):
    """The real generate handler, but the worker process is killed (SIGKILL) right after its first
    batch of samples was written by the driver: once per marker file."""
    import signal

    from sparkql.runtime.steps.generate import run_generate

    marker = Path(os.environ["SPARKQL_TEST_DIE_MARKER"])
    try:  # the first generate step to get here claims the marker (two may start at once)
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        fd = None
    if fd is not None:
        os.close(fd)
        real_write = ctx.write

        def write_then_die(tables):
            real_write(tables)
            marker.write_text(f"{step.label}\n{os.getpid()}\n")
            os.kill(os.getpid(), signal.SIGKILL)

        ctx.write = write_then_die
    return run_generate(step, ctx)
