"""Content addressing: identical work shares a key; keys ignore execution options and names."""

from __future__ import annotations

from lang_helpers import compile_in_tree

BASE = 'model base = "models/Qwen2.5-Math-1.5B-Instruct"\nmodel ckpt = "runs/grpo-math220k/checkpoint-*"\n'


def keys(tree, text):
    return {s.label: s.key for s in compile_in_tree(tree, BASE + text).steps}


def test_the_base_circuit_is_shared_between_two_diffs(study_tree):
    plan = compile_in_tree(study_tree, BASE + "circuit aime24 on ckpt[*] diff base as a\ncircuit aime24 on ckpt[-1] diff base as b\n")
    circuits = [s for s in plan.steps if s.kind == "circuit"]
    assert len(circuits) == 4 + 1, "four checkpoints and one base circuit, each once"


def test_device_memory_and_batch_size_are_not_part_of_keys(study_tree):
    a = keys(study_tree, "circuit aime24 on base as h\n")
    b = keys(study_tree, 'set device = cpu\nset memory = "2GiB"\nset batch_size = 3\ncircuit aime24 on base as h\n')
    assert a == b


def test_renaming_a_model_keeps_its_results(study_tree):
    renamed = 'model original = "models/Qwen2.5-Math-1.5B-Instruct"\ncircuit aime24 on original as h\n'
    from sparkql.plan.compile import compile_text

    a = [s.key for s in compile_in_tree(study_tree, BASE + "circuit aime24 on base as h\n").steps if s.kind == "circuit"]
    b = [s.key for s in compile_text(renamed, "s.spark", study_dir=study_tree).steps if s.kind == "circuit"]
    assert a == b


def test_changing_a_parameter_changes_the_key(study_tree):
    a = keys(study_tree, "circuit aime24 on base using eap_ig(steps = 10) as h\n")
    b = keys(study_tree, "circuit aime24 on base using eap_ig(steps = 11) as h\n")
    assert a["circuit aime24 on base"] != b["circuit aime24 on base"]


def test_checkpoint_keys_survive_a_growing_series(study_tree, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(study_tree, tree)
    before = keys(tree, "circuit aime24 on ckpt[*] diff base\n")
    shutil.copytree(tree / "runs/grpo-math220k/checkpoint-300", tree / "runs/grpo-math220k/checkpoint-400")
    after = keys(tree, "circuit aime24 on ckpt[*] diff base\n")
    assert len(after) > len(before)
    for label, key in before.items():
        assert after[label] == key, f"{label} would be recomputed after a new checkpoint appeared"
