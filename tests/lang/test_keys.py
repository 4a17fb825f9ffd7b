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
    # (with dtype = auto the device decides the dtype, which is part of a circuit's key: below)
    a = keys(study_tree, "set dtype = fp32\ncircuit aime24 on base as h\n")
    b = keys(study_tree, 'set dtype = fp32\nset device = cpu\nset memory = "2GiB"\nset batch_size = 3\n'
                         "circuit aime24 on base as h\n")
    assert a == b


def test_dtype_auto_is_resolved_before_keying(study_tree, monkeypatch):
    """An fp32 CPU circuit is not reused by a bf16 GPU run: `auto` is bf16 where a GPU is seen,
    fp32 elsewhere, and the scores' key holds the resolved dtype."""
    import sparkql.runtime.models.device as D

    def scoring(text):
        plan = compile_in_tree(study_tree, BASE + text)
        s = next(s for s in plan.steps if s.kind == "edge_scores")
        return s.spec.params.dtype, s.key

    monkeypatch.setattr(D, "gpu_present", lambda: False)
    cpu_auto, cpu_fp32 = scoring("circuit aime24 on base as h\n"), scoring("set dtype = fp32\ncircuit aime24 on base as h\n")
    assert cpu_auto == cpu_fp32 and cpu_auto[0] == "fp32"
    monkeypatch.setattr(D, "gpu_present", lambda: True)
    gpu_auto = scoring("circuit aime24 on base as h\n")
    assert gpu_auto[0] == "bf16" and gpu_auto[1] != cpu_auto[1]
    assert gpu_auto == scoring("set dtype = bf16\ncircuit aime24 on base as h\n")
    assert scoring("set device = cpu\ncircuit aime24 on base as h\n") == cpu_auto


def test_dtype_auto_is_resolved_before_keying_an_eval(study_tree, monkeypatch):
    """The same rule for evals: an fp32 CPU eval's samples are not reused by a bf16 GPU run."""
    import sparkql.runtime.models.device as D

    def generate(text):
        plan = compile_in_tree(study_tree, BASE + text)
        s = next(s for s in plan.steps if s.kind == "generate")
        return s.spec.dtype, s.key

    text = "eval pass@k on aime24 for base\n"
    monkeypatch.setattr(D, "gpu_present", lambda: False)
    cpu_auto = generate(text)
    assert cpu_auto == generate("set dtype = fp32\n" + text) and cpu_auto[0] == "fp32"
    monkeypatch.setattr(D, "gpu_present", lambda: True)
    gpu_auto = generate(text)
    assert gpu_auto == generate("set dtype = bf16\n" + text) and gpu_auto[1] != cpu_auto[1]


def test_changing_only_top_n_or_tau_keeps_the_scores(study_tree):
    def kinds(text):
        return {s.kind: s.key for s in compile_in_tree(study_tree, BASE + text).steps}

    a = kinds("circuit aime24 on base using eap_ig(top_n = 100, tau = 0.1) as h\n")
    b = kinds("circuit aime24 on base using eap_ig(top_n = 50, tau = 0) as h\n")
    c = kinds("circuit aime24 on base using eap_ig(top_n = 100, tau = 0.1, steps = 7) as h\n")
    assert a["edge_scores"] == b["edge_scores"] and a["circuit"] != b["circuit"]
    assert c["edge_scores"] != a["edge_scores"]


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
