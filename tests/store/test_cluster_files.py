"""What a cluster worker checks before it runs a step (runtime/execution/node_files.py), without Ray:
the plan's model and dataset files, by fingerprint, and SPARKQL_PATH_MAP for nodes that mount
the shared storage elsewhere."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from sparkql.errors import SparkError
from sparkql.plan.compile import compile_text
from sparkql.runtime.execution.node_files import check_files, file_refs, localize, map_path, path_map


@pytest.fixture
def tree(tiny_qwen2, tmp_path):
    shutil.copytree(tiny_qwen2, tmp_path / "m" / "base")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "probs.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    text = (f'model base = "{tmp_path}/m/base"\ndataset probs = "{tmp_path}/d/probs.jsonl"\n'
            "eval pass@k on probs for base with n = 1, k = [1], max_tokens = 4\n")
    plan = compile_text(text)
    gen = next(s for s in plan.steps if s.kind == "generate")
    return tmp_path, gen


def test_path_map_parsing_and_longest_prefix():
    pairs = path_map("/home/me=/mnt/a:/home/me/models=/mnt/models/:")
    assert pairs == [("/home/me/models", "/mnt/models"), ("/home/me", "/mnt/a")]
    assert map_path("/home/me/models/x", pairs) == "/mnt/models/x"
    assert map_path("/home/me/data/y.jsonl", pairs) == "/mnt/a/data/y.jsonl"
    assert map_path("/home/meta/z", pairs) == "/home/meta/z"  # a prefix ends at a path separator
    assert map_path("/home/me", pairs) == "/mnt/a"
    with pytest.raises(SparkError) as e:
        path_map("/home/me:/mnt")
    assert "PLAN_PREFIX=NODE_PREFIX" in e.value.message


def test_a_step_with_its_files_in_place_passes(tree):
    root, gen = tree
    checked: set = set()
    check_files(gen, "node-a", checked=checked)
    models, datasets = file_refs(gen)
    assert [m["path"] for m in models] == [f"{root}/m/base"] and [d["path"] for d in datasets] == [f"{root}/d/probs.jsonl"]
    assert len(checked) == 2


def test_missing_model_names_the_node_and_the_path(tree):
    root, gen = tree
    shutil.rmtree(root / "m" / "base")
    with pytest.raises(SparkError) as e:
        check_files(gen, "gpu-7 (10.0.0.7)")
    assert e.value.message == f"node gpu-7 (10.0.0.7): model base is missing: no config.json or adapter_config.json in {root}/m/base"
    assert "every node" in e.value.hint


def test_rewritten_weights_are_refused(tree):
    root, gen = tree
    w = next((root / "m" / "base").glob("*.safetensors"))
    st = w.stat()
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, written again later
    with pytest.raises(SparkError) as e:
        check_files(gen, "node-b")
    assert e.value.message.startswith(f"node node-b: model base at {root}/m/base differs from the one the plan")
    assert "rsync -a" in e.value.hint


def test_a_changed_dataset_is_refused(tree):
    root, gen = tree
    (root / "d" / "probs.jsonl").write_text(json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    with pytest.raises(SparkError) as e:
        check_files(gen, "node-c")
    assert e.value.message.startswith(f"node node-c: dataset probs at {root}/d/probs.jsonl differs from the plan's")


def test_a_mapped_node_reads_its_own_copy_and_keys_do_not_change(tree, tmp_path):
    root, gen = tree
    mirror = tmp_path / "mirror"
    shutil.copytree(root / "m", mirror / "m", copy_function=shutil.copy2)  # copy2 keeps mtimes (rsync -a)
    shutil.copytree(root / "d", mirror / "d", copy_function=shutil.copy2)
    local = localize(gen, path_map(f"{root}={mirror}"))
    assert local.key == gen.key and local.spec.model.model_id == gen.spec.model.model_id
    assert local.spec.model.path == f"{mirror}/m/base" and local.spec.dataset.path == f"{mirror}/d/probs.jsonl"
    check_files(local, "node-d")
    # a node whose map points where nothing is: the message gives both paths
    empty = localize(gen, path_map(f"{root}={tmp_path / 'nothing'}"))
    with pytest.raises(SparkError) as e:
        check_files(empty, "node-e", {f"{tmp_path}/nothing/m/base": f"{root}/m/base"})
    assert e.value.message.endswith(f"adapter_config.json in {tmp_path}/nothing/m/base (the plan's {root}/m/base, "
                                    "mapped by SPARKQL_PATH_MAP)")


def test_zoo_models_are_checked_by_recipe(monkeypatch):
    from sparkql import zoo

    plan = compile_text('model base = "zoo:base"\ncircuit toy_pairs on base\n')
    circuit = next(s for s in plan.steps if s.kind == "circuit")
    check_files(circuit, "node-f")  # same preset, same code: the plan's recipe
    monkeypatch.setattr(zoo, "recipe_hash", lambda preset=None: "0" * 64)
    with pytest.raises(SparkError) as e:
        check_files(circuit, "node-g")
    assert "another recipe" in e.value.message and "SPARKQL_ZOO_PRESET" in e.value.hint


def test_without_ray_the_cluster_says_how_to_get_it(monkeypatch):
    import sys

    from sparkql.runtime.execution.cluster import _import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SparkError) as e:
        _import_ray()
    assert e.value.hint == "pip install 'sparkql[ray]'"
