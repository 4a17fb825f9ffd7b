"""The compiler path never imports torch, transformers, nnsight, vllm, peft, textual or ray (checked in a
fresh interpreter, since this test process has imported them already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["torch", "transformers", "nnsight", "vllm", "peft", "textual", "ray"]
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
        f"for args in (['check', {str(study)!r}], ['plan', {str(study)!r}, '--db', {str(tmp_path / 'x.duckdb')!r}], "
        f"['plan', {str(study)!r}, '--cluster', 'auto', '--db', {str(tmp_path / 'x.duckdb')!r}], ['fmt', {str(study)!r}]):\n"
        "    try:\n        cli.main(args=args, standalone_mode=False)\n    except SystemExit:\n        pass\n"
    )
    assert loaded_after(code) == []


def test_checking_a_lora_series_is_light(tmp_path):
    """`check` over PEFT adapter checkpoints reads adapter_config.json and the base's config.json
    only: peft (and torch) are needed to merge the weights at run time, not to compile."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}))
    (base / "model.safetensors").write_bytes(b"")
    (base / "tokenizer.json").write_text("{}")
    for s in (10, 20):
        ck = tmp_path / "runs" / f"checkpoint-{s}"
        ck.mkdir(parents=True)
        (ck / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(base)}))
        (ck / "adapter_model.safetensors").write_bytes(b"")
    study = tmp_path / "s.spark"
    study.write_text('model base = "base"\nmodel lora = "runs/checkpoint-*"\ncircuit toy_pairs on lora diff base\n')
    code = (
        "from sparkql.cli.main import cli\n"
        f"cli.main(args=['check', {str(study)!r}], standalone_mode=False)\n"
    )
    assert loaded_after(code) == []
