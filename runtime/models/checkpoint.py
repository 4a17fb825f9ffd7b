"""What a checkpoint directory holds, read without torch: a full model, a PEFT adapter, or nothing
loadable; and its ``trainer_state.json`` training log.

The compiler checks every member of a series here (``sparkql check`` says which checkpoint cannot
be loaded, before hours of circuits), and reads the training logs to find leftovers of an earlier
run in the same ``output_dir``. The cohort step reads the same logs for the reward curve. Torch-free:
the compiler path imports this module.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from sparkql.errors import SparkError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TRAINER_STATE = "trainer_state.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt", "tokenizer.tiktoken")
"""Any of these makes a directory's tokenizer loadable; without them transformers 5 builds an
empty tokenizer, and every prompt would encode to nothing."""


def has_tokenizer(d: Path) -> bool:
    return any((Path(d) / f).is_file() for f in TOKENIZER_FILES)

# PEFT methods that add virtual tokens or route between adapters: nothing to fold into the weights,
# so such a checkpoint is not a model sparkql can analyse. Every other method peft knows is merged
# with ``merge_and_unload`` (LoRA, AdaLoRA, LoHa, LoKr, IA3, OFT, BOFT, VeRA, ...).
NOT_MERGEABLE = {"PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADAPTION_PROMPT",
                 "CPT", "POLY", "XLORA"}


@dataclass(frozen=True)
class CheckpointKind:
    kind: str
    """``full`` (config.json and weights) or ``adapter`` (adapter_config.json and adapter weights)."""
    base: str | None = None
    """An adapter's ``base_model_name_or_path`` as written (None when the file names none)."""
    peft_type: str | None = None


_WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _full_weights(d: Path) -> bool:
    # training_args.bin, optimizer.pt, rng_state.pth sit beside the weights in a Trainer checkpoint:
    # only the model's own files count. The usual names first (a stat each, cheap over 200
    # checkpoints), then any other *.safetensors (consolidated.safetensors, ...).
    base = str(d)
    if any(os.path.isfile(os.path.join(base, n)) for n in _WEIGHT_NAMES):
        return True
    for f in d.iterdir():
        name = f.name
        if name.startswith("adapter_model."):
            continue
        if name.endswith(".safetensors") or name in ("model.safetensors.index.json", "pytorch_model.bin.index.json") \
                or (name.startswith("pytorch_model") and name.endswith(".bin")):
            return True
    return False


def read_adapter_config(d: Path) -> dict:
    f = Path(d) / ADAPTER_CONFIG
    try:
        cfg = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SparkError(f"cannot read {f}: {e}", hint="adapter_config.json must be a JSON object (as peft writes it)") from e
    if not isinstance(cfg, dict):
        raise SparkError(f"{f} is not a JSON object", hint="adapter_config.json must be a JSON object (as peft writes it)")
    return cfg


def checkpoint_kind(d: Path) -> CheckpointKind:
    """A loadable model directory's kind; SparkError when the directory is neither a full model nor
    a mergeable adapter. Its message is the reason, to follow the directory's name
    (``checkpoint-300 has neither config.json nor ...``); callers add the name and the location."""
    d = Path(d)
    has_config = (d / "config.json").is_file()
    has_adapter = (d / ADAPTER_CONFIG).is_file()
    if has_config and _full_weights(d):
        return CheckpointKind("full")
    if has_adapter:
        if not any((d / w).is_file() for w in ADAPTER_WEIGHTS):
            raise SparkError(f"has adapter_config.json but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})",
                             hint="a checkpoint still being written? wait for the save to finish, or leave it out")
        cfg = read_adapter_config(d)
        peft_type = str(cfg.get("peft_type") or "LORA").upper()
        if peft_type in NOT_MERGEABLE:
            raise SparkError(f"is a {peft_type} adapter, which adds prompt tokens instead of changing weights",
                             hint="sparkql merges weight adapters (LoRA and the like) into their base; "
                                  "prompt-learning adapters have nothing to merge")
        base = cfg.get("base_model_name_or_path")
        return CheckpointKind("adapter", base=str(base) if isinstance(base, str) and base else None, peft_type=peft_type)
    if has_config:
        raise SparkError(f"has config.json but no weights (model.safetensors or pytorch_model.bin)",
                         hint="a checkpoint still being written? wait for the save to finish, or leave it out")
    raise SparkError("has neither config.json nor adapter_config.json",
                     hint="a model directory holds config.json and weights (a full model) or adapter_config.json and "
                          "adapter_model.safetensors (a LoRA/PEFT adapter)")


