"""PEFT adapter checkpoints (LoRA and the like) merged into their base model, with the ``peft`` library.

A checkpoint that holds ``adapter_config.json`` and ``adapter_model.safetensors`` (what TRL and the
HF Trainer save when training with a ``peft_config``) is analysed as the model it stands for: the
base with the adapter folded into its weights (``merge_and_unload``). Everything downstream (EAP-IG
on the weights' module paths, o_proj column edits, generation) then sees an ordinary transformers
model, so circuits, diffs, interventions and evals work exactly as on a full checkpoint.

The merge happens in the dtype the model is loaded in; peft computes the update ``B @ A * scale`` in
float32 (it upcasts bf16/fp16 adapter weights) and adds it to the base weights, so the result is the
full-precision merge rounded once to that dtype. ``peft`` is an optional dependency
(``pip install "sparkql[peft]"``), imported only when an adapter checkpoint is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from sparkql.errors import SparkError
from sparkql.plan.steps import ModelRef

PEFT_HINT = 'install the peft extra: pip install "sparkql[peft]"'


def _peft():
    try:
        import peft
    except ImportError as e:
        raise SparkError(f"loading a PEFT adapter checkpoint needs the peft library ({e})", hint=PEFT_HINT) from None
    return peft


def merge_adapter(model: Any, adapter_dir: Path) -> Any:
    """``model`` (the base, loaded) with the adapter of ``adapter_dir`` merged into its weights; the
    returned model is a plain transformers model (no peft wrappers left)."""
    peft = _peft()
    try:
        with warnings.catch_warnings():
            # peft calls transformers APIs transformers has deprecated: noise for a sparkql user, who can
            # do nothing about it (peft's own warnings, such as missing adapter keys, still show)
            warnings.simplefilter("ignore", FutureWarning)
            wrapped = peft.PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
            merged = wrapped.merge_and_unload(safe_merge=True)
    except (RuntimeError, ValueError, KeyError) as e:
        raise SparkError(f"cannot merge the adapter of {adapter_dir} into its base model: {e}",
                         hint="is the base the model the adapter was trained on? name it with "
                              '`model NAME = "..." with base = BASE`') from e
    merged.eval()
    return merged


def base_from_adapter_config(adapter_dir: Path) -> str:
    """The base an adapter names, when it is an existing directory (``load_model`` without a base)."""
    from sparkql.runtime.models.checkpoint import read_adapter_config

    base = read_adapter_config(adapter_dir).get("base_model_name_or_path")
    if isinstance(base, str) and base and Path(base).is_dir():
        return base
    raise SparkError(f"{adapter_dir} is a PEFT adapter whose base model ({base!r}) is not a local directory",
                     hint='say which model it adapts: model NAME = "..." with base = BASE')


def tokenizer_dir(adapter_dir: Path, base_dir: Path) -> Path:
    """The adapter checkpoint's own tokenizer when the trainer saved one (TRL does), else the base's."""
    return adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir


def merged_cache_dir(ref: ModelRef) -> Path:
    """Where the merged copy of an adapter checkpoint is written for engines that load weights from
    a directory (vLLM): keyed by the fingerprint, which covers the adapter's files and the base's."""
    root = os.environ.get("SPARKQL_MERGED_DIR")
    if root:
        parent = Path(root).expanduser()
    else:
        parent = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "sparkql" / "merged"
    return parent.resolve() / f"{ref.model_id}-{ref.fingerprint}"


_NATIVE = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def materialize_merged(ref: ModelRef) -> Path:
    """A full model directory (config.json, safetensors, tokenizer) holding the adapter checkpoint
    ``ref`` merged into its base, written once (atomically: a finished directory is never partial)
    and reused. Saved in the base's own dtype, as a full checkpoint of that model would be."""
    if ref.base is None:
        raise ValueError(f"{ref.label} is not an adapter checkpoint")
    out = merged_cache_dir(ref)
    if (out / "sparkql-merged.json").is_file():
        return out
    from sparkql.runtime.models.config import read_config
    from sparkql.runtime.models.loading import load_model, local_dir

    base_dir = local_dir(ref.base)
    native = read_config(base_dir).get("dtype") or read_config(base_dir).get("torch_dtype")
    lm = load_model(ref.path, dtype=_NATIVE.get(str(native), "fp32"), device="auto", base=ref.base)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lm.model.save_pretrained(tmp, safe_serialization=True)
    lm.tokenizer.save_pretrained(tmp)
    (tmp / "sparkql-merged.json").write_text(json.dumps({"adapter": ref.path, "base": ref.base,
                                                         "fingerprint": ref.fingerprint}, indent=2))
    try:
        tmp.rename(out)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return out
