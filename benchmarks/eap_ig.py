"""EAP-IG speed and memory on a random-weight model of the Qwen2 architecture.

Prints, measured in one run (ratios: these machines are noisy):

(a) EAP-IG time / time of the bare forward+backward passes over the same
    stacked rows (examples x m steps, same chunking, same frozen weights, the
    metric's loss, no reads of activations or gradients). Goal <= 1.3 on CPU.
    EAP-IG's time includes its clean+corrupted pre-pass and every reduction.
(b) fused / unfused time (unfused: m single-row forward+backward passes per
    example with a contraction per pass, the naive algorithm). Goal: fused >= 3x
    faster on a GPU.
(c) peak memory of each phase (CUDA: max allocated; CPU: peak resident set
    sampled every 5 ms, above the level before the phase).

    python benchmarks/eap_ig.py                      # CPU default, about a minute
    python benchmarks/eap_ig.py --size 1.5b --tokens 300 --steps 100 --examples 2 --device cuda

Sizes: ``small`` (CPU default: 4 layers, hidden 256, 8 heads over 2 kv heads),
``0.5b`` and ``1.5b`` (Qwen2.5-0.5B / 1.5B shapes, bf16 on a GPU), or
``LxD`` such as ``8x512``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from pathlib import Path

import torch

SIZES = {
    "small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=8, num_key_value_heads=2,
                  intermediate_size=704, vocab_size=4096),
    "0.5b": dict(num_hidden_layers=24, hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936),
    "1.5b": dict(num_hidden_layers=28, hidden_size=1536, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960, vocab_size=151936),
}


def config_for(size: str):
    from transformers import Qwen2Config

    if size in SIZES:
        kw = dict(SIZES[size])
    else:
        n_layers, hidden = (int(x) for x in size.lower().split("x"))
        kw = dict(num_hidden_layers=n_layers, hidden_size=hidden, num_attention_heads=max(2, hidden // 64),
                  num_key_value_heads=max(1, hidden // 256), intermediate_size=int(hidden * 2.75) // 8 * 8,
                  vocab_size=8192)
    return Qwen2Config(**kw, max_position_embeddings=4096, initializer_range=0.05, tie_word_embeddings=False,
                       attn_implementation="eager")


class PeakRSS:
    """Peak resident memory (bytes) while the block runs, above the level at entry."""

    def __init__(self) -> None:
        self.peak = 0

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss() - self.base)
            time.sleep(0.005)

    def __enter__(self):
        self.base = self.rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


class Peak:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.rss = PeakRSS().__enter__()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.rss.__exit__()
            self.peak = self.rss.peak


def bare_passes(lm, examples, steps: int, rows_per_chunk: int) -> None:
    """The same rows through plain forward+backward: the floor EAP-IG is measured against."""
    model, p = lm.model, lm
    emb_layer = model.get_input_embeddings()
    rows = [(e, k) for e in examples for k in range(1, steps + 1)]
    for p_ in model.parameters():
        p_.requires_grad_(False)
    for c0 in range(0, len(rows), rows_per_chunk):
        chunk = rows[c0 : c0 + rows_per_chunk]
        S = max(len(e.clean) for e, _ in chunk)
        emb = torch.zeros(len(chunk), S, model.config.hidden_size, dtype=lm.dtype, device=lm.device)
        with torch.no_grad():
            for r, (e, k) in enumerate(chunk):
                a = emb_layer(torch.tensor(e.clean, device=lm.device))
                b = emb_layer(torch.tensor(e.corrupt, device=lm.device))
                emb[r, : len(e.clean)] = b + (k / steps) * (a - b)
        emb.requires_grad_(True)
        last = torch.tensor([len(e.clean) - 1 for e, _ in chunk], device=lm.device)
        logits = model(inputs_embeds=emb, logits_to_keep=last[:, None]).logits[:, 0]
        torch.log_softmax(logits.float(), -1).mean(-1).sum().backward()
    if lm.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--examples", type=int, default=2)
    ap.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--dtype", default=None, help="fp32 | bf16 | fp16 (default: fp32 on CPU, bf16 on a GPU)")
    ap.add_argument("--memory", default=None, help="EAP-IG memory budget, e.g. 8GiB (default: a safe share)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each phase (the best is kept)")
    ap.add_argument("--unfused", default="auto", choices=["auto", "yes", "no"],
                    help="also time the unfused path (auto: unless the model is 1.5b-sized on a CPU)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads on a CPU (default 1: on shared cores OpenMP spin-waiting "
                         "distorts small passes, and the figures are ratios; 0 keeps torch's default)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    from sparkql.runtime.adapters import FAMILIES
    from sparkql.runtime.eap_ig import EapIg, Example
    from sparkql.runtime.models import LoadedModel, resolve_device

    device = resolve_device(args.device)
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.dtype]
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    cfg = config_for(args.size)
    torch.manual_seed(0)
    from transformers import Qwen2ForCausalLM

    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype).eval()
    n_params = sum(p.numel() for p in model.parameters())
    lm = LoadedModel(ref=None, path=Path("."), model=model, tokenizer=None, adapter=FAMILIES["qwen2"],
                     config=cfg.to_dict(), device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    examples = []
    for _ in range(args.examples):
        clean = torch.randint(0, cfg.vocab_size, (args.tokens,), generator=gen)
        corrupt = clean.clone()
        pos = torch.randint(0, args.tokens, (max(1, args.tokens // 10),), generator=gen)
        corrupt[pos] = torch.randint(0, cfg.vocab_size, (len(pos),), generator=gen)
        examples.append(Example(clean.tolist(), corrupt.tolist()))
    eng = EapIg(lm)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # warm-up (allocator, nnsight source instrumentation, kernels)
    eng.run(examples[:1], steps=2, memory=args.memory)
    res = None
    t_eap, t_bare, t_unfused = [], [], []
    peaks = {}
    for _ in range(args.repeats):
        sync()
        with Peak(device) as pk:
            t0 = time.perf_counter()
            res = eng.run(examples, steps=args.steps, memory=args.memory)
            sync()
            t_eap.append(time.perf_counter() - t0)
        peaks["eap_ig"] = max(peaks.get("eap_ig", 0), pk.peak)
        with Peak(device) as pk:
            t0 = time.perf_counter()
            bare_passes(lm, examples, args.steps, res.chunk_rows)
            t_bare.append(time.perf_counter() - t0)
        peaks["bare"] = max(peaks.get("bare", 0), pk.peak)
    run_unfused = args.unfused == "yes" or (args.unfused == "auto" and not (device.type == "cpu" and n_params > 3e8))
    if run_unfused:
        with Peak(device) as pk:
            t0 = time.perf_counter()
            eng.run(examples, steps=args.steps, fused=False)
            sync()
            t_unfused.append(time.perf_counter() - t0)
        peaks["unfused"] = pk.peak

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    fig = {
        "device": gpu or f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "size": args.size, "params_M": round(n_params / 1e6, 1), "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size, "heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads,
        "dtype": str(dtype).replace("torch.", ""), "tokens": args.tokens, "steps": args.steps,
        "examples": args.examples, "edges": res.graph.n_edges, "chunk_rows": res.chunk_rows, "chunks": res.n_chunks,
        "eap_ig_s": round(min(t_eap), 3), "bare_fwd_bwd_s": round(min(t_bare), 3),
        "a_eap_over_bare": round(min(t_eap) / min(t_bare), 3),
        "seconds_per_example": round(min(t_eap) / args.examples, 3),
        "peak_mem_MiB": {k: round(v / 2**20, 1) for k, v in peaks.items()},
    }
    if t_unfused:
        fig["unfused_s"] = round(t_unfused[0], 3)
        fig["b_fused_over_unfused"] = round(min(t_eap) / t_unfused[0], 3)
        fig["b_fused_speedup"] = round(t_unfused[0] / min(t_eap), 2)
    print(f"EAP-IG benchmark on {fig['device']}: {fig['params_M']}M params "
          f"({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, {cfg.num_attention_heads}/"
          f"{cfg.num_key_value_heads} heads, {fig['dtype']}), {args.examples} examples x {args.tokens} tokens x "
          f"{args.steps} steps, {fig['edges']} edges, {res.chunk_rows} rows/chunk")
    print(f"(a) EAP-IG {fig['eap_ig_s']:.3f} s / bare forward+backward {fig['bare_fwd_bwd_s']:.3f} s "
          f"= {fig['a_eap_over_bare']:.3f}   (goal <= 1.3 on CPU)")
    if t_unfused:
        print(f"(b) fused {fig['eap_ig_s']:.3f} s / unfused {fig['unfused_s']:.3f} s = "
              f"{fig['b_fused_over_unfused']:.3f}  ({fig['b_fused_speedup']}x faster; goal >= 3x on a GPU)")
    rows = min(res.chunk_rows, args.examples * args.steps)
    fig["chunk_estimate_MiB"] = round(rows * eng.bytes_per_row(args.tokens) / 2**20, 1)
    how = "max allocated" if device.type == "cuda" else "resident set above the phase's start, sampled"
    shown = {k: (f"{v}" if v >= 1 or device.type == "cuda" else "~0 (reused memory freed by earlier phases)")
             for k, v in fig["peak_mem_MiB"].items()}
    print("(c) peak memory MiB (" + how + "): " + ", ".join(f"{k} {v}" for k, v in shown.items())
          + f"; the budget model's estimate for one chunk {fig['chunk_estimate_MiB']}")
    print(f"    {fig['seconds_per_example']:.3f} s per example")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
