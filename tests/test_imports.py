"""The compiler path never imports torch, transformers, nnsight, vllm or textual (checked in a
fresh interpreter, since this test process has imported them already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["torch", "transformers", "nnsight", "vllm", "textual"]
REPO = Path(__file__).resolve().parents[1]


def loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_compiler_modules_are_light():
    code = "import sparkql, sparkql.lang.parser, sparkql.lang.resolve, sparkql.lang.fmt, sparkql.plan.compile, sparkql.plan.steps"
    assert loaded_after(code) == []


def test_store_is_light():
    assert loaded_after("import sparkql.store.api, sparkql.store.schema") == []


def test_check_plan_fmt_commands_are_light(tmp_path):
    study = tmp_path / "s.spark"
    study.write_text("# nothing to run\n")
    code = (
        "from sparkql.cli.main import cli\n"
        f"for args in (['check', {str(study)!r}], ['plan', {str(study)!r}, '--db', {str(tmp_path / 'x.duckdb')!r}], ['fmt', {str(study)!r}]):\n"
        "    try:\n        cli.main(args=args, standalone_mode=False)\n    except SystemExit:\n        pass\n"
    )
    assert loaded_after(code) == []
