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


def load_hf(path: Path):
    """A model saved by :func:`save_hf`, loaded back for more training (sdpa, as trained)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True, attn_implementation="sdpa")


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
    reserved_heads: list[list[int]] | tuple = (),
    train_only: dict | None = None,
    head_dropout: tuple[list, float] | None = None,
) -> list[dict]:
    """Next-token training on (prompt, completion) pairs drawn fresh every step.

    ``reserved_heads`` ((layer, head) pairs) are silenced throughout and their ``o_proj``
    columns zeroed at the end (:func:`silence_heads`). ``head_dropout`` ``(heads, p)`` drops each
    of ``heads`` from each example with probability ``p`` (:func:`_dropout_hooks`).
    ``train_only`` (``heads``, ``mlp``: see :func:`trainable_masks`) restricts what training may change; every other weight stays
    bitwise as it was. With ``out_dir`` and ``save_every``, writes ``checkpoint-N`` every N
    steps (and at the end) with the log history so far. Returns the log history."""
    rng = random.Random(seed)
    hooks = _silence_hooks(model, reserved_heads) if reserved_heads else []
    if head_dropout:
        hooks += _dropout_hooks(model, *head_dropout, seed=seed)
    keep = trainable_masks(model, **train_only) if train_only else None
    params = [p for p in model.parameters() if keep is None or p in keep]
    # Only partly trainable tensors need restoring after a step (and a pristine copy to restore
    # from); wholly trainable ones (the MLPs) are left to the optimizer.
    partial = {p: m for p, m in keep.items() if not bool(m.all())} if keep is not None else {}
    frozen = {p: p.detach().clone() for p in partial}
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    model.train()
    history: list[dict] = []
    running, n_running, t0 = 0.0, 0, time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        out = model(**enc.sft_batch(make_batch(rng, batch)))
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():  # undo the step (and weight decay) outside the trainable slices
            for p, m in partial.items():
                p.copy_(torch.where(m, p, frozen[p]))
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
    for h in hooks:
        h.remove()
    if reserved_heads:
        silence_heads(model, reserved_heads)
    model.eval()
    return history


def trainable_masks(model, heads=(), mlp: bool = False) -> dict:
    """Parameter -> boolean mask of the entries that training may change: the q/k/v rows and
    o_proj columns of ``heads`` ((layer, head) pairs; kv rows only when the head has a kv head
    of its own), and with ``mlp`` every MLP weight. Everything else stays bitwise as it was."""
    cfg = model.config
    d, n_heads, n_kv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
    masks: dict = {}

    def mark(p, rows=None, cols=None):
        m = masks.setdefault(p, torch.zeros_like(p, dtype=torch.bool))
        if rows is not None:
            m[rows] = True
        if cols is not None:
            m[:, cols] = True

    for layer, head in heads:
        attn = model.model.layers[layer].self_attn
        rows = slice(head * d, (head + 1) * d)
        for proj in ("q_proj",) + (("k_proj", "v_proj") if n_kv == n_heads else ()):
            lin = getattr(attn, proj)
            mark(lin.weight, rows=rows)
            if lin.bias is not None:
                mark(lin.bias, rows=rows)
        mark(attn.o_proj.weight, cols=rows)
    if mlp:
        for layer in model.model.layers:
            for p in layer.mlp.parameters():
                masks[p] = torch.ones_like(p, dtype=torch.bool)
    return masks


def silence_heads(model, heads) -> None:
    """Zero the o_proj columns of ``heads`` ((layer, head) pairs): their output is exactly 0, as it
    was throughout the training that reserved them, while their q/k/v weights stay (random), so
    later training can recruit them (o_proj gets gradients at once, q/k/v once o_proj moves)."""
    d = model.config.head_dim
    with torch.no_grad():
        for layer, head in heads:
            model.model.layers[layer].self_attn.o_proj.weight[:, head * d:(head + 1) * d] = 0


def copy_heads(model, copies, noise: float = 0.0, seed: int = 0) -> None:
    """Make heads exact copies of another head of their layer: for each ``(source, targets)``
    ((layer, head) pairs), the targets get the source's q/k/v rows, and the source and its copies
    each get 1/(1 + len(targets)) of the source's o_proj columns. The model computes exactly what
    it did (the copies see the same inputs with the same weights, and their outputs add up to the
    source's), but its base heads are now redundant, as heads of large models are: zero-ablating one
    copy scales that head's contribution by len(targets)/(1 + len(targets)) instead of removing it.
    With ``noise`` > 0 each copy's q/k/v rows get Gaussian noise of ``noise`` times their standard
    deviation (seeded by ``seed``), so that further training (with head dropout) can make the
    copies diverge into different heads that stay redundant. Needs a kv head per query head (a
    copy's k/v rows are its own)."""
    if not copies:
        return
    cfg = model.config
    d = cfg.head_dim
    if cfg.num_key_value_heads != cfg.num_attention_heads:
        raise ValueError("copy_heads needs a kv head per query head")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for (layer, head), targets in copies:
            attn = model.model.layers[layer].self_attn
            src = slice(head * d, (head + 1) * d)
            share = attn.o_proj.weight[:, src] / (1 + len(targets))
            for t_layer, t_head in targets:
                if t_layer != layer:
                    raise ValueError(f"a copy of L{layer}H{head} must be in layer {layer}, not {t_layer}")
                dst = slice(t_head * d, (t_head + 1) * d)
                for proj in ("q_proj", "k_proj", "v_proj"):
                    lin = getattr(attn, proj)
                    lin.weight[dst] = lin.weight[src]
                    if lin.bias is not None:
                        lin.bias[dst] = lin.bias[src]
                    if noise:
                        w = lin.weight[dst]
                        lin.weight[dst] = w + noise * w.std() * torch.randn(w.shape, generator=gen, dtype=w.dtype)
                attn.o_proj.weight[:, dst] = share
            attn.o_proj.weight[:, src] = share


def _silence_hooks(model, reserved) -> list:
    """Forward pre-hooks on ``o_proj`` that zero the ``reserved`` heads' outputs ((layer, head)
    pairs) while the model trains: it learns without them, and :func:`silence_heads` makes that
    exact in the saved weights. Every edge from or into a silenced head then scores exactly 0."""
    def off(b: int, heads: list[int]) -> torch.Tensor:
        return torch.zeros(1, 1, len(heads), 1)

    return _head_gate_hooks(model, reserved, off, fixed=True)


def _dropout_hooks(model, heads, p: float, seed: int) -> list:
    """Forward pre-hooks on ``o_proj`` that, while the model trains, zero each of ``heads``
    ((layer, head) pairs) in each example with probability ``p`` and scale the kept ones by
    1/(1 - p) (inverted dropout, per head): the model learns not to depend on any one of them."""
    gen = torch.Generator().manual_seed(seed)

    def drop(b: int, mine: list[int]) -> torch.Tensor:
        return (torch.rand(b, 1, len(mine), 1, generator=gen) >= p).float() / (1 - p)

    return _head_gate_hooks(model, heads, drop)


def _head_gate_hooks(model, heads, gate: Callable[[int, list[int]], torch.Tensor], fixed: bool = False) -> list:
    """Forward pre-hooks on the ``o_proj`` of each layer with some of ``heads`` ((layer, head)
    pairs) that, while the model trains, multiply those heads' outputs by ``gate(batch, heads of
    the layer)`` (shape ``(batch or 1, 1, n, 1)``). With ``fixed`` the gate does not depend on the
    batch and is built once per layer, not on every forward."""
    cfg = model.config
    n_heads, head_dim = cfg.num_attention_heads, cfg.head_dim
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def hook(mine: list[int]):
        def mask(b: int) -> torch.Tensor:
            keep = torch.ones(b, 1, n_heads, 1)
            keep[:, :, mine] = gate(b, mine)
            return keep

        built = mask(1) if fixed else None

        def pre(module, args):
            if not module.training:
                return None
            (x, *rest) = args
            b, t, _ = x.shape
            keep = built if built is not None else mask(b)
            return (x.view(b, t, n_heads, head_dim).mul(keep.to(x.dtype)).view(b, t, n_heads * head_dim), *rest)
        return pre

    return [model.model.layers[i].self_attn.o_proj.register_forward_pre_hook(hook(mine)) for i, mine in by_layer.items()]


# --- what each supervised stage trains on ---------------------------------------------------

def base_batch(recipe: dict) -> Callable[[random.Random, int], list[tuple[str, str]]]:
    """Pretraining mixture: easy and hard problems (hard eval set held out), mostly direct
    answers, a share of traces (``trace_share``, on the problem kinds in ``trace_kinds``: the
    demo's base traces easy problems only, so a trace of one line is all it knows and chaining
    lines is new to SFT). A whole batch shares one prompt style (with or without
    the instruction, see ``instruction_share``) so padding stays small."""
    held = data.held_out()
    trace_share = recipe["data"]["trace_share"]
    trace_kinds = recipe["data"].get("trace_kinds", ("easy", "hard"))
    instr_share = recipe["data"]["instruction_share"]

    def make(rng: random.Random, n: int) -> list[tuple[str, str]]:
        with_instr = rng.random() < instr_share
        rows = []
        while len(rows) < n:
            p = data.easy_problem(rng) if rng.random() < 0.5 else data.hard_problem(rng)
            if p.text in held:
                continue
            user = data.user_text(p.text, True, rng.choice(data.SEPARATORS)) if with_instr else p.text
            traced = rng.random() < trace_share and p.kind in trace_kinds
            rows.append((data.render_prompt(user), data.assistant_text(p, trace=traced)))
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
