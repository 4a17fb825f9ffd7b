"""EAP-IG speed and memory on a random-weight model of the Qwen2 architecture.

Prints, measured in one run (ratios: these machines are noisy):

(a) EAP-IG time / time of the bare forward+backward passes over the same
    stacked rows (examples x m steps, same chunking, same frozen weights, the
    metric's loss, no reads of activations or gradients). Goal <= 1.3 on CPU.
    EAP-IG's time includes its clean+corrupted pre-pass and every reduction.
(b) fused / unfused time (unfused: m single-row forward+backward passes per
    example with a contraction per pass, the naive algorithm). Goal: fused >= 3x
    faster on a GPU.
(c) peak memory of each phase (CUDA: max allocated above the level before it;
    CPU: peak resident set of the phase run alone in a fresh process, above the
    level once the model is built).
(d) with --budgets 0.5,1,2 (GiB): EAP-IG and faithfulness under each memory
    budget, each in a fresh process: measured peak against the budget and the
    memory model's prediction (sparkql/plan/sizing.py), rows per chunk.
(e) faithfulness's cost in bare forward passes over the same prompts (clean
    batch, no gradients): the patched forward runs a clean, a corrupted and a
    patched pass per example.

--steps takes a list (``--steps 20,50``): (a) is printed for each m.

    python benchmarks/eap_ig.py                      # CPU default, about a minute
    python benchmarks/eap_ig.py --size 1.5b --tokens 300 --steps 100 --examples 2 --device cuda
    python benchmarks/eap_ig.py --size 0.5b --tokens 32 --steps 20,50 --examples 1 --repeats 1 --budgets 0.5,1,2

Sizes: ``small`` (CPU default: 4 layers, hidden 256, 8 heads over 2 kv heads),
``0.5b`` and ``1.5b`` (Qwen2.5-0.5B / 1.5B shapes, bf16 on a GPU), ``1b`` (Llama-3.2-1B's
dimensions), or
``LxD`` such as ``8x512``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

SIZES = {
    "small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=8, num_key_value_heads=2,
                  intermediate_size=704, vocab_size=4096),
    "0.5b": dict(num_hidden_layers=24, hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936),
    # Llama-3.2-1B's dimensions on the Qwen2 architecture (q/k/v biases aside, the same tensors)
    "1b": dict(num_hidden_layers=16, hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=128256),
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


class Peak:
    """Peak CUDA memory allocated while the block runs, above the level at entry."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base


