"""Head edits inside vLLM's workers (``LLM.apply_model`` ships :func:`edit_o_proj` to each).

A head intervention scales the input columns of ``o_proj`` that belong to the head (DESIGN.md
5, as :class:`sparkql.runtime.interventions.HeadEditor` does for transformers). vLLM keeps
o_proj as a ``RowParallelLinear`` in one of two forms:

* **Dense** (GPU engines): ``weight`` is the matrix the GEMM reads. The columns are edited in
  place, from a pristine copy kept in the worker; restoring copies the pristine columns back.
* **Prepacked** (vLLM's CPU engine): after loading, the CPU platform packs the weight for
  oneDNN (or another CPU GEMM) into a closure ``layer.cpu_linear`` and leaves ``weight`` as an
  empty tensor, so there is nothing to edit in place. Here the pristine matrix is read from the
  checkpoint (cast to the engine's dtype, as vLLM's loader does, and sliced to this rank's
  columns), the edited matrix is handed back to the layer's own
  ``quant_method.process_weights_after_loading``, which packs it again as it packed the
  original, and restoring puts back the original packed closure itself (bitwise the engine's
  own weights, by construction).

After every edit and every restore the layer's forward (``quant_method.apply``, the path the
engine runs) is checked on a random probe against ``probe @ W_expected^T`` computed with plain
torch, so an edit that did not reach the weights the engine uses fails loudly here instead of
silently producing intact samples under a variant's name.

With tensor parallelism the input columns of o_proj are split by rank; a global head is edited
on the rank that holds its columns.
"""

from __future__ import annotations

import json
from pathlib import Path

PROBE_ROWS = 4


def _o_proj(model, layer: int):
    """The o_proj of ``layer`` inside vLLM's model (Qwen2/Qwen3/Llama/Mistral share the layout)."""
    inner = getattr(model, "model", model)
    return inner.layers[layer].self_attn.o_proj


def checkpoint_tensor(model_dir: str, name: str):
    """One tensor of a Hugging Face checkpoint (safetensors, sharded or not; else a torch .bin)."""
    import torch

    d = Path(model_dir)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        files = [d / json.loads(index.read_text())["weight_map"][name]]
    else:
        files = sorted(d.glob("*.safetensors"))
    if files:
        from safetensors import safe_open

        for f in files:
            with safe_open(str(f), framework="pt") as fh:
                if name in fh.keys():
                    return fh.get_tensor(name)
    for f in sorted(d.glob("pytorch_model*.bin")):
        sd = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
        if name in sd:
            return sd[name]
    raise RuntimeError(f"{model_dir} has no tensor {name!r}: cannot rebuild the edited o_proj")


class _LayerState:
    """What the worker keeps for one edited o_proj: the pristine matrix of this rank's columns,
    and for a prepacked layer its original weight parameter and packed closure."""

    def __init__(self, mod, layer: int, model_dir: str | None):
        import torch

        w = mod.weight
        self.packed = w.numel() == 0 and hasattr(mod, "cpu_linear")
        if self.packed:
            if model_dir is None:
                raise RuntimeError("o_proj is prepacked and no checkpoint directory was given to rebuild it")
            full = checkpoint_tensor(model_dir, f"model.layers.{layer}.self_attn.o_proj.weight")
            cols = int(mod.input_size_per_partition)
            rank = int(getattr(mod, "tp_rank", 0) or 0)
            self.pristine = full[:, rank * cols:(rank + 1) * cols].to(dtype=mod.params_dtype).contiguous()
            self.orig_weight = mod.weight
            self.orig_linear = mod.cpu_linear
        else:
            self.pristine = w.detach().clone()
        self.dtype = self.pristine.dtype
        gen = torch.Generator().manual_seed(1234 + layer)
        self.probe = torch.randn(PROBE_ROWS, self.pristine.shape[1], generator=gen).to(self.dtype).to(
            self.pristine.device)


