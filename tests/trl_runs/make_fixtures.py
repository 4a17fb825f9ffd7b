"""Regenerate tests/trl_runs/: real checkpoint series written by Hugging Face TRL, without weights.

    pip install -c constraints.txt "trl==1.16.0" "peft==0.21.2"   # trl is needed only here, not by CI
    python tests/trl_runs/make_fixtures.py                        # a few minutes on 2 CPU cores

Four runs on a tiny random Qwen2 model (sparkql.runtime.models.tiny) and toy arithmetic prompts, on
the CPU, each a few steps with a checkpoint every 2 steps and a log entry every step:

  grpo/            GRPOTrainer, two reward functions (accuracy_reward, digits_reward): what a GRPO
                   run's trainer_state.json logs (rewards/<func>/mean, reward, loss, ...).
  grpo_leftovers/  two GRPOTrainer runs into the same output_dir: 8 steps (seed 0), then 4 steps
                   (seed 1), which overwrites checkpoint-2 and -4 and leaves the first run's
                   checkpoint-6 and -8 behind, as HF Trainer and TRL never clear output_dir.
  sft/             SFTTrainer (mean_token_accuracy, loss).
  grpo_lora/       GRPOTrainer with a LoRA peft_config: adapter checkpoints (adapter_config.json,
                   adapter_model.safetensors, no config.json).

Kept per checkpoint: trainer_state.json and the small JSON files that say what the checkpoint is
(config.json, adapter_config.json); every other file the trainer wrote (weights, optimizer.pt,
rng_state.pth, scheduler.pt, training_args.bin, tokenizer files, ...) is listed with its size in
the run's MANIFEST.json, which tests use to recreate the directory layout with empty files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEEP = ("trainer_state.json", "config.json", "adapter_config.json")
WORK = Path(os.environ.get("SPARKQL_TRL_WORK", "/tmp/sparkql-trl-fixtures"))


def problems(n: int, seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"prompt": f"{a}+{b}=", "answer": str(a + b)})
    return rows


def accuracy_reward(completions, answer, **kwargs):
    """1 when the completion's first number is the answer (TRL's accuracy_reward in spirit)."""
    out = []
    for c, a in zip(completions, answer):
        m = re.search(r"\d+", c)
        out.append(1.0 if m and m.group(0) == a else 0.0)
    return out


def digits_reward(completions, **kwargs):
    """The share of digits in the completion: a dense signal, so the curve moves on a random model."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def base_model() -> Path:
    from sparkql.runtime.models.tiny import make_tiny_model

    d = WORK / "base"
    if not (d / "config.json").is_file():
        make_tiny_model(d, n_layers=2, n_heads=4, n_kv_heads=2, hidden=32, intermediate=64, seed=0)
    return d


def grpo(out: Path, steps: int, seed: int, lora: bool = False) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    base = base_model()
    args = GRPOConfig(
        output_dir=str(out), max_steps=steps, save_steps=2, logging_steps=1, save_strategy="steps",
        per_device_train_batch_size=4, num_generations=4, max_completion_length=8, learning_rate=1e-3,
        temperature=1.0, use_cpu=True, seed=seed, report_to="none", bf16=False, disable_tqdm=True,
    )
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                 task_type="CAUSAL_LM")
    trainer = GRPOTrainer(
        model=str(base), reward_funcs=[accuracy_reward, digits_reward], args=args,
        train_dataset=Dataset.from_list(problems(64, seed)),
        processing_class=AutoTokenizer.from_pretrained(base), peft_config=peft_config,
    )
    trainer.train()


def sft(out: Path, steps: int) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    base = base_model()
    rows = [{"prompt": r["prompt"], "completion": r["answer"]} for r in problems(64, 0)]
    args = SFTConfig(output_dir=str(out), max_steps=steps, save_steps=2, logging_steps=1, save_strategy="steps",
                     per_device_train_batch_size=8, learning_rate=1e-3, use_cpu=True, seed=0, report_to="none",
                     bf16=False, disable_tqdm=True, max_length=32)
    SFTTrainer(model=str(base), args=args, train_dataset=Dataset.from_list(rows),
               processing_class=AutoTokenizer.from_pretrained(base)).train()


def keep(run_dir: Path, dest: Path, how: str) -> None:
    """Copy the kept files of every checkpoint of ``run_dir`` to ``dest`` and list the rest."""
    import peft
    import transformers
    import trl

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    manifest = {"made_by": how, "trl": trl.__version__, "transformers": transformers.__version__,
                "peft": peft.__version__, "checkpoints": {}, "trainer_state_mtime_ns": {}}
    for ck in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])):
        files = {}
        for f in sorted(ck.rglob("*")):
            if f.is_file():
                rel = str(f.relative_to(ck))
                files[rel] = f.stat().st_size
                if rel in KEEP:
                    (dest / ck.name).mkdir(exist_ok=True)
                    shutil.copy2(f, dest / ck.name / rel)
        manifest["checkpoints"][ck.name] = files
        # git does not keep mtimes; the order the trainer wrote the logs in tells the runs apart
        manifest["trainer_state_mtime_ns"][ck.name] = (ck / "trainer_state.json").stat().st_mtime_ns
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def main() -> int:
    if sys.argv[1:] == ["--keep-only"]:  # the runs are still in WORK: only copy and list again
        for run in ("grpo", "grpo_leftovers", "sft", "grpo_lora"):
            old = json.loads((HERE / run / "MANIFEST.json").read_text())
            keep(WORK / run, HERE / run, old["made_by"])
        return 0
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    grpo(WORK / "grpo", steps=8, seed=0)
    keep(WORK / "grpo", HERE / "grpo", "GRPOTrainer, 8 steps, save every 2, seed 0")
    # the leftovers: a second, shorter run into the same output_dir
    shutil.copytree(WORK / "grpo", WORK / "grpo_leftovers")
    grpo(WORK / "grpo_leftovers", steps=4, seed=1)
    keep(WORK / "grpo_leftovers", HERE / "grpo_leftovers",
         "GRPOTrainer 8 steps (seed 0), then GRPOTrainer 4 steps (seed 1) into the same output_dir")
    sft(WORK / "sft", steps=6)
    keep(WORK / "sft", HERE / "sft", "SFTTrainer, 6 steps, save every 2")
    grpo(WORK / "grpo_lora", steps=4, seed=0, lora=True)
    keep(WORK / "grpo_lora", HERE / "grpo_lora", "GRPOTrainer with LoRA (r=4, q/k/v/o), 4 steps, save every 2")
    print(f"fixtures written under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
