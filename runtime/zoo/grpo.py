"""GRPO (Shao et al. 2024, DeepSeekMath) with a verifiable correctness reward, as a
small hand-written loop.

Per step: draw ``prompts`` problems, sample a group of ``group`` completions for
each at ``temperature``, reward each completion 1 if its boxed answer (after
``</think>``) is right and 0 otherwise, and normalise rewards within the group
(advantage = (r - mean) / (std + 1e-4), TRL's default ``scale_rewards``). One
policy-gradient update per batch of samples (fully on-policy, so the clipped
importance ratio of PPO is 1 and the objective reduces to advantage-weighted
log-likelihood), averaged over completion tokens (TRL's token-level
``dapo``/``bnpo`` normalisation), no KL term (TRL's default ``beta = 0``).

``trainer_state.json`` gets the keys TRL's GRPOTrainer logs (``reward``,
``reward_std``, ``rewards/accuracy_reward/mean``, ``completions/mean_length``,
``frac_reward_zero_std``, ``entropy``, ``loss`` ...) plus
``completions/trace_share``: the share of completions that reasoned inside
``<think>``, which is what GRPO learns to do more of here.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

import torch

from sparkql.runtime.zoo import data
from sparkql.runtime.zoo.train import lr_at, save_hf, write_trainer_state


def _batch_problems(rng: random.Random, n: int, held: set[str]) -> list[data.Problem]:
    out = []
    while len(out) < n:
        p = data.hard_problem(rng) if rng.random() < 0.75 else data.easy_problem(rng)
        if p.text not in held:
            out.append(p)
    return out


def grpo(model, tokenizer, cfg: dict, *, seed: int, instruction_share: float, out_dir: Path | None = None,
         on_log: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model`` in place with GRPO; checkpoints every ``cfg['save_every']`` steps.
    Returns the log history."""
    rng = random.Random(seed)
    held = data.held_out()
    steps, n_prompts, group = cfg["steps"], cfg["prompts"], cfg["group"]
    temperature, max_new = cfg["temperature"], cfg["max_new_tokens"]
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    tokenizer.padding_side = "left"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=0.0)
    history: list[dict] = []
    n_tokens = 0
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, cfg["lr"], warmup=max(1, steps // 20))
        problems = _batch_problems(rng, n_prompts, held)
        with_instr = rng.random() < instruction_share
        prompts = [
            data.render_prompt(data.user_text(p.text, True, rng.choice(data.SEPARATORS)) if with_instr else p.text)
            for p in problems
        ]
        # --- sample a group per prompt (rows i*group .. i*group+group-1 belong to problem i)
        enc = tokenizer([pr for pr in prompts for _ in range(group)], return_tensors="pt", padding=True,
                        add_special_tokens=False)
        model.eval()
        torch.manual_seed(seed * 100_003 + step)
        with torch.no_grad():
            seqs = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                  max_new_tokens=max_new, eos_token_id=eos, pad_token_id=pad)
        plen = enc["input_ids"].shape[1]
        comp = seqs[:, plen:]
        # completion mask: every token up to and including the first eos
        is_eos = comp == eos
        after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0
        cmask = (~after_eos).long()
        lengths = cmask.sum(1)
        texts = [tokenizer.decode(row[: int(n)][:-1] if bool(e) else row[: int(n)], skip_special_tokens=False)
                 for row, n, e in zip(comp, lengths, is_eos.any(1))]
        rewards = torch.tensor([float(data.is_correct(t, problems[i // group].answer)) for i, t in enumerate(texts)])
        # --- group-normalised advantages
        r = rewards.view(n_prompts, group)
        mean, std = r.mean(1, keepdim=True), r.std(1, keepdim=True)
        adv = ((r - mean) / (std + 1e-4)).view(-1)
        # --- policy gradient on the sampled tokens
        model.train()
        attn = torch.cat([enc["attention_mask"], cmask], dim=1)
        pos = (attn.cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=seqs, attention_mask=attn, position_ids=pos).logits[:, plen - 1: -1]
        logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
        logp = logp_all.gather(-1, comp.unsqueeze(-1)).squeeze(-1)
        m = cmask.float()
        loss = -((adv.unsqueeze(1) * logp) * m).sum() / m.sum()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            entropy = float((-(logp_all.exp() * logp_all).sum(-1) * m).sum() / m.sum())
        n_tokens += int(attn.sum())
        done = step + 1
        entry = {
            "loss": round(float(loss.detach()), 6),
            "grad_norm": round(float(grad_norm), 6),
            "learning_rate": opt.param_groups[0]["lr"],
            "num_tokens": float(n_tokens),
            "completions/mean_length": round(float(lengths.float().mean()), 4),
            "completions/min_length": float(lengths.min()),
            "completions/max_length": float(lengths.max()),
            "completions/clipped_ratio": round(float((~is_eos.any(1)).float().mean()), 4),
            "completions/trace_share": round(sum(data.uses_trace(t) for t in texts) / len(texts), 4),
            "rewards/accuracy_reward/mean": round(float(rewards.mean()), 6),
            "rewards/accuracy_reward/std": round(float(rewards.std()), 6),
            "reward": round(float(rewards.mean()), 6),
            "reward_std": round(float(std.mean()), 6),
            "frac_reward_zero_std": round(float((std.view(-1) == 0).float().mean()), 4),
            "entropy": round(entropy, 6),
            "epoch": round(done / steps, 4),
            "step": done,
        }
        history.append(entry)
        if on_log:
            on_log({**entry, "elapsed_s": round(time.time() - t0, 1)})
        if out_dir is not None and (done % cfg["save_every"] == 0 or done == steps):
            model.eval()
            ck = out_dir / f"checkpoint-{done}"
            save_hf(model, tokenizer, ck)
            write_trainer_state(ck, step=done, max_steps=steps, log_history=history, save_every=cfg["save_every"],
                                batch_size=n_prompts * group,
                                extra={"num_generations": group, "reward_funcs": ["accuracy_reward"]})
    model.eval()
    return history
