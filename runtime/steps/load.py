"""Handler of ``load_model`` steps: register a model in the store.

Resolves the directory (building a zoo model on demand), reads config.json,
checks the architecture against the adapter table, and writes the ``models``
row with the model's shape. Weights are not loaded here: the steps that need
them load them once through ``ctx.models`` (and the executor releases them).
"""

from __future__ import annotations

from sparkql.plan.steps import LoadModelSpec, Step
from sparkql.runtime.execution.context import RunContext, StepOutput
from sparkql.runtime.models.adapters import adapter_for_config
from sparkql.runtime.models.config import model_shape, read_config


def _local_dir(path: str):
    # runtime.models.loading imports torch; only a zoo path needs it (to build the model).
    if path.startswith("zoo:"):
        from sparkql.runtime.models.loading import local_dir

        return local_dir(path)
    from pathlib import Path

    return Path(path)


def run_load_model(step: Step, ctx: RunContext) -> StepOutput:
    spec: LoadModelSpec = step.spec  # type: ignore[assignment]
    ref = spec.model
    d = _local_dir(ref.path)
    # an adapter checkpoint: the shape is its base's; ``dir`` stays the checkpoint (trainer_state.json)
    cfg = read_config(_local_dir(ref.base) if ref.base else d)
    adapter = adapter_for_config(cfg, where=str(d))
    shape = model_shape(cfg, where=str(d))
    row = {
        "model_id": ref.model_id,
        "name": ref.name,
        "label": ref.label,
        "path": ref.path,
        "step": ref.step,
        "architecture": (cfg.get("architectures") or [adapter.architectures[0]])[0],
        "n_layers": shape.n_layers,
        "n_heads": shape.n_heads,
        "n_kv_heads": shape.n_kv_heads,
        "head_dim": shape.head_dim,
        "hidden_size": shape.hidden_size,
        "fingerprint": ref.fingerprint,
        "dir": str(d.resolve()),
    }
    return StepOutput(
        tables={"models": [row]},
        summary={"family": adapter.family, "layers": row["n_layers"], "heads": row["n_heads"]},
    )