def vm_hwm() -> int:
    """This process's peak resident set (bytes), from /proc: unlike ru_maxrss it is not inherited
    from the parent across fork+exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_phase_peak(phase: str, chunk_rows: int) -> int:
    """Peak resident memory (bytes) of one phase, measured in a fresh process (peak RSS after the
    phase minus peak RSS once the model is built): in-process measurements are useless on a CPU,
    where a later phase reuses heap an earlier one freed."""
    import subprocess
    import sys

    argv = [a for a in sys.argv[1:]]
    if "--json" in argv:
        i = argv.index("--json")
        del argv[i : i + 2]
    out = subprocess.run([sys.executable, __file__, *argv, "--phase", phase, "--chunk-rows", str(chunk_rows)],
                         capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak"])


def bare_passes(lm, examples, steps: int, rows_per_chunk: int) -> None:
    """The same rows through plain forward+backward: the floor EAP-IG is measured against."""
    from sparkql.runtime.eap.engine import last_logits_args

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
        keep, pick = last_logits_args(last)
        logits = model(inputs_embeds=emb, logits_to_keep=keep).logits[pick]
        torch.log_softmax(logits.float(), -1).mean(-1).sum().backward()
    if lm.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--steps", default="20", help="IG steps m; a list (20,50) times (a) for each")
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
    ap.add_argument("--budgets", default=None, help="GiB budgets for (d), e.g. 0.5,1,2 (each in a fresh process)")
    ap.add_argument("--phase", default=None, choices=["eap_ig", "bare", "unfused", "budget"], help=argparse.SUPPRESS)
    ap.add_argument("--chunk-rows", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    all_steps = [int(x) for x in str(args.steps).split(",")]
    args.steps = all_steps[0]

    from sparkql.runtime.models.adapters import FAMILIES
    from sparkql.runtime.eap.engine import EapIg, Example
    from sparkql.runtime.models.loading import LoadedModel, resolve_device

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

    # On a CPU the ratios use this process's CPU time (one torch thread), which other jobs on a
    # shared machine disturb far less than wall time; on a GPU, wall time after synchronizing.
    clock = time.process_time if device.type == "cpu" else time.perf_counter

    if args.phase == "budget":  # (d): EAP-IG then faithfulness under a budget, peak above the built model
        import numpy as np

        from sparkql.plan.sizing import plan_chunks
        from sparkql.runtime.eap.faithfulness import faithfulness

        budget = int(float(args.memory) * 2**30)
        base = vm_hwm()
        r = eng.run(examples, steps=args.steps, memory=budget)
        keep = np.abs(r.scores) >= np.quantile(np.abs(r.scores[r.graph.mask]), 0.95)
        faithfulness(lm, examples, keep & r.graph.mask, "kl", r.targets, r.foils, memory=budget)
        pred = plan_chunks(eng.shape, args.tokens, args.steps, len(examples), budget).peak
        print(json.dumps({"peak": vm_hwm() - base, "predicted": pred, "rows": r.chunk_rows, "chunks": r.n_chunks}))
        return
    if args.phase:  # a memory-measuring child process (CPU)
        base = vm_hwm()
        if args.phase == "eap_ig":
            eng.run(examples, steps=args.steps, chunk_rows=args.chunk_rows)
        elif args.phase == "bare":
            bare_passes(lm, examples, args.steps, args.chunk_rows)
        else:
            eng.run(examples, steps=args.steps, fused=False)
        print(json.dumps({"peak": vm_hwm() - base}))
        return

    # warm-up (allocator, nnsight source instrumentation, kernels)
    eng.run(examples[:1], steps=2, memory=args.memory)
    res = None
    t_eap, t_bare, t_unfused = [], [], []
    peaks = {}
    for _ in range(args.repeats):
        sync()
        with Peak(device) as pk:
            t0 = clock()
            res = eng.run(examples, steps=args.steps, memory=args.memory)
            sync()
            t_eap.append(clock() - t0)
        peaks["eap_ig"] = max(peaks.get("eap_ig", 0), pk.peak)
        with Peak(device) as pk:
            t0 = clock()
            bare_passes(lm, examples, args.steps, res.chunk_rows)
            t_bare.append(clock() - t0)
        peaks["bare"] = max(peaks.get("bare", 0), pk.peak)
    run_unfused = args.unfused == "yes" or (args.unfused == "auto" and not (device.type == "cpu" and n_params > 3e8))
    if run_unfused:
        with Peak(device) as pk:
            t0 = clock()
            eng.run(examples, steps=args.steps, fused=False)
            sync()
            t_unfused.append(clock() - t0)
        peaks["unfused"] = pk.peak

    if device.type == "cpu":
        peaks = {ph: cpu_phase_peak(ph, res.chunk_rows) for ph in ["eap_ig", "bare"] + (["unfused"] if t_unfused else [])}
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    fig = {
        "device": gpu or f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "size": args.size, "params_M": round(n_params / 1e6, 1), "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size, "heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads,
        "dtype": str(dtype).replace("torch.", ""), "tokens": args.tokens, "steps": args.steps,
        "examples": args.examples, "edges": res.graph.n_edges, "chunk_rows": res.chunk_rows, "chunks": res.n_chunks,
        "clock": "process CPU time" if device.type == "cpu" else "wall time",
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
          f"{args.steps} steps, {fig['edges']} edges, {res.chunk_rows} rows/chunk; times are {fig['clock']}")
    print(f"(a) EAP-IG {fig['eap_ig_s']:.3f} s / bare forward+backward {fig['bare_fwd_bwd_s']:.3f} s "
          f"= {fig['a_eap_over_bare']:.3f}   (goal <= 1.3 on CPU)")
    if t_unfused:
        print(f"(b) fused {fig['eap_ig_s']:.3f} s / unfused {fig['unfused_s']:.3f} s = "
              f"{fig['b_fused_over_unfused']:.3f}  ({fig['b_fused_speedup']}x faster; goal >= 3x on a GPU)")
    rows = min(res.chunk_rows, args.examples * args.steps)
    fig["chunk_estimate_MiB"] = round(rows * eng.bytes_per_row(args.tokens) / 2**20, 1)
    how = "max allocated" if device.type == "cuda" else "peak resident set of the phase in a fresh process"
    print("(c) peak memory MiB (" + how + "): " + ", ".join(f"{k} {v}" for k, v in fig["peak_mem_MiB"].items())
          + f"; the budget model's estimate for one chunk {fig['chunk_estimate_MiB']}")
    print(f"    {fig['seconds_per_example']:.3f} s per example")
    # (a) at the other m
    fig["a_by_steps"] = {str(args.steps): fig["a_eap_over_bare"]}
    for m in all_steps[1:]:
        te, tb = [], []
        for _ in range(args.repeats):
            sync()
            t0 = clock()
            r = eng.run(examples, steps=m, memory=args.memory)
            sync()
            te.append(clock() - t0)
            t0 = clock()
            bare_passes(lm, examples, m, r.chunk_rows)
            sync()
            tb.append(clock() - t0)
        fig["a_by_steps"][str(m)] = round(min(te) / min(tb), 3)
        print(f"(a) m = {m}: EAP-IG {min(te):.3f} s / bare forward+backward {min(tb):.3f} s = "
              f"{fig['a_by_steps'][str(m)]:.3f}   ({r.chunk_rows} rows/chunk, {r.n_chunks} chunks)")
    # (e) faithfulness in bare forward passes
    import numpy as np

    from sparkql.runtime.eap.faithfulness import faithfulness

    keep = np.abs(res.scores) >= np.quantile(np.abs(res.scores[res.graph.mask]), 0.95)
    tf, tfw = [], []
    ids = torch.tensor([e.clean for e in examples], device=device)
    for _ in range(args.repeats):
        sync()
        t0 = clock()
        faithfulness(lm, examples, keep & res.graph.mask, "kl", res.targets, res.foils, memory=args.memory)
        sync()
        tf.append(clock() - t0)
        t0 = clock()
        with torch.no_grad():
            model(input_ids=ids, logits_to_keep=1)
        sync()
        tfw.append(clock() - t0)
    fig["e_faithfulness_in_forward_passes"] = round(min(tf) / min(tfw), 2)
    print(f"(e) faithfulness {min(tf):.3f} s = {fig['e_faithfulness_in_forward_passes']} bare forward passes over the "
          f"same prompts (goal <= 3)")
    # (d) budgets, each in a fresh process
    if args.budgets:
        import subprocess
        import sys

        argv = [a for a in sys.argv[1:]]
        for flag in ("--json", "--budgets", "--memory"):
            if flag in argv:
                i = argv.index(flag)
                del argv[i : i + 2]
        fig["d_budgets"] = {}
        for b in args.budgets.split(","):
            out = subprocess.run([sys.executable, __file__, *argv, "--phase", "budget", "--memory", b],
                                 capture_output=True, text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            fig["d_budgets"][b] = got
            print(f"(d) budget {b} GiB: peak {got['peak'] / 2**20:.0f} MiB ({got['peak'] / (float(b) * 2**30):.2f} of "
                  f"the budget), predicted {got['predicted'] / 2**20:.0f} MiB, {got['rows']} rows/chunk, "
                  f"{got['chunks']} chunks")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
