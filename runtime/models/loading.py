"""Loading models from local Hugging Face directories, once per run.

Never downloads: ``local_files_only`` is always set, and ``trust_remote_code``
stays off unless the study sets it. Attention is ``eager`` so that gradient
passes see every attention op (sdpa hides them from hooks in some versions).
"""

from __future__ import annotations

import contextlib
import pickle
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import torch

from sparkql.errors import SparkError
from sparkql.plan.steps import ModelRef, ModelShape
from sparkql.runtime.models.adapters import Adapter, adapter_for_config
from sparkql.runtime.models.config import model_shape, read_config
from sparkql.runtime.models.weights import check_weight_files

DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SparkError("set device = cuda, but no CUDA device is available", hint="use `set device = auto` or `cpu`")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    from sparkql.runtime.models.device import concrete_dtype

    return DTYPES[concrete_dtype(dtype, device.type)]


def local_dir(path: str) -> Path:
    """The directory of a model path; ``zoo:`` paths are built on demand."""
    if path.startswith("zoo:"):
        from sparkql.runtime.zoo import ensure_zoo  # heavy, only when a zoo model is named

        return Path(ensure_zoo(path))
    p = Path(path)
    if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
        raise SparkError(f"model directory {path} has no config.json",
                         hint="point `model NAME = \"...\"` at a local Hugging Face model directory (or a PEFT adapter checkpoint)")
    return p


@dataclass
class LoadedModel:
    ref: ModelRef | None
    path: Path
    model: Any
    """A transformers *ForCausalLM in eval mode."""
    tokenizer: Any
    adapter: Adapter
    config: dict
    device: torch.device
    dtype: torch.dtype

    @cached_property
    def shape(self) -> ModelShape:
        return model_shape(self.config, where=str(self.path))

    @property
    def n_layers(self) -> int:
        return self.shape.n_layers

    @property
    def n_heads(self) -> int:
        return self.shape.n_heads

    @property
    def n_kv_heads(self) -> int:
        return self.shape.n_kv_heads

    @property
    def head_dim(self) -> int:
        return self.shape.head_dim

    def module(self, part: str, layer: int | None = None) -> torch.nn.Module:
        return self.model.get_submodule(self.adapter.path(part, layer))


def load_model(path: str | Path, dtype: str = "auto", device: str = "auto", ref: ModelRef | None = None,
               trust_remote_code: bool = False, base: str | None = None) -> LoadedModel:
    """Load a model directory; a PEFT adapter checkpoint (``base`` given, or ``path`` holding
    adapter_config.json and no config.json) is loaded as the adapter merged into its base."""
    d = local_dir(str(path))
    if base is None and not (d / "config.json").is_file():
        from sparkql.runtime.models.lora import base_from_adapter_config

        base = base_from_adapter_config(d)
    weights = local_dir(base) if base is not None else d
    config = read_config(weights)
    adapter = adapter_for_config(config, where=str(weights))
    check_weight_files(weights)
    if weights != d:
        check_weight_files(d)  # the adapter's own safetensors
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    with quiet_transformers():
        return _load(ref, d, weights, base, config, adapter, dev, dt, trust_remote_code)


# For steps, which may not import torch themselves (tests/test_layering.py): what a load or a
# forward pass raises when the device's memory is full, and how to give a freed model's memory back.
OutOfMemory = torch.OutOfMemoryError


def free_memory() -> None:
    """Collect the models just dropped and hand their cached GPU memory back to the driver."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" bars from transformers while we load: printed to stderr, they land in
    the middle of the run's step lines (in a log file, as carriage-return garbage). Restored after,
    so a notebook that imported sparkql keeps its own setting."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _load(ref, d: Path, weights: Path, base, config, adapter, dev, dt, trust_remote_code: bool) -> "LoadedModel":
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(
            weights, dtype=dt, attn_implementation="eager", local_files_only=True, trust_remote_code=trust_remote_code
        )
        if base is not None:
            from sparkql.runtime.models.lora import merge_adapter

            model = merge_adapter(model, d)
    except torch.OutOfMemoryError as e:  # pragma: no cover - GPU only
        raise SparkError(f"out of memory loading {d}", hint="use a smaller dtype (`set dtype = bf16`) or `set device = cpu`") from e
    except pickle.UnpicklingError as e:
        raise _refused(weights, e) from None
    except _LOAD_ERRORS as e:
        raise _cannot_load(d, "the model", e) from None
    model.to(dev)
    model.eval()
    if ref is not None and ref.tokenizer is not None:  # `with tokenizer = ...`: a checkpoint saved without one
        tok_dir = local_dir(ref.tokenizer)
    elif base is not None:
        from sparkql.runtime.models.lora import tokenizer_dir

        tok_dir = tokenizer_dir(d, weights)
    else:
        tok_dir = d
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    except _LOAD_ERRORS as e:
        raise _cannot_load(d, "the tokenizer", e) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(ref=ref, path=d, model=model, tokenizer=tokenizer, adapter=adapter, config=config, device=dev, dtype=dt)


# What transformers raises for a directory it cannot make a model of: a missing or unreadable
# weight file (OSError), a config value of the wrong type (ValueError, TypeError; huggingface_hub's
# strict-dataclass errors are ValueErrors), weights of the wrong shape (RuntimeError), a damaged
# safetensors file (SafetensorError, an OSError subclass in recent versions, caught by name otherwise).
_LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, TypeError, KeyError, RuntimeError)
try:
    from safetensors import SafetensorError

    _LOAD_ERRORS += (SafetensorError,)
except ImportError:  # pragma: no cover
    pass


def _cannot_load(d: Path, what: str, e: BaseException) -> SparkError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return SparkError(f"cannot load {what} in {d}: {first}",
                      hint="the directory must hold a complete Hugging Face model (config.json, weights, tokenizer) "
                      "that this version of transformers reads")


def _refused(d: Path, e: BaseException) -> SparkError:
    """torch's weights-only unpickler met something that is not a tensor, a number or a container."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    what = f"it asks to import {found.group(1)}" if found else "it holds Python objects that are not weights"
    files = ", ".join(sorted(p.name for p in d.glob("*.bin"))) or "a .bin file"
    return SparkError(f"refused to load {d}/{files}: torch's weights-only loader rejected it ({what}); "
                      "nothing in the file was run",
                      hint="a pickle checkpoint can run code when loaded; use a safetensors copy of the model "
                      "(model.safetensors), converted by someone you trust")


class ModelCache:
    """Loads each (model, dtype, device) once per run; the executor releases models no later step needs."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], LoadedModel] = {}

    def get(self, ref: ModelRef, dtype: str = "auto", device: str = "auto") -> LoadedModel:
        k = (ref.model_id, dtype, device)
        if k not in self._cache:
            self._cache[k] = load_model(ref.path, dtype, device, ref=ref, base=ref.base,
                                        trust_remote_code=ref.trust_remote_code)
        return self._cache[k]

    def release(self, model_id: str) -> None:
        for k in [k for k in self._cache if k[0] == model_id]:
            del self._cache[k]
        if torch.cuda.is_available():  # pragma: no cover - GPU only
            torch.cuda.empty_cache()

    def loaded(self) -> list[str]:
        return sorted({k[0] for k in self._cache})
