"""Quick accuracy of a zoo model on the evaluation sets (used by the build's report,
the tests and the benchmark). The study's real evaluation is the eval stack's
pass@k; this is a small, direct check with the prompt the eval stack sends for
``instruction = ""`` (the bare problem in the chat template, thinking on)."""

from __future__ import annotations

import torch

from sparkql.runtime.zoo import data


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 40, temperature: float = 0.0,
             seed: int = 0, batch_size: int = 128) -> list[str]:
    """Completions (special tokens kept, eos and padding stripped), left-padded batches."""
    model.eval()
    tokenizer.padding_side = "left"
    outs: list[str] = []
    torch.manual_seed(seed)
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i: i + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        kw = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else dict(do_sample=False)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, **kw)
        for row in gen[:, enc["input_ids"].shape[1]:]:
            ids = [t for t in row.tolist() if t not in (tokenizer.pad_token_id,)]
            if tokenizer.eos_token_id in ids:
                ids = ids[: ids.index(tokenizer.eos_token_id)]
            outs.append(tokenizer.decode(ids, skip_special_tokens=False))
    return outs


def accuracy(model, tokenizer, problems: list[data.Problem], *, temperature: float = 0.0, seed: int = 0,
             max_new_tokens: int = 40) -> dict:
    """Share of problems answered correctly, and share of completions that used a trace."""
    prompts = [data.render_prompt(p.text) for p in problems]
    comps = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    correct = [data.is_correct(c, p.answer) for c, p in zip(comps, problems)]
    return {
        "accuracy": sum(correct) / len(problems),
        "trace_share": sum(data.uses_trace(c) for c in comps) / len(problems),
        "n": len(problems),
    }


def report(model, tokenizer, n_problems: int | None = None) -> dict:
    """Greedy accuracy on the shipped easy and hard sets."""
    sets = data.eval_problems()
    return {name: accuracy(model, tokenizer, ps[:n_problems] if n_problems else ps) for name, ps in sets.items()}
