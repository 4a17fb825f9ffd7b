"""Grading, metrics, the diff and `sparkql regrade`/`diff`/`grade` never load torch,
transformers or vLLM: they must work on a laptop that only reads a results store, and in the TUI."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "sparkql.runtime.grading.grader", "sparkql.runtime.grading.metrics", "sparkql.runtime.steps.grade",
    "sparkql.runtime.steps.aggregate", "sparkql.runtime.grading.qualitative", "sparkql.runtime.generation.vllm_backend", "sparkql.runtime.generation.backend",
    "sparkql.cli.cmd_regrade", "sparkql.cli.cmd_diff", "sparkql.cli.cmd_grade",
    "sparkql.runtime.grading.answers", "sparkql.runtime.grading.verify_pool", "sparkql.runtime.grading.files",
]


def test_no_heavy_imports():
    code = (
        "import sys\n"
        f"for m in {MODULES!r}: __import__(m)\n"
        "from sparkql.runtime.generation.backend import choose_backend; choose_backend('auto', 'auto')\n"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'nnsight', 'textual') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
