"""sparkql.zoo: the torch-free recipe and layout the compiler relies on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sparkql import zoo
from sparkql.errors import SparkError


def test_layout_has_the_three_series_with_ordered_steps():
    for preset in ("full", "tiny"):
        lay = zoo.layout(preset)
        assert lay["base"] is None
        for series in ("sft", "grpo"):
            steps = lay[series]
            assert steps and steps == sorted(set(steps)), (preset, series, steps)
            stage = zoo.recipe(preset)[series]
            assert steps[-1] == stage["steps"]  # the final model is a checkpoint
            assert all(s % stage["save_every"] == 0 for s in steps[:-1])
    # tests build the tiny preset: fewer steps and checkpoints than the demo
    assert len(zoo.layout("tiny")["sft"]) < len(zoo.layout("full")["sft"])
    assert zoo.recipe("tiny")["base"]["steps"] < zoo.recipe("full")["base"]["steps"]


def test_zoo_dir_maps_paths_into_the_preset_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARKQL_ZOO_DIR", str(tmp_path))
    root = zoo.cache_root("full")
    assert root.parent == tmp_path.resolve()
    assert root.name == f"full-{zoo.recipe_hash('full')[:12]}"
    step = zoo.layout("full")["sft"][1]
    assert zoo.zoo_dir("zoo:base", "full") == root / "base"
    assert zoo.zoo_dir(f"zoo:sft/checkpoint-{step}", "full") == root / "sft" / f"checkpoint-{step}"
    # presets never share a directory
    assert zoo.cache_root("tiny") != root


def test_cache_root_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("SPARKQL_ZOO_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert zoo.cache_root("tiny").parent == (tmp_path / "sparkql" / "zoo").resolve()


def test_preset_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPARKQL_ZOO_PRESET", "tiny")
    assert zoo.layout() == zoo.layout("tiny")
    monkeypatch.setenv("SPARKQL_ZOO_PRESET", "huge")
    with pytest.raises(SparkError, match="unknown zoo preset"):
        zoo.layout()


def test_recipe_hash_changes_with_the_recipe(monkeypatch):
    before = zoo.recipe_hash("tiny")
    assert before == zoo.recipe_hash("tiny")  # stable
    assert before != zoo.recipe_hash("full")
    monkeypatch.setitem(zoo.PRESETS["tiny"], "seed", 1)
    assert zoo.recipe_hash("tiny") != before


def test_seed_and_threads_from_the_environment_enter_the_recipe(monkeypatch):
    """Another training seed or thread count (as another CPU reduces in another order) is another
    recipe: its own hash and cache folder, so a finding can be checked on a zoo trained otherwise."""
    before, root = zoo.recipe_hash("tiny"), zoo.cache_root("tiny")
    monkeypatch.setenv("SPARKQL_ZOO_SEED", "1")
    assert zoo.recipe("tiny")["seed"] == 1 and zoo.recipe_hash("tiny") != before
    seeded = zoo.recipe_hash("tiny")
    monkeypatch.setenv("SPARKQL_ZOO_THREADS", "2")
    assert zoo.recipe("tiny")["threads"] == 2 and zoo.recipe_hash("tiny") not in (before, seeded)
    assert zoo.cache_root("tiny") != root
    monkeypatch.setenv("SPARKQL_ZOO_THREADS", "0")
    with pytest.raises(SparkError, match="SPARKQL_ZOO_THREADS"):
        zoo.recipe("tiny")
    monkeypatch.delenv("SPARKQL_ZOO_SEED")
    monkeypatch.delenv("SPARKQL_ZOO_THREADS")
    assert zoo.recipe_hash("tiny") == before


def test_recipe_hash_covers_the_training_code():
    names = {f.name for f in zoo._code_files()}
    assert {"train.py", "grpo.py", "data.py", "build.py", "tiny.py"} <= names


@pytest.mark.parametrize("path, message", [
    ("zoo:nope", "no series"),
    ("zoo:sft", "checkpoint series"),
    ("zoo:base/checkpoint-1", "single model"),
    ("zoo:sft/checkpoint-7", "no checkpoint-7"),
    ("models/base", "not a zoo model path"),
])
def test_bad_zoo_paths_are_user_errors_with_hints(path, message):
    with pytest.raises(SparkError, match=message) as e:
        zoo.zoo_dir(path, "full")
    assert e.value.hint


def test_model_shape_is_a_gqa_qwen2():
    shape = zoo.model_shape()
    assert shape["architecture"] == "Qwen2ForCausalLM"
    assert shape["n_kv_heads"] < shape["n_heads"]  # grouped-query attention
    assert shape["n_heads"] * shape["head_dim"] == shape["hidden_size"]


def test_layout_module_never_imports_torch():
    code = "import sys, sparkql.zoo as z; z.layout(); z.recipe_hash(); z.zoo_dir('zoo:base'); " \
           "print('torch' in sys.modules or 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