def _forward(mod, x):
    """The layer's local GEMM as the engine runs it (no tensor-parallel reduction). A layer
    without vLLM's ``quant_method`` (a plain torch Linear standing in for a GPU layer in tests)
    multiplies by its weight."""
    import torch

    qm = getattr(mod, "quant_method", None)
    return qm.apply(mod, x) if qm is not None else torch.nn.functional.linear(x, mod.weight)


def _check(mod, st: _LayerState, expected, layer: int, edited: bool) -> None:
    """The engine's forward of the probe equals ``probe @ expected^T`` (within the dtype's
    rounding), and, for an edit, is clearly not the pristine layer's output."""
    import torch

    got = _forward(mod, st.probe).float()
    want = torch.nn.functional.linear(st.probe.float(), expected.float())
    scale = float(want.abs().max()) or 1.0
    tol = (1e-4 if st.dtype in (torch.float32, torch.float64) else 3e-2) * scale
    err = float((got - want).abs().max())
    if not err <= tol:
        raise RuntimeError(
            f"o_proj of layer {layer}: the engine's output differs from the {'edited' if edited else 'pristine'} "
            f"weights by {err:.3g} (tolerance {tol:.3g}); the edit did not reach the weights the engine uses")
    if edited:
        off = float((got - torch.nn.functional.linear(st.probe.float(), st.pristine.float())).abs().max())
        if not off > 10 * tol:
            raise RuntimeError(f"o_proj of layer {layer}: the edit changed nothing the engine computes")


def _install(mod, st: _LayerState, weight) -> None:
    """Make ``weight`` the layer's weight (prepacked layers: packed by the layer's own method)."""
    import torch

    if st.packed:
        mod.weight = torch.nn.Parameter(weight.clone(), requires_grad=False)
        mod.quant_method.process_weights_after_loading(mod)
    else:
        mod.weight.copy_(weight)


def _restore(mod, st: _LayerState) -> None:
    if st.packed:
        mod.weight = st.orig_weight
        mod.cpu_linear = st.orig_linear
    else:
        mod.weight.copy_(st.pristine)


def edit_o_proj(model, edits: dict[int, list[int]], multiplier: float, n_heads: int, head_dim: int,
                restore_only: bool = False, model_dir: str | None = None) -> int:  # runs inside vLLM workers
    """Restore every o_proj edited before, then (unless ``restore_only``) set the columns of
    ``edits`` ({layer: [global head, ...]}) to pristine x ``multiplier``. Returns the number of
    heads edited on this worker."""
    import torch

    done = 0
    with torch.no_grad():
        store = getattr(model, "_sparkql_pristine", None)
        if store is None:
            store = {}
            model._sparkql_pristine = store
        for layer, st in store.items():
            mod = _o_proj(model, layer)
            _restore(mod, st)
            _check(mod, st, st.pristine, layer, edited=False)
        if restore_only:
            return 0
        for layer, heads in edits.items():
            mod = _o_proj(model, layer)
            if layer not in store:
                w = mod.weight
                if w.numel() and not w.dtype.is_floating_point:
                    raise RuntimeError(f"o_proj of layer {layer} is {w.dtype}: quantized weights cannot be edited per head")
                st = store[layer] = _LayerState(mod, layer, model_dir)
                _check(mod, st, st.pristine, layer, edited=False)  # the checkpoint is what the engine loaded
            st = store[layer]
            local_cols = st.pristine.shape[1]
            tp_rank = int(getattr(mod, "tp_rank", 0) or 0)
            heads_here = local_cols // head_dim
            first = tp_rank * heads_here
            new = st.pristine.clone()
            n_here = 0
            for h in heads:
                if not first <= h < first + heads_here:
                    continue  # another rank holds this head's columns
                cols = slice((h - first) * head_dim, (h - first + 1) * head_dim)
                new[:, cols] = 0 if multiplier == 0.0 else st.pristine[:, cols] * multiplier
                n_here += 1
            if n_here:
                _install(mod, st, new)
                _check(mod, st, new, layer, edited=multiplier != 1.0)
            done += n_here
    return done

