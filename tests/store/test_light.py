"""`sparkql sql`, `sparkql export`, `sparkql figures` and the executor with the store-only handlers never
import torch, transformers, nnsight, vllm or textual (fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "nnsight", "vllm", "textual"]


def test_store_commands_and_store_handlers_are_light(tmp_path):
    db = tmp_path / "x.duckdb"
    code = f"""
import sys, json
from sparkql.store.api import Store
Store({str(db)!r}).close()
from sparkql.cli.main import cli
for args in (['sql', 'SELECT 1', '--db', {str(db)!r}, '--format', 'csv'],
             ['export', 'steps', '--db', {str(db)!r}, '--out', {str(tmp_path / 's.csv')!r}],
             ['figures', '--db', {str(db)!r}, '--out', {str(tmp_path / 'f')!r}]):
    try:
        cli.main(args=args, standalone_mode=False)
    except SystemExit:
        pass
import sparkql.runtime.execution.executor, sparkql.runtime.steps.head_sets, sparkql.runtime.steps.cohort, sparkql.runtime.steps.load
import sparkql.runtime.execution.api, sparkql.figures
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
