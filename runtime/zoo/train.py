"""Training machinery shared by the zoo's stages: the model, batches, the supervised
loop (base pretraining and SFT) and checkpoints in Hugging Face Trainer layout.

A hand-written loop rather than TRL: on two CPU cores the whole zoo must build in
minutes, and a plain loop over a tiny Qwen2 costs nothing beyond the model's own
forward and backward passes. Checkpoints are written the way HF Trainer writes
them (``checkpoint-N/`` with config, safetensors weights, tokenizer files and
``trainer_state.json`` holding ``log_history``) so downstream code cannot tell
the difference.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Callable

import torch

from sparkql.runtime.zoo import data

IGNORE = -100


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def new_model(model_recipe: dict, tokenizer, seed: int):
    """A freshly initialised Qwen2ForCausalLM (GQA, RMSNorm, RoPE) of the recipe's shape."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    m = model_recipe
    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["n_layers"],
        num_attention_heads=m["n_heads"],
        num_key_value_heads=m["n_kv_heads"],
        head_dim=m["head_dim"],
        max_position_embeddings=m["max_positions"],
        rope_parameters={"rope_type": "default", "rope_theta": float(m["rope_theta"])},
        tie_word_embeddings=True,
        initializer_range=0.02,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    cfg.architectures = ["Qwen2ForCausalLM"]
    torch.manual_seed(seed)
    # sdpa for training speed; the runtime reloads with eager attention for circuits.
    model = Qwen2ForCausalLM._from_config(cfg, attn_implementation="sdpa")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


class Encoder:
    """Prompt/completion -> token ids, cached per distinct string (the tasks repeat a lot)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        self._cache: dict[str, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        got = self._cache.get(text)
        if got is None:
            got = self._cache[text] = self.tok(text, add_special_tokens=False)["input_ids"]
        return got

    def sft_batch(self, pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        """Right-padded input_ids/attention_mask/labels; loss on the completion and its eos only."""
        rows = []
        for prompt, completion in pairs:
            p, c = self.ids(prompt), self.ids(completion) + [self.eos]
            rows.append((p + c, [IGNORE] * len(p) + c))
        width = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (x, y) in enumerate(rows):
            ids[i, : len(x)] = torch.tensor(x)
            labels[i, : len(y)] = torch.tensor(y)
            mask[i, : len(x)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 10% of peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_hf(model, tokenizer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def write_trainer_state(out: Path, *, step: int, max_steps: int, log_history: list[dict], save_every: int,
                        batch_size: int, extra: dict | None = None) -> None:
    """``trainer_state.json`` as HF Trainer writes it (the fields readers rely on)."""
    state = {
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": log_history[-1]["epoch"] if log_history else 0.0,
        "eval_steps": None,
        "global_step": step,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": log_history,
        "logging_steps": 1,
        "max_steps": max_steps,
        "num_train_epochs": 1,
        "save_steps": save_every,
        "train_batch_size": batch_size,
        **(extra or {}),
    }
    (out / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")


def supervised(
    model,
    enc: Encoder,
    make_batch: Callable[[random.Random, int], list[tuple[str, str]]],
    *,
    steps: int,
    batch: int,
    lr: float,
    warmup: int,
    seed: int,
    out_dir: Path | None = None,
    save_every: int | None = None,
    tokenizer=None,
    log_every: int = 10,
    on_log: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Next-token training on (prompt, completion) pairs drawn fresh every step.

    With ``out_dir`` and ``save_every``, writes ``checkpoint-N`` every N steps (and at the
    end) with the log history so far. Returns the log history."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    model.train()
    history: list[dict] = []
    running, n_running, t0 = 0.0, 0, time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        out = model(**enc.sft_batch(make_batch(rng, batch)))
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running += out.loss.item()
        n_running += 1
        done = step + 1
        if done % log_every == 0 or done == steps:
            entry = {
                "loss": round(running / n_running, 6),
                "grad_norm": round(float(grad_norm), 6),
                "learning_rate": opt.param_groups[0]["lr"],
                "epoch": round(done / steps, 4),
                "step": done,
            }
            history.append(entry)
            if on_log:
                on_log({**entry, "elapsed_s": round(time.time() - t0, 1)})
            running, n_running = 0.0, 0
        if out_dir is not None and save_every and (done % save_every == 0 or done == steps):
            ck = out_dir / f"checkpoint-{done}"
            model.eval()
            save_hf(model, tokenizer, ck)
            write_trainer_state(ck, step=done, max_steps=steps, log_history=history, save_every=save_every,
                                batch_size=batch)
            model.train()
    model.eval()
    return history


# --- what each supervised stage trains on ---------------------------------------------------

def base_batch(recipe: dict) -> Callable[[random.Random, int], list[tuple[str, str]]]:
    """Pretraining mixture: easy and hard problems (hard eval set held out), mostly direct
    answers, a small share of traces. A whole batch shares one prompt style (with or without
    the instruction, see ``instruction_share``) so padding stays small."""
    held = data.held_out()
    trace_share = recipe["data"]["trace_share"]
    instr_share = recipe["data"]["instruction_share"]

    def make(rng: random.Random, n: int) -> list[tuple[str, str]]:
        with_instr = rng.random() < instr_share
        rows = []
        while len(rows) < n:
            p = data.easy_problem(rng) if rng.random() < 0.5 else data.hard_problem(rng)
            if p.text in held:
                continue
            user = data.user_text(p.text, True, rng.choice(data.SEPARATORS)) if with_instr else p.text
            rows.append((data.render_prompt(user), data.assistant_text(p, trace=rng.random() < trace_share)))
        return rows

    return make


def sft_batch(recipe: dict) -> Callable[[random.Random, int], list[tuple[str, str]]]:
    """SFT data: step-by-step traces for hard (75%) and easy problems, hard eval set held out."""
    held = data.held_out()
    instr_share = recipe["data"]["instruction_share"]

    def make(rng: random.Random, n: int) -> list[tuple[str, str]]:
        with_instr = rng.random() < instr_share
        rows = []
        while len(rows) < n:
            p = data.hard_problem(rng) if rng.random() < 0.75 else data.easy_problem(rng)
            if p.text in held:
                continue
            user = data.user_text(p.text, True, rng.choice(data.SEPARATORS)) if with_instr else p.text
            rows.append((data.render_prompt(user), data.assistant_text(p, trace=True)))
        return rows

    return make
