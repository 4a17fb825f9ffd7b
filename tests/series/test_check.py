"""`sparkql check` on checkpoint series as real trainers leave them (tests/trl_runs: TRL's own output,
weights left out): leftovers of an earlier run, checkpoints without trainer_state.json, members
that are not loadable models, LoRA adapter series and their base, and the reward key a cohort
reads. Each user-visible message is snapshotted as `sparkql check` prints it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from sparkql.cli.common import run_cli
from sparkql.cli.main import cli
from sparkql.errors import SparkError
from sparkql.plan.compile import compile_file
from sparkql.plan.steps import CohortSpec

from .trl_layout import recreate

STUDY = """model base = "base"
model grpo = "{glob}"{opts}
circuit toy_pairs on grpo[*] diff base
cohort emergent{cohort}
"""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A study tree: the tiny base TRL trained (its config.json, an empty weights file) and an empty
    Hugging Face cache, so hub ids resolve the same on every machine."""
    base = tmp_path / "base"
    base.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[1] / "trl_runs" / "grpo" / "checkpoint-2" / "config.json",
                    base / "config.json")
    (base / "model.safetensors").write_bytes(b"")
    (base / "tokenizer.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def study(tree: Path, glob: str, opts: str = "", cohort: str = "") -> Path:
    f = tree / "s.spark"
    f.write_text(STUDY.format(glob=glob, opts=opts, cohort=cohort))
    return f


def check(f: Path, capsys, tree: Path) -> tuple[int, str]:
    """Exit code and output of `sparkql check f`, the tree's path written <tree>."""
    try:
        code = run_cli(cli, ["check", str(f)])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, (out.err + out.out).replace(str(tree), "<tree>")


def test_a_trl_grpo_series_checks_clean(tree, capsys):
    recreate("grpo", tree / "runs")
    code, out = check(study(tree, "runs/checkpoint-*"), capsys, tree)
    assert (code, out) == (0, "ok <tree>/s.spark: 20 steps (5 load_model, 5 edge_scores, 5 circuit, 4 diff, 1 cohort)\n")


def test_leftovers_of_an_earlier_run_are_named(tree, capsys, snapshot):
    """Two TRL runs into one output_dir: the second (4 steps) overwrote checkpoint-2 and -4; the
    first run's checkpoint-6 and -8 are still there, and their logs do not extend checkpoint-4's."""
    recreate("grpo_leftovers", tree / "runs")
    code, out = check(study(tree, "runs/checkpoint-*"), capsys, tree)
    assert code == 0
    assert out == snapshot
    assert "checkpoint-6, checkpoint-8 do not belong to the run of checkpoint-4" in out


def test_series_strict_refuses_leftovers(tree, capsys, snapshot):
    recreate("grpo_leftovers", tree / "runs")
    code, out = check(study(tree, "runs/checkpoint-*", opts=" with series = strict"), capsys, tree)
    assert code == 2
    assert out == snapshot


def test_the_newest_run_decides_which_checkpoints_are_leftovers(tree):
    """The same directories with the first run written last: now checkpoint-2 and -4 are the odd ones."""
    from sparkql.runtime.models.checkpoint import series_log

    runs = recreate("grpo_leftovers", tree / "runs")
    for i, name in enumerate(["checkpoint-2", "checkpoint-4", "checkpoint-6", "checkpoint-8"]):
        t = 1_700_000_000 + i  # in step order: the first run (6 and 8) newest
        os.utime(runs / name / "trainer_state.json", (t, t))
    report = series_log([(p.name, p) for p in sorted(runs.iterdir())])
    assert (report.reference, report.foreign) == ("checkpoint-8", ["checkpoint-2", "checkpoint-4"])


def test_a_checkpoint_without_trainer_state_is_said(tree, capsys, snapshot):
    runs = recreate("grpo", tree / "runs")
    (runs / "checkpoint-8" / "trainer_state.json").unlink()
    code, out = check(study(tree, "runs/checkpoint-*"), capsys, tree)
    assert code == 0
    assert out == snapshot


@pytest.mark.parametrize("case", ["no_config", "no_weights", "adapter_without_weights"])
def test_a_member_that_is_not_a_loadable_model_fails_check(case, tree, capsys, snapshot):
    """A glob member without config.json (say, a checkpoint still being written) used to pass check
    and fail mid-run after hours of circuits."""
    runs = recreate("grpo", tree / "runs")
    d = runs / "checkpoint-6"
    if case == "no_config":
        (d / "config.json").unlink()
    elif case == "no_weights":
        (d / "model.safetensors").unlink()
    else:
        lora = recreate("grpo_lora", tree / "lora")
        (lora / "checkpoint-4" / "adapter_model.safetensors").unlink()
        runs = lora
    code, out = check(study(tree, f"{runs.name}/checkpoint-*", opts=" with base = base" if runs.name == "lora" else ""),
                      capsys, tree)
    assert code == 2
    assert out == snapshot


# ---- adapters ---------------------------------------------------------------------------------

def _point_adapters_at(runs: Path, base: str) -> None:
    for cfg in runs.glob("checkpoint-*/adapter_config.json"):
        data = json.loads(cfg.read_text())
        data["base_model_name_or_path"] = base
        cfg.write_text(json.dumps(data))


def test_a_lora_series_is_merged_into_the_base_its_adapter_config_names(tree):
    lora = recreate("grpo_lora", tree / "lora")
    _point_adapters_at(lora, str(tree / "base"))
    plan = compile_file(study(tree, "lora/checkpoint-*"))
    refs = [s.spec.model for s in plan.steps if s.kind == "load_model"]
    adapters = [r for r in refs if r.name == "grpo"]
    assert [r.step for r in adapters] == [2, 4]
    assert all(r.base == str((tree / "base").resolve()) for r in adapters)
    assert plan.warnings == []


def test_a_lora_base_from_the_hub_cache(tree):
    """base_model_name_or_path as TRL writes it for a hub model: found in the local HF cache."""
    snap = tree / "hf-cache" / "models--tiny--base" / "snapshots" / "abc123"
    shutil.copytree(tree / "base", snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    lora = recreate("grpo_lora", tree / "lora")
    _point_adapters_at(lora, "tiny/base")
    plan = compile_file(study(tree, "lora/checkpoint-*"))
    assert {s.spec.model.base for s in plan.steps if s.kind == "load_model" and s.spec.model.name == "grpo"} == {str(snap)}


def test_with_base_names_the_base(tree):
    """`with base = NAME` wins over adapter_config.json (here a path that exists nowhere)."""
    lora = recreate("grpo_lora", tree / "lora")
    _point_adapters_at(lora, "/nowhere/tiny-base")
    plan = compile_file(study(tree, "lora/checkpoint-*", opts=" with base = base"))
    loads = {s.spec.model.name: s.spec.model for s in plan.steps if s.kind == "load_model"}
    assert loads["grpo"].base == loads["base"].path


def test_an_adapter_fingerprint_covers_adapter_and_base(tree):
    lora = recreate("grpo_lora", tree / "lora")
    _point_adapters_at(lora, str(tree / "base"))
    f = study(tree, "lora/checkpoint-*")

    def fingerprints():
        return [s.spec.model.fingerprint for s in compile_file(f).steps
                if s.kind == "load_model" and s.spec.model.name == "grpo"]

    first = fingerprints()
    os.utime(tree / "base" / "model.safetensors", (1, 1))  # the base's weights rewritten
    second = fingerprints()
    os.utime(lora / "checkpoint-2" / "adapter_model.safetensors", (1, 1))  # one adapter rewritten
    third = fingerprints()
    assert first[0] != second[0] and first[1] != second[1]
    assert third[0] != second[0] and third[1] == second[1]


@pytest.mark.parametrize("case", ["base_not_found", "base_is_a_full_model_option", "series_option_on_one_model",
                                  "prompt_tuning_adapter", "base_is_a_series"])
def test_adapter_mistakes(case, tree, capsys, snapshot):
    lora = recreate("grpo_lora", tree / "lora")
    _point_adapters_at(lora, "Qwen/Qwen2.5-0.5B-Instruct")
    if case == "base_not_found":
        f = study(tree, "lora/checkpoint-*")
    elif case == "base_is_a_full_model_option":
        (tree / "s.spark").write_text('model base = "base" with base = "lora/checkpoint-2"\n')
        f = tree / "s.spark"
    elif case == "series_option_on_one_model":
        (tree / "s.spark").write_text('model base = "base" with series = strict\n')
        f = tree / "s.spark"
    elif case == "prompt_tuning_adapter":
        cfg = lora / "checkpoint-4" / "adapter_config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "peft_type": "PREFIX_TUNING"}))
        f = study(tree, "lora/checkpoint-*", opts=" with base = base")
    else:
        recreate("grpo", tree / "runs")
        (tree / "s.spark").write_text('model runs = "runs/checkpoint-*"\nmodel grpo = "lora/checkpoint-*" with base = runs\n')
        f = tree / "s.spark"
    code, out = check(f, capsys, tree)
    assert code == 2
    assert out == snapshot


# ---- the reward key -----------------------------------------------------------------------------

def test_cohort_with_reward_names_any_logged_key(tree):
    recreate("grpo", tree / "runs")
    plan = compile_file(study(tree, "runs/checkpoint-*", cohort=' with reward = "rewards/digits_reward/mean"'))
    cohort = next(s for s in plan.steps if s.kind == "cohort")
    assert isinstance(cohort.spec, CohortSpec) and cohort.spec.reward == "rewards/digits_reward/mean"
    assert "reward rewards/digits_reward/mean" in cohort.label
    # the default choice keeps the key the cohort step had before the option existed
    default = next(s for s in compile_file(study(tree, "runs/checkpoint-*")).steps if s.kind == "cohort")
    assert "reward" not in default.spec.model_dump(mode="json") and default.key != cohort.key


@pytest.mark.parametrize("case", ["misspelled", "no_logs"])
def test_a_reward_key_not_logged_fails_check(case, tree, capsys, snapshot):
    runs = recreate("grpo", tree / "runs")
    if case == "no_logs":
        for f in runs.glob("*/trainer_state.json"):
            f.unlink()
    code, out = check(study(tree, "runs/checkpoint-*", cohort=' with reward = "rewards/accuracy_rewards/mean"'),
                      capsys, tree)
    assert code == 2
    assert out == snapshot


def test_check_json_carries_the_warnings(tree, capsys):
    recreate("grpo_leftovers", tree / "runs")
    code = run_cli(cli, ["check", "--json", str(study(tree, "runs/checkpoint-*"))])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["ok"] and len(data["warnings"]) == 1
    assert "warning: `grpo` mixes runs" in data["warnings"][0]


def test_errors_are_spark_errors_with_a_location(tree):
    runs = recreate("grpo", tree / "runs")
    (runs / "checkpoint-6" / "config.json").unlink()
    with pytest.raises(SparkError) as info:
        compile_file(study(tree, "runs/checkpoint-*"))
    assert info.value.span is not None and info.value.span.line == 2


def test_a_logged_nan_does_not_split_a_run(tree):
    """A diverged step logs grad_norm NaN in every later checkpoint's copy of the log: still one run."""
    from sparkql.runtime.models.checkpoint import series_log

    runs = recreate("grpo", tree / "runs")
    for f in runs.glob("*/trainer_state.json"):
        state = json.loads(f.read_text())
        state["log_history"][0]["grad_norm"] = float("nan")
        f.write_text(json.dumps(state))  # Python's json writes NaN, as the Trainer's does
    report = series_log([(p.name, p) for p in sorted(runs.iterdir())])
    assert report.foreign == [] and report.missing == [] and "grad_norm" in report.keys


def test_a_checkpoint_without_tokenizer_files_is_refused_or_takes_the_base_tokenizer(tree):
    """transformers 5 loads an empty tokenizer from a directory without tokenizer files, and the
    circuit failed much later with "no usable clean/corrupted pairs": `check` says so at the model
    statement, and `with tokenizer = base` takes the series' base's tokenizer (into the keys)."""
    from sparkql.plan.compile import compile_file

    runs = tree / "runs"
    for i, s in enumerate((2, 4)):
        d = runs / f"checkpoint-{s}"
        d.mkdir(parents=True)
        shutil.copyfile(tree / "base" / "config.json", d / "config.json")
        (d / "model.safetensors").write_bytes(b"")
    f = tree / "s.spark"
    f.write_text('model base = "base"\nmodel ckpt = "runs/checkpoint-*"\n'
                 'dataset d = "d.jsonl" (clean = "c", corrupt = "x")\ncircuit d on ckpt[*]\n')
    (tree / "d.jsonl").write_text('{"c": "1+1=", "x": "2+1="}\n')
    with pytest.raises(SparkError) as e:
        compile_file(f)
    msg = e.value.render()
    assert "s.spark:2:14: error: `ckpt`: checkpoint checkpoint-2, checkpoint-4 have no tokenizer files" in msg
    assert "with tokenizer = base" in msg
    f.write_text(f.read_text().replace('"runs/checkpoint-*"', '"runs/checkpoint-*" with tokenizer = base'))
    plan = compile_file(f)
    refs = [s.spec.model for s in plan.steps if s.kind == "edge_scores"]
    assert [r.tokenizer for r in refs] == [str(tree / "base")] * 2
    f.write_text(f.read_text().replace("with tokenizer = base", 'with tokenizer = "runs/checkpoint-2"'))
    with pytest.raises(SparkError, match="has no tokenizer files either"):
        compile_file(f)
