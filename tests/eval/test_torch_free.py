"""Grading, metrics, the diff and `sparkql regrade`/`diff`/`grade` never load torch,
transformers or vLLM: they must work on a laptop that only reads a results store, and in the TUI."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "sparkql.runtime.grading", "sparkql.runtime.metrics", "sparkql.runtime.grade_step",
    "sparkql.runtime.aggregate_step", "sparkql.runtime.qualitative", "sparkql.runtime.vllm_backend",
    "sparkql.cli.cmd_regrade", "sparkql.cli.cmd_diff", "sparkql.cli.cmd_grade",
    "sparkql.runtime.answers", "sparkql.runtime.verify_pool", "sparkql.runtime.grade_file",
]


def test_no_heavy_imports():
    code = (
        "import sys\n"
        f"for m in {MODULES!r}: __import__(m)\n"
        "from sparkql.runtime.vllm_backend import resolve_backend; resolve_backend('auto', 'auto')\n"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'nnsight', 'textual') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
