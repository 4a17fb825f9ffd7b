"""Checks on a model directory's weight files before the loader reads them (torch-free).

The loader calls :func:`check_weight_files` before transformers reads the weights, so that a
damaged copy fails with a message that says what is wrong (the ``load_model`` step reads only
config.json: plans are tested with config-only model directories).
"""

from __future__ import annotations

import json
from pathlib import Path

from sparkql.errors import SparkError


def check_weight_files(d: Path) -> None:
    """Each ``*.safetensors`` file must hold what its header promises. A copy cut short (a failed
    download, a full disk) otherwise fails deep inside the loader; here the header (a few KB) is read
    and its largest tensor end compared with the file size."""
    for f in sorted(d.glob("*.safetensors")):
        size = f.stat().st_size
        try:
            with f.open("rb") as fh:
                head = fh.read(8)
                n = int.from_bytes(head, "little") if len(head) == 8 else -1
                header = json.loads(fh.read(n)) if 0 < n <= size - 8 else None
        except (OSError, ValueError) as e:
            raise SparkError(f"cannot read {f}: {e}", hint="copy the model again (sparkql never downloads)") from None
        if not isinstance(header, dict):
            raise SparkError(f"{f} is damaged or truncated: its {size} bytes do not start with a safetensors header",
                             hint="copy the model again (sparkql never downloads)")
        ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
        need = 8 + n + max(ends, default=0)
        if need > size:
            raise SparkError(f"{f} is truncated: its header describes {need} bytes, the file holds {size}",
                             hint="the copy or download was cut short; copy the model again (sparkql never downloads)")
