"""Which device and dtype a step runs in, decided without torch (the compiler path imports it).

``dtype = auto`` means bf16 on a GPU and fp32 on a CPU. The compiler resolves it here, before
a circuit's scores are keyed, so a result computed in fp32 on a CPU is never reused by a bf16
GPU run (and vice versa); the loader applies the same rule (``loading.resolve_dtype``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def gpu_present() -> bool:
    """An NVIDIA GPU is visible, checked without importing torch when torch is not loaded yet."""
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def concrete_device(device: str = "auto") -> str:
    """``cpu`` or ``cuda``: ``auto`` is the GPU when one is visible."""
    if device in ("cpu", "cuda"):
        return device
    return "cuda" if gpu_present() else "cpu"


def concrete_dtype(dtype: str, device: str = "auto") -> str:
    """``auto`` -> ``bf16`` on a GPU, ``fp32`` on a CPU; any other name is returned as is."""
    if dtype != "auto":
        return dtype
    return "bf16" if concrete_device(device) == "cuda" else "fp32"
