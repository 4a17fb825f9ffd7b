"""The toy model organism (docs/toy.md): tokenizer, tiny Qwen2, base/SFT/GRPO training.

Modules: :mod:`.data` (synthetic arithmetic, torch-free), :mod:`.train` (model,
supervised loop, HF checkpoints), :mod:`.grpo` (GRPO loop), :mod:`.evaluate`
(quick accuracy), :mod:`.build` (the build, its lock and cache). The layout and
recipe (torch-free, read by the compiler) live in :mod:`sparkql.zoo`.
"""

from __future__ import annotations

from pathlib import Path


def ensure_zoo(path: str) -> Path:
    """Local directory of a ``zoo:`` path, building the zoo first when it is missing."""
    from sparkql.runtime.zoo.build import ensure_zoo as _ensure

    return _ensure(path)


def build_zoo(out_dir=None, preset: str | None = None, force: bool = False, log=print) -> dict:
    """Build the zoo (see :func:`sparkql.runtime.zoo.build.build_zoo`); returns its manifest."""
    from sparkql.runtime.zoo.build import build_zoo as _build

    return _build(out_dir, preset=preset, force=force, log=log)
