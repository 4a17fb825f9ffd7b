"""Child process of test_memory_budget.py (and a calibration tool): builds a random Qwen2 model
of a real shape in memory, runs EAP-IG and faithfulness under each memory budget in turn, and
prints one JSON line per budget: the peak resident set above the level before the run (the
kernel's peak is reset between budgets through /proc/self/clear_refs), what the memory model
predicted, and the chunking.

    python tests/eap/memory_child.py LAYERS HIDDEN TOKENS STEPS EXAMPLES BUDGET_BYTES [BUDGET_BYTES ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def vm_hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def vm_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak() -> int:
    """Reset the kernel's peak resident set to the current one; returns the current one."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return vm_rss()


def main(layers: int, hidden: int, tokens: int, steps: int, examples: int, *budgets: int) -> None:
    import numpy as np
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sparkql.plan.sizing import faithfulness_batch, plan_chunks
    from sparkql.runtime.eap.engine import EapIg, Example
    from sparkql.runtime.eap.faithfulness import faithfulness
    from sparkql.runtime.models.adapters import FAMILIES
    from sparkql.runtime.models.loading import LoadedModel

    torch.set_num_threads(1)
    heads = hidden // 64
    cfg = Qwen2Config(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                      num_key_value_heads=max(1, heads // 4), intermediate_size=int(hidden * 2.75) // 8 * 8,
                      vocab_size=8192, max_position_embeddings=4096, initializer_range=0.05,
                      tie_word_embeddings=False, attn_implementation="eager")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).eval()
    lm = LoadedModel(ref=None, path=Path("."), model=model, tokenizer=None, adapter=FAMILIES["qwen2"],
                     config=cfg.to_dict(), device=torch.device("cpu"), dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    exs = []
    for _ in range(examples):
        clean = torch.randint(0, cfg.vocab_size, (tokens,), generator=gen)
        corrupt = clean.clone()
        corrupt[torch.randint(0, tokens, (max(1, tokens // 10),), generator=gen)] = 7
        exs.append(Example(clean.tolist(), corrupt.tolist()))
    eng = EapIg(lm)
    for budget in budgets:
        base = reset_peak()
        notes: list[str] = []
        res = eng.run(exs, steps=steps, memory=budget, log=notes.append)
        eap_peak = vm_hwm() - base
        keep = np.abs(res.scores) >= np.quantile(np.abs(res.scores[res.graph.mask]), 0.9)
        faithfulness(lm, exs, keep & res.graph.mask, "kl", res.targets, res.foils, memory=budget, log=notes.append)
        plan = plan_chunks(eng.shape, tokens, steps, examples, budget)
        print(json.dumps({"budget": budget, "peak": vm_hwm() - base, "eap_peak": eap_peak, "predicted": plan.peak,
                          "chunk_rows": res.chunk_rows, "chunks": res.n_chunks,
                          "faith_batch": faithfulness_batch(eng.shape, tokens, examples, budget), "notes": notes}),
              flush=True)
        del res


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
