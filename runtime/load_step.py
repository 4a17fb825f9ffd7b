"""Handler of ``load_model`` steps: register a model in the store.

Resolves the directory (building a zoo model on demand), reads config.json,
checks the architecture against the adapter table, and writes the ``models``
row with the model's shape. Weights are not loaded here: the steps that need
them load them once through ``ctx.models`` (and the executor releases them).
"""

from __future__ import annotations

import json

from sparkql.errors import SparkError
from sparkql.plan.steps import LoadModelSpec, Step
from sparkql.runtime.adapters import adapter_for_config, head_dim
from sparkql.runtime.context import RunContext, StepOutput


def _local_dir(path: str):
    # runtime.models imports torch; only a zoo path needs it (to build the model).
    if path.startswith("zoo:"):
        try:
            from sparkql.runtime.models import local_dir
        except ImportError as e:  # pragma: no cover - a build without the zoo
            raise SparkError(f"cannot build {path}: {e}", hint="the toy organism is not available in this build") from e
        return local_dir(path)
    from pathlib import Path

    p = Path(path)
    if not (p / "config.json").is_file():
        raise SparkError(
            f"model directory {path} has no config.json",
            hint='point `model NAME = "..."` at a local Hugging Face model directory',
        )
    return p


def run_load_model(step: Step, ctx: RunContext) -> StepOutput:
    spec: LoadModelSpec = step.spec  # type: ignore[assignment]
    ref = spec.model
    d = _local_dir(ref.path)
    try:
        config = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SparkError(f"cannot read {d / 'config.json'}: {e}") from e
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
    cfg = {**config, **text_config} if text_config else config
    adapter = adapter_for_config(cfg, where=str(d))
    row = {
        "model_id": ref.model_id,
        "name": ref.name,
        "label": ref.label,
        "path": ref.path,
        "step": ref.step,
        "architecture": (cfg.get("architectures") or [adapter.architectures[0]])[0],
        "n_layers": int(cfg["num_hidden_layers"]),
        "n_heads": int(cfg["num_attention_heads"]),
        "n_kv_heads": int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"]),
        "head_dim": head_dim(cfg),
        "hidden_size": int(cfg["hidden_size"]),
        "fingerprint": ref.fingerprint,
        "dir": str(d.resolve()),
    }
    return StepOutput(
        tables={"models": [row]},
        summary={"family": adapter.family, "layers": row["n_layers"], "heads": row["n_heads"]},
    )
