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


def test_copied_heads_leave_the_function_unchanged_and_make_a_head_redundant():
    # A reference that does not share copy_heads: the source head's own output, taken with a hook
    # before the copy, scaled by hand.
    tok = build_char_tokenizer(None)
    enc = train.Encoder(tok)
    model = train.new_model(SHAPE, tok, 0).double()
    batch = _batch(enc)
    d = model.config.head_dim
    attn = model.model.layers[1].self_attn
    train.silence_heads(model, [[1, 1], [1, 2]])  # as the base trains them: silent until copied
    before = _logits(model, batch)
    seen = {}
    h = attn.o_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("z", args[0].clone()))
    _logits(model, batch)
    h.remove()
    head0 = seen["z"][..., :d] @ attn.o_proj.weight[:, :d].T  # head 0's write into the residual
    train.copy_heads(model, [[[1, 0], [[1, 1], [1, 2]]]])
    assert torch.allclose(_logits(model, batch), before, atol=1e-10)  # the same function
    for proj in ("q_proj", "k_proj", "v_proj"):
        w = getattr(attn, proj).weight
        assert torch.equal(w[d:2 * d], w[:d]) and torch.equal(w[2 * d:3 * d], w[:d])
    # Zeroing one copy takes away a third of head 0's write, not all of it: compare with removing
    # head0 / 3 from o_proj's output by hand on the original model.
    col = attn.o_proj.weight[:, 2 * d:3 * d].clone()
    attn.o_proj.weight.data[:, 2 * d:3 * d] = 0
    ablated = _logits(model, batch)
    attn.o_proj.weight.data[:, 2 * d:3 * d] = col
    h = attn.o_proj.register_forward_hook(lambda m, args, out: out - head0 / 3)
    by_hand = _logits(model, batch)
    h.remove()
    assert torch.allclose(ablated, by_hand, atol=1e-10)


def test_head_dropout_drops_whole_heads_per_example_and_only_while_training():
    tok = build_char_tokenizer(None)
    enc = train.Encoder(tok)
    model = train.new_model(SHAPE, tok, 0)
    d, n_heads = model.config.head_dim, model.config.num_attention_heads
    attn = model.model.layers[1].self_attn
    seen = []
    probe = attn.o_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()), prepend=True)
    hooks = train._dropout_hooks(model, [[1, 0], [1, 2]], 0.5, seed=0)
    after = []
    last = attn.o_proj.register_forward_pre_hook(lambda m, args: after.append(args[0].detach().clone()))
    batch = _batch(enc, n=64)
    model.eval()
    _logits(model, batch)
    assert torch.equal(seen[-1], after[-1])  # no dropout at inference
    model.train()
    _logits(model, batch)
    x, y = seen[-1].view(64, -1, n_heads, d), after[-1].view(64, -1, n_heads, d)
    dropped = 0
    for h in range(n_heads):
        if h not in (0, 2):
            assert torch.equal(y[:, :, h], x[:, :, h])  # other heads untouched
            continue
        for i in range(64):  # each example keeps the whole head, scaled by 1/(1 - p), or loses it
            gone = bool((y[i, :, h] == 0).all())
            dropped += gone
            assert gone or torch.allclose(y[i, :, h], 2 * x[i, :, h])
    assert 30 <= dropped <= 98  # about half of 2 x 64
    for hk in (probe, last, *hooks):
        hk.remove()
