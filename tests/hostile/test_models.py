"""Damaged and hostile model directories (issue 14): a SparkError (exit 2, located at the statement,
a hint), never a traceback, and never code from the directory run unless the study allows it."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest

from .conftest import assert_user_error, cli, cli_process, copy_model, edit_config, eval_study


@pytest.mark.parametrize("change, needle", [
    ({"num_attention_heads": 0}, "num_attention_heads = 0 is not a positive integer"),
    ({"hidden_size": "32"}, "hidden_size = '32' is not a positive integer"),
    ({"intermediate_size": "abc"}, "intermediate_size = 'abc' is not a positive integer"),
    ({"vocab_size": -5}, "vocab_size = -5 is not a positive integer"),
    ({"max_position_embeddings": 1.5}, "max_position_embeddings = 1.5 is not a positive integer"),
])
def test_config_values_are_checked_at_check_time(tiny_qwen2, tmp_path, problems, change, needle):
    d = edit_config(copy_model(tiny_qwen2, tmp_path / "m"), **change)
    (tmp_path / "s.spark").write_text(eval_study(d, problems))
    r = cli("check", str(tmp_path / "s.spark"))
    assert_user_error(r, needle, "s.spark:1:11:", "hint: config.json is damaged")


def test_a_config_that_is_a_json_list(tiny_qwen2, tmp_path, problems):
    d = copy_model(tiny_qwen2, tmp_path / "m")
    (d / "config.json").write_text("[1, 2]")
    (tmp_path / "s.spark").write_text(eval_study(d, problems))
    assert_user_error(cli("check", str(tmp_path / "s.spark")), "config.json is not a JSON object (it holds a list)")


def test_a_truncated_safetensors_file_fails_where_the_weights_are_loaded(tiny_qwen2, tmp_path, problems):
    d = copy_model(tiny_qwen2, tmp_path / "m")
    w = d / "model.safetensors"
    size = w.stat().st_size
    w.write_bytes(w.read_bytes()[: size // 2])
    (tmp_path / "s.spark").write_text(eval_study(d, problems))
    assert cli("check", str(tmp_path / "s.spark")).code == 0  # weights are not read at check time
    r = cli("run", str(tmp_path / "s.spark"), "--db", str(tmp_path / "s.duckdb"), "-q")
    assert_user_error(r, "s.spark:3:1: error: generate probs with m:", f"model.safetensors is truncated: its header describes {size} "
                      f"bytes, the file holds {size // 2}", "hint: the copy or download was cut short")


def _evil_checkpoint(path: Path, marker: Path) -> None:
    """A torch zip checkpoint whose pickle calls os.system when unpickled without weights_only."""
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": torch.zeros(1)}, path)
    with zipfile.ZipFile(path) as z:
        items = {n: z.read(n) for n in z.namelist()}
    items[next(n for n in items if n.endswith("data.pkl"))] = pickle.dumps(Evil(), protocol=2)
    with zipfile.ZipFile(path, "w") as z:
        for n, b in items.items():
            z.writestr(n, b)


def test_a_pickle_checkpoint_with_code_is_refused_and_nothing_runs(tiny_qwen2, tmp_path, problems):
    d = copy_model(tiny_qwen2, tmp_path / "m")
    (d / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    _evil_checkpoint(d / "pytorch_model.bin", marker)
    (tmp_path / "s.spark").write_text(eval_study(d, problems))
    r = cli("run", str(tmp_path / "s.spark"), "--db", str(tmp_path / "s.duckdb"), "-q")
    assert_user_error(r, "refused to load", "pytorch_model.bin: torch's weights-only loader rejected it "
                      "(it asks to import posix.system); nothing in the file was run", "hint: a pickle checkpoint")
    assert not marker.exists()


CUSTOM_CODE = '''
import pathlib
pathlib.Path({marker!r}).write_text("the model directory's code ran")
from transformers import Qwen2ForCausalLM


class CustomQwen2(Qwen2ForCausalLM):
    pass
'''


@pytest.mark.slow
def test_model_code_runs_only_with_trust_remote_code(tiny_qwen2, tmp_path, problems):
    """A directory whose config.json points AutoModelForCausalLM at its own Python file (auto_map):
    by default the built-in Qwen2 class loads it and the file never runs; with `trust_remote_code =
    on` the loader gets the flag and runs it."""
    d = copy_model(tiny_qwen2, tmp_path / "m")
    marker = tmp_path / "code-ran"
    (d / "custom_qwen.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    edit_config(d, auto_map={"AutoModelForCausalLM": "custom_qwen.CustomQwen2"})
    env = {"HF_MODULES_CACHE": str(tmp_path / "hf-modules")}  # where transformers copies remote code
    off, on = tmp_path / "off.spark", tmp_path / "on.spark"
    off.write_text(eval_study(d, problems))
    on.write_text(eval_study(d, problems, options=" with trust_remote_code = on"))

    r = cli_process("run", str(off), "--db", str(tmp_path / "off.duckdb"), "-q", env=env)
    assert r.code == 0, r.err
    assert not marker.exists(), "the model directory's code ran without trust_remote_code"

    r = cli_process("run", str(on), "--db", str(tmp_path / "on.duckdb"), "-q", env=env)
    assert r.code == 0, r.err
    assert marker.exists(), "trust_remote_code = on did not reach the loader"


def test_trust_remote_code_is_in_the_key_only_when_on(tiny_qwen2, tmp_path, problems):
    from sparkql.plan.compile import compile_text

    keys = lambda opts: [s.key for s in compile_text(eval_study(tiny_qwen2, problems, opts)).steps]
    assert keys("") == keys(" with trust_remote_code = off")
    assert set(keys("")).isdisjoint(keys(" with trust_remote_code = on"))
    plan = compile_text("set trust_remote_code = on\n" + eval_study(tiny_qwen2, problems))
    assert all(s.spec.model.trust_remote_code for s in plan.steps if s.kind in ("load_model", "generate"))
