"""Weight edits equal activation hooks on o_proj's input; restoring is bitwise."""

from __future__ import annotations

import pytest
import torch

from sparkql.errors import SparkError
from sparkql.runtime.models.interventions import HeadEditor, Variant, o_proj_input_hook, parse_head
from sparkql.runtime.models.loading import load_model

FAMILIES = ["tiny_qwen2", "tiny_qwen3", "tiny_llama"]


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request):
    path = request.getfixturevalue(request.param)
    return load_model(path, dtype="fp32", device="cpu")


def _ids(loaded):
    text = ["What is 12 + 30? Let me think.", "Seven times six is"]
    enc = loaded.tokenizer(text, return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def _logits(loaded):
    ids, mask = _ids(loaded)
    return loaded.model(input_ids=ids, attention_mask=mask).logits


def _snapshot(loaded):
    return {n: p.detach().clone() for n, p in loaded.model.named_parameters()}


def _assert_bitwise_same(loaded, before):
    for n, p in loaded.model.named_parameters():
        assert torch.equal(p, before[n]), n
        # torch.equal treats -0.0 == 0.0; compare the bits too
        assert torch.equal(p.view(torch.int32), before[n].view(torch.int32)), n


def _hooked_logits(loaded, variant):
    """Logits with the variant applied as an activation hook on o_proj's input (the reference)."""
    handles = o_proj_input_hook(loaded, variant)
    try:
        return _logits(loaded)
    finally:
        for h in handles:
            h.remove()


def test_zero_ablation_equals_hook_bitwise(loaded):
    variant = Variant("ablate", "ablate", heads=((0, 1), (1, 0), (1, 3)))
    hooked = _hooked_logits(loaded, variant)
    intact = _logits(loaded)
    editor = HeadEditor(loaded)
    with editor.applied(variant):
        edited = _logits(loaded)
    assert not torch.equal(intact, edited), "the ablation must change the output"
    assert torch.equal(hooked, edited)


@pytest.mark.parametrize("factor", [1.3, 0.5])
def test_scaling_equals_hook_within_tolerance(loaded, factor):
    variant = Variant(f"scale {factor}", "scale", heads=((0, 0), (1, 2)), factor=factor)
    hooked = _hooked_logits(loaded, variant)
    intact = _logits(loaded)
    with HeadEditor(loaded).applied(variant):
        edited = _logits(loaded)
    assert (edited - intact).abs().max() > 1e-3
    torch.testing.assert_close(edited, hooked, rtol=1e-5, atol=1e-5)


def test_edit_touches_only_the_head_columns(loaded):
    editor = HeadEditor(loaded)
    dh = loaded.head_dim
    w0 = loaded.module("o_proj", 1).weight.detach().clone()
    editor.apply(Variant("s", "scale", heads=((1, 2),), factor=2.0))
    w = loaded.module("o_proj", 1).weight
    cols = slice(2 * dh, 3 * dh)
    assert torch.equal(w[:, cols], w0[:, cols] * 2.0)
    mask = torch.ones(w.shape[1], dtype=torch.bool)
    mask[cols] = False
    assert torch.equal(w[:, mask], w0[:, mask])
    editor.restore()


def test_restore_is_bitwise_after_several_variants(loaded):
    before = _snapshot(loaded)
    editor = HeadEditor(loaded)
    variants = [
        Variant("a", "ablate", heads=((0, 0), (0, 3))),
        Variant("up", "scale", heads=((0, 0), (1, 1)), factor=1.3),
        Variant("down", "scale", heads=((1, 1),), factor=0.1),  # 0.1 then /0.1 would not round-trip
    ]
    outputs = []
    for v in variants:
        with editor.applied(v):
            outputs.append(_logits(loaded))
        _assert_bitwise_same(loaded, before)
    # applying a variant directly after another is computed from the pristine copy, not stacked
    editor.apply(variants[1])
    editor.apply(variants[2])
    assert torch.equal(_logits(loaded), outputs[2])
    editor.restore()
    _assert_bitwise_same(loaded, before)
    assert editor.is_pristine()


def test_restore_when_the_body_raises(loaded):
    before = _snapshot(loaded)
    editor = HeadEditor(loaded)
    with pytest.raises(RuntimeError):
        with editor.applied(Variant("a", "ablate", heads=((1, 1),))):
            raise RuntimeError("generation failed")
    _assert_bitwise_same(loaded, before)


def test_head_dim_from_config(tiny_qwen3):
    loaded = load_model(tiny_qwen3, dtype="fp32", device="cpu")
    assert loaded.head_dim == 16 and loaded.config["hidden_size"] == 32
    assert HeadEditor(loaded).weight(0).shape == (32, 4 * 16)


def test_out_of_range_head_is_a_spark_error(tiny_llama):
    loaded = load_model(tiny_llama, dtype="fp32", device="cpu")
    with pytest.raises(SparkError, match="no such head: L9H0"):
        HeadEditor(loaded).apply(Variant("a", "ablate", heads=((9, 0),)))
    with pytest.raises(SparkError):
        parse_head("layer5head1")
    assert parse_head("L5H1") == (5, 1)
