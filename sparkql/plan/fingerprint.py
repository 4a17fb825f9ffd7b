"""What identifies the files a plan was made from (torch-free): the one definition, used by the
compiler when it resolves models and datasets (sparkql/lang/paths.py) and by cluster workers when
they check that they see the same files (runtime/execution/node_files.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def fingerprint_dir(d: Path) -> str:
    """config.json (or a PEFT adapter's adapter_config.json) bytes plus the names, sizes and mtimes
    of weight files: cheap, and changes when the weights are rewritten."""
    h = hashlib.sha256()
    for name in ("config.json", "adapter_config.json"):
        cfg = d / name
        if cfg.is_file():
            h.update(cfg.read_bytes())
    for f in sorted(d.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".pt") and f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(path: Path) -> str:
    """sha256 of the file's bytes (datasets are small), so an edited file is recomputed."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def zoo_fingerprint() -> str:
    """Every zoo model's fingerprint: its recipe's hash (preset and the code that trains it)."""
    from sparkql import zoo

    return zoo.recipe_hash()[:16]
