"""Head interventions as o_proj weight edits (docs/evaluation.md).

A query head h of layer l writes to the residual stream only through columns
``[h*dh, (h+1)*dh)`` of that layer's ``o_proj.weight`` (shape hidden x n_heads*dh):
``attn_out = concat_h(z_h) @ W_O.T``. So

* zero-ablating the head  == zeroing those columns, and
* scaling its output by F == multiplying those columns by F,

exactly (for zeroing, bitwise: the head's terms are exact zeros either way). The
o_proj bias, when a family has one, is shared by all heads and left alone.

Edits are always computed from a pristine copy of each touched o_proj weight,
taken before the first edit, and undone by copying the pristine tensor back:
never by dividing by F, which would not restore the bits (and cannot undo a
zero). ``dh`` is ``config.head_dim`` when present (Qwen3-4B: 32 x 128 != 2560).

Several variants can be evaluated in one run, one after another::

    editor = HeadEditor(loaded)
    for variant in variants:
        with editor.applied(variant):
            generate(...)
    # the model is bitwise pristine again here
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from sparkql.errors import SparkError

_HEAD_RE = re.compile(r"^L(\d+)H(\d+)$")


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def parse_head(name: str) -> tuple[int, int]:
    m = _HEAD_RE.match(name.strip())
    if not m:
        raise SparkError(f"bad head name {name!r}", hint="heads are written L<layer>H<head>, e.g. L5H1")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class Variant:
    """An intervention: ``op`` on ``heads`` ([layer, head] pairs) with ``factor`` (0 for ablate)."""

    name: str
    op: str
    """ablate | scale"""
    heads: tuple[tuple[int, int], ...] = field(default_factory=tuple)
    factor: float = 0.0

    def __post_init__(self) -> None:
        if self.op not in ("ablate", "scale"):
            raise ValueError(f"unknown intervention op {self.op!r}")

    @property
    def multiplier(self) -> float:
        return 0.0 if self.op == "ablate" else float(self.factor)

    def by_layer(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for layer, head in self.heads:
            out.setdefault(int(layer), []).append(int(head))
        return {layer: sorted(set(hs)) for layer, hs in sorted(out.items())}


def check_heads(heads: Iterable[tuple[int, int]], n_layers: int, n_heads: int, where: str = "model") -> None:
    """SparkError for a head outside the model (a set found in one model applied to a smaller one)."""
    bad = [(layer, head) for layer, head in heads if not (0 <= layer < n_layers and 0 <= head < n_heads)]
    if bad:
        shown = ", ".join(head_name(*h) for h in bad[:5])
        raise SparkError(f"{where} has {n_layers} layers x {n_heads} heads; no such head: {shown}",
                         hint="apply the set to a model of the same shape")


def column_slice(head: int, head_dim: int) -> slice:
    return slice(head * head_dim, (head + 1) * head_dim)


class HeadEditor:
    """Applies variants to a loaded model's o_proj weights and restores them bitwise.

    ``loaded`` is a :class:`sparkql.runtime.models.loading.LoadedModel` (anything with ``module(part,
    layer)``, ``n_layers``, ``n_heads`` and ``head_dim`` works)."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded
        self.head_dim = int(loaded.head_dim)
        self._pristine: dict[int, torch.Tensor] = {}
        self._active: Variant | None = None

    def weight(self, layer: int) -> torch.Tensor:
        w = self.loaded.module("o_proj", layer).weight
        expected = self.loaded.n_heads * self.head_dim
        if w.shape[1] != expected:
            raise SparkError(
                f"o_proj of layer {layer} has {w.shape[1]} input columns, expected n_heads x head_dim = {expected}",
                hint="the config's head_dim does not match the weights",
            )
        return w

    def _pristine_of(self, layer: int) -> torch.Tensor:
        if layer not in self._pristine:
            # A copy on the weight's own device: editing and restoring never cross devices.
            self._pristine[layer] = self.weight(layer).detach().clone()
        return self._pristine[layer]

    @torch.no_grad()
    def apply(self, variant: Variant) -> None:
        """Edit the weights for ``variant`` (restoring any previous variant first)."""
        check_heads(variant.heads, self.loaded.n_layers, self.loaded.n_heads, where=str(getattr(self.loaded, "path", "model")))
        self.restore()
        mult = variant.multiplier
        for layer, heads in variant.by_layer().items():
            pristine = self._pristine_of(layer)
            w = self.weight(layer)
            for h in heads:
                cols = column_slice(h, self.head_dim)
                if mult == 0.0:
                    w[:, cols] = 0
                else:
                    w[:, cols] = pristine[:, cols] * mult
        self._active = variant

    @torch.no_grad()
    def restore(self) -> None:
        """Copy every touched weight back from its pristine copy (bitwise)."""
        for layer, pristine in self._pristine.items():
            self.weight(layer).copy_(pristine)
        self._active = None

    @property
    def active(self) -> Variant | None:
        return self._active

    def is_pristine(self) -> bool:
        return all(torch.equal(self.weight(layer), p) for layer, p in self._pristine.items())

    @contextmanager
    def applied(self, variant: Variant | None) -> Iterator[None]:
        """Run the body with ``variant`` applied (None: the intact model); restore afterwards,
        also when the body raises."""
        if variant is None or not variant.heads:
            yield
            return
        self.apply(variant)
        try:
            yield
        finally:
            self.restore()


def o_proj_input_hook(loaded, variant: Variant) -> list:
    """The reference the weight edit must equal: forward pre-hooks that multiply each edited
    head's slice of o_proj's *input* (z_h) by the factor. Returns the hook handles (call
    ``.remove()``). Used by the tests, and handy to cross-check a new family."""
    dh = int(loaded.head_dim)
    mult = variant.multiplier
    handles = []
    for layer, heads in variant.by_layer().items():
        def pre_hook(module, args, heads=heads):
            (x, *rest) = args
            x = x.clone()
            for h in heads:
                if mult == 0.0:
                    x[..., column_slice(h, dh)] = 0
                else:
                    x[..., column_slice(h, dh)] = x[..., column_slice(h, dh)] * mult
            return (x, *rest)

        handles.append(loaded.module("o_proj", layer).register_forward_pre_hook(pre_hook))
    return handles
