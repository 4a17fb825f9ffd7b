"""The zoo's training knobs behind the demo's ground truth: reserved (silenced) heads, training
restricted to chosen heads and the MLPs, and a base whose traces are one line long."""

from __future__ import annotations

import random

import torch

from sparkql import zoo
from sparkql.runtime.models.tiny import build_char_tokenizer
from sparkql.runtime.zoo import data, train

SHAPE = {**zoo.PRESETS["full"]["model"], "n_layers": 2, "hidden_size": 128, "intermediate_size": 64}


def _batch(enc, n=4):
    rng = random.Random(0)
    p = [data.hard_problem(rng) for _ in range(n)]
    return enc.sft_batch([(data.render_prompt(x.text), data.assistant_text(x, True)) for x in p])


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_reserved_heads_take_no_part_in_training_and_are_silent_after_it():
    tok = build_char_tokenizer(None)
    enc = train.Encoder(tok)
    model = train.new_model(SHAPE, tok, 0)
    reserved = [[0, 3], [1, 3]]
    d = model.config.head_dim
    train.supervised(model, enc, train.base_batch(zoo.recipe("full")), steps=3, batch=4, lr=1e-2, warmup=1,
                     seed=0, reserved_heads=reserved)
    for l, h in reserved:
        attn = model.model.layers[l].self_attn
        assert torch.count_nonzero(attn.o_proj.weight[:, h * d:(h + 1) * d]) == 0
        assert torch.count_nonzero(attn.q_proj.weight[h * d:(h + 1) * d]) > 0  # kept, for SFT to recruit
    # The hooks are gone (outputs are deterministic), and zeroing the reserved heads' inputs to
    # o_proj by hand changes nothing: they are silent.
    batch = _batch(enc)
    a, b = _logits(model, batch), _logits(model, batch)
    handles = [model.model.layers[l].self_attn.o_proj.register_forward_pre_hook(
        lambda m, args, h=h: (args[0].clone().index_fill_(-1, torch.arange(h * d, (h + 1) * d), 0.0),))
        for l, h in reserved]
    c = _logits(model, batch)
    for x in handles:
        x.remove()
    assert torch.equal(a, b) and torch.allclose(a, c, atol=1e-6)


def test_restricted_training_changes_only_the_chosen_heads_and_the_mlps():
    tok = build_char_tokenizer(None)
    enc = train.Encoder(tok)
    model = train.new_model(SHAPE, tok, 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    heads = [[1, 3]]
    train.supervised(model, enc, train.sft_batch(zoo.recipe("full")), steps=3, batch=4, lr=1e-2, warmup=1,
                     seed=0, train_only={"heads": heads, "mlp": True})
    d = model.config.head_dim
    rows = slice(3 * d, 4 * d)
    for name, p in model.named_parameters():
        old = before[name]
        if ".mlp." in name:
            assert not torch.equal(p, old), name
        elif name.startswith("model.layers.1.self_attn.") and name.split(".")[4] in ("q_proj", "k_proj", "v_proj"):
            # only the head's own rows moved; the other heads' rows are bitwise the same
            assert not torch.equal(p[rows], old[rows]), name
            assert torch.equal(torch.cat([p[:rows.start], p[rows.stop:]]), torch.cat([old[:rows.start], old[rows.stop:]])), name
        elif name == "model.layers.1.self_attn.o_proj.weight":
            assert not torch.equal(p[:, rows], old[:, rows])
            assert torch.equal(p[:, :rows.start], old[:, :rows.start])
        else:  # embeddings, norms, every other head: untouched (weight decay included)
            assert torch.equal(p, old), name


def test_restricted_masks_skip_kv_rows_shared_with_other_heads():
    """With grouped kv heads a head's k/v rows are shared with its group: they stay frozen."""
    tok = build_char_tokenizer(None)
    model = train.new_model({**SHAPE, "n_kv_heads": 2}, tok, 0)
    masks = train.trainable_masks(model, heads=[[0, 1]])
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.weight in masks and attn.o_proj.weight in masks
    assert attn.k_proj.weight not in masks and attn.v_proj.weight not in masks
    assert int(masks[attn.q_proj.weight].sum()) == SHAPE["head_dim"] * attn.q_proj.weight.shape[1]


def test_the_demo_base_traces_easy_problems_only():
    recipe = zoo.recipe("full")
    assert recipe["data"]["trace_kinds"] == ["easy"]
    rows = train.base_batch(recipe)(random.Random(0), 400)
    traced = [(p, c) for p, c in rows if not c.startswith("<think>\n\n</think>")]
    assert traced and all(c.count("=") == 2 for _, c in traced)  # one trace line, then the answer
    hard = [c for p, c in rows if p.count("+") + p.count("-") >= 3]
    assert hard and all(c.startswith("<think>\n\n</think>") for c in hard)
