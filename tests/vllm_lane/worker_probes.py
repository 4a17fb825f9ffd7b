"""Functions the vLLM lane's tests ship into vLLM's worker processes (``LLM.apply_model`` pickles
them by reference, so they live in an importable module, not in a test function)."""

from __future__ import annotations


def o_proj_outputs(model) -> list:
    """Every layer's o_proj forward, as the engine computes it, on one fixed probe, as nested lists
    (what comes back from a worker is serialized; fp32 -> Python float is exact); and whether the
    layer is prepacked (an empty ``weight``, the CPU engine's form)."""
    import torch

    out = []
    for layer in getattr(model, "model", model).layers:
        o = layer.self_attn.o_proj
        gen = torch.Generator().manual_seed(7)
        probe = torch.randn(3, int(o.input_size_per_partition), generator=gen).to(o.params_dtype)
        out.append([o.weight.numel() == 0, o.quant_method.apply(o, probe).float().tolist()])
    return out


def noop_edit(model, edits, multiplier, n_heads, head_dim, restore_only=False, model_dir=None) -> int:
    """A deliberately broken head edit: it reports every head as edited and changes nothing,
    the failure the greedy canary exists to catch."""
    return 0 if restore_only else sum(len(h) for h in edits.values())
