"""One table mapping model families to module paths (the pyvene pattern).

Every piece of runtime code that needs "the o_proj of layer l" or "the norm
before attention" asks an :class:`Adapter`; adding a family is one entry in
:data:`FAMILIES`, not edits all over. Paths are relative to the
``*ForCausalLM`` module and use ``{l}`` for the layer index.

This module imports neither torch nor transformers: the compiler uses it to
reject unsupported architectures from config.json alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkql.errors import SparkError


@dataclass(frozen=True)
class Adapter:
    family: str
    architectures: tuple[str, ...]
    """``config.architectures`` values this entry serves."""
    embed: str = "model.embed_tokens"
    layers: str = "model.layers"
    layer: str = "model.layers.{l}"
    attn_norm: str = "model.layers.{l}.input_layernorm"
    """The norm the attention block reads the residual stream through."""
    mlp_norm: str = "model.layers.{l}.post_attention_layernorm"
    attn: str = "model.layers.{l}.self_attn"
    q_proj: str = "model.layers.{l}.self_attn.q_proj"
    k_proj: str = "model.layers.{l}.self_attn.k_proj"
    v_proj: str = "model.layers.{l}.self_attn.v_proj"
    o_proj: str = "model.layers.{l}.self_attn.o_proj"
    q_norm: str | None = None
    """Per-head RMSNorm on queries (Qwen3)."""
    k_norm: str | None = None
    mlp: str = "model.layers.{l}.mlp"
    final_norm: str = "model.norm"
    rotary: str = "model.rotary_emb"
    lm_head: str = "lm_head"

    def path(self, part: str, layer: int | None = None) -> str:
        template = getattr(self, part)
        if template is None:
            raise KeyError(f"{self.family} has no {part}")
        return template.format(l=layer) if layer is not None else template


FAMILIES: dict[str, Adapter] = {
    "qwen2": Adapter(family="qwen2", architectures=("Qwen2ForCausalLM",)),
    "qwen3": Adapter(
        family="qwen3",
        architectures=("Qwen3ForCausalLM",),
        q_norm="model.layers.{l}.self_attn.q_norm",
        k_norm="model.layers.{l}.self_attn.k_norm",
    ),
    "llama": Adapter(family="llama", architectures=("LlamaForCausalLM",)),
    "mistral": Adapter(family="mistral", architectures=("MistralForCausalLM",)),
}

_BY_ARCH = {arch: a for a in FAMILIES.values() for arch in a.architectures}
_BY_MODEL_TYPE = {"qwen2": "qwen2", "qwen3": "qwen3", "llama": "llama", "mistral": "mistral"}


def supported_architectures() -> list[str]:
    return sorted(_BY_ARCH)


def adapter_for_config(config: dict, where: str = "model") -> Adapter:
    """The adapter for a config.json dict; SparkError naming the architecture otherwise."""
    for arch in config.get("architectures") or []:
        if arch in _BY_ARCH:
            return _BY_ARCH[arch]
    model_type = config.get("model_type")
    if model_type in _BY_MODEL_TYPE:
        return FAMILIES[_BY_MODEL_TYPE[model_type]]
    name = ", ".join(config.get("architectures") or []) or str(model_type)
    raise SparkError(
        f"{where}: unsupported architecture {name}",
        hint="supported: " + ", ".join(supported_architectures()) + " (adding one is an entry in sparkql/runtime/models/adapters.py)",
    )


def head_dim(config: dict) -> int:
    """``config.head_dim`` when present (Qwen3-4B: 32 x 128 != hidden 2560), else hidden / heads."""
    hd = config.get("head_dim")
    if hd:
        return int(hd)
    return int(config["hidden_size"]) // int(config["num_attention_heads"])