# --------------------------------------------------------------------------- training logs


def read_trainer_state(d: Path | None) -> dict | None:
    """``trainer_state.json`` of a checkpoint directory (None when absent or unreadable)."""
    if d is None:
        return None
    p = Path(d) / TRAINER_STATE
    try:
        # NaN and Infinity (a diverged grad_norm) stay the strings Python's json wrote: a NaN float
        # would not equal itself when two checkpoints' logs are compared, and is no reward anyway
        state = json.loads(p.read_text(), parse_constant=str)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def log_history(state: dict | None) -> list[dict]:
    hist = (state or {}).get("log_history") or []
    return [e for e in hist if isinstance(e, dict)] if isinstance(hist, list) else []


def read_log_history(d: Path | None) -> list[dict]:
    """``log_history`` of a checkpoint directory ([] when it has no trainer_state.json)."""
    return log_history(read_trainer_state(d))


def numeric_items(entry: dict):
    """The logged numbers of one log entry (not its step or epoch)."""
    for k, v in entry.items():
        if k in ("step", "epoch") or isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            yield k, float(v)


def logged_keys(histories: list[list[dict]]) -> set[str]:
    return {k for hist in histories for e in hist for k, _ in numeric_items(e)}


@dataclass
class SeriesLog:
    """How a series' checkpoints relate through their training logs."""

    reference: str | None = None
    """The checkpoint whose run the series is taken to be (its trainer_state.json was written last)."""
    foreign: list[str] = field(default_factory=list)
    """Checkpoints whose log is not a prefix (or an extension) of the reference's: another run's."""
    missing: list[str] = field(default_factory=list)
    """Checkpoints without a trainer_state.json while others have one."""
    keys: set[str] | None = None
    """Every numeric key logged (None: no checkpoint has a trainer_state.json)."""


def _prefix(a: list[dict], b: list[dict]) -> bool:
    return len(a) <= len(b) and b[: len(a)] == a


def series_log(members: list[tuple[str, Path]]) -> SeriesLog:
    """Leftovers and gaps of a series of (name, directory), in step order.

    HF Trainer (and so TRL) appends to ``log_history`` and writes the whole history into every
    checkpoint, so within one run each checkpoint's log is a prefix of every later one's (a resumed
    run keeps the history it resumed from). A second run into the same ``output_dir`` overwrites the
    checkpoints it reaches and leaves the first run's later ones: their logs diverge. The series is
    taken to be the run of the checkpoint whose trainer_state.json was written last (the newest run;
    ties: the last checkpoint), and every checkpoint whose log neither extends nor is extended by
    that one's is named as foreign."""
    logs: list[tuple[str, list[dict], int]] = []
    missing: list[str] = []
    keys: set[str] = set()
    for name, d in members:
        p = Path(d) / TRAINER_STATE
        state = read_trainer_state(d)
        if state is None:
            missing.append(name)
            continue
        hist = log_history(state)
        keys |= logged_keys([hist])
        logs.append((name, hist, p.stat().st_mtime_ns))
    out = SeriesLog(missing=missing if logs else [], keys=keys if logs else None)
    if not logs:
        return out
    ref_i = max(range(len(logs)), key=lambda i: (logs[i][2], i))
    ref = logs[ref_i][1]
    out.reference = logs[ref_i][0]
    out.foreign = [name for name, hist, _ in logs if not (_prefix(hist, ref) or _prefix(ref, hist))]
    return out
