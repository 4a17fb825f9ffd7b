"""The one reader of a model's ``config.json``: the raw dict and the shape derived from it.

The compiler (``sparkql check``: head indices against the model's shape), the ``load_model`` step
(the ``models`` row), interventions and generation all read a model's shape here, so a
malformed config fails the same way everywhere. Torch-free: the compiler path imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from sparkql.errors import SparkError
from sparkql.plan.steps import ModelShape
from sparkql.runtime.models.adapters import head_dim


def read_config(model_dir: str | Path) -> dict:
    """``config.json`` of a model directory as a dict. A multimodal config's ``text_config`` is
    merged over the top level (the language model's shape lives there)."""
    f = Path(model_dir) / "config.json"
    try:
        config = json.loads(f.read_text())
    except FileNotFoundError as e:
        raise SparkError(f"model directory {model_dir} has no config.json",
                         hint='point `model NAME = "..."` at a local Hugging Face model directory') from e
    except RecursionError:
        raise SparkError(f"cannot read {f}: it nests JSON too deeply", hint="config.json must be a JSON object "
                         "(as transformers writes it)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SparkError(f"cannot read {f}: {e}", hint="config.json must be a JSON object (as transformers writes it)") from e
    if not isinstance(config, dict):
        raise SparkError(f"{f} is not a JSON object (it holds a {type(config).__name__})",
                         hint="config.json must be a JSON object (as transformers writes it)")
    text_config = config.get("text_config")
    return {**config, **text_config} if isinstance(text_config, dict) else config


def model_shape(config: dict, where: str = "model") -> ModelShape:
    """Layers, heads, KV heads, head size and width, checked to be positive integers."""

    def number(key: str, default: int | None = None) -> int:
        value = config.get(key, default)
        if value is None:
            raise SparkError(f"{where}: config.json has no {key}", hint="is this a decoder-only language model?")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
            raise SparkError(f"{where}: config.json {key} = {value!r} is not a positive integer",
                             hint="config.json is damaged, or not a language model's config")
        return int(value)

    n_heads = number("num_attention_heads")
    hidden = number("hidden_size")
    n_kv = number("num_key_value_heads", n_heads)
    if config.get("head_dim") is not None:
        number("head_dim")
    elif hidden % n_heads:
        raise SparkError(f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {n_heads}",
                         hint="set head_dim in config.json")
    if n_heads % n_kv:
        raise SparkError(f"{where}: num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv}",
                         hint="config.json is damaged")
    # Sizes transformers reads as integers too: a string or a negative here fails deep inside
    # from_pretrained, so say it now (and at `sparkql check`).
    for key in ("intermediate_size", "vocab_size", "max_position_embeddings"):
        if config.get(key) is not None:
            number(key)
    context = number("max_position_embeddings") if config.get("max_position_embeddings") is not None else None
    arch = config.get("architectures") or [config.get("model_type", "?")]
    return ModelShape(
        architecture=str(arch[0]) if isinstance(arch, list) and arch else str(arch),
        n_layers=number("num_hidden_layers"),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim(config),
        hidden_size=hidden,
        context_length=context,
    )


def shape_of(path: str) -> ModelShape:
    """The shape of a model path (a ``zoo:`` model is built first). Imports torch only for zoo paths."""
    if path.startswith("zoo:"):
        from sparkql.runtime.models.loading import local_dir

        d: Path = local_dir(path)
    else:
        d = Path(path)
    return model_shape(read_config(d), where=str(d))
