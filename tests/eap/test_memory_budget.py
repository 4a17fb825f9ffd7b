"""The `memory` option is a hard budget: peak memory stays within it (+10%) on a real-shape model,
a chunk that runs out of memory halves and retries with unchanged scores, one row that does not
fit is a SparkError that says the smallest budget, and a one-row budget is said."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparkql.errors import SparkError
from sparkql.runtime.eap.engine import EapIg, Example
from sparkql.runtime.models.loading import load_model

CHILD = Path(__file__).with_name("memory_child.py")
GiB = 2**30


def test_peak_memory_stays_within_the_budget():
    """EAP-IG and faithfulness on a random Qwen2 of 4 layers x 512 (8 heads over 2 kv heads), 3
    examples of 256 tokens x 8 steps, in a fresh process, under budgets of 0.5, 1 and 2 GiB in
    turn: peak resident set above the level before each run <= budget + 10%. A larger budget
    stacks more rows per chunk (2 GiB: all 24 in one chunk)."""
    budgets = [0.5, 1, 2]
    out = subprocess.run([sys.executable, str(CHILD), "4", "512", "256", "8", "3", *(str(int(b * GiB)) for b in budgets)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = [json.loads(line) for line in out.stdout.strip().splitlines()[-3:]]
    for b, g in zip(budgets, got):
        assert g["budget"] == int(b * GiB)
        assert g["peak"] <= 1.1 * b * GiB, g
        assert g["predicted"] <= b * GiB, g
    rows = [g["chunk_rows"] for g in got]
    assert 1 < rows[0] < rows[1] < rows[2] == 24 and got[0]["chunks"] > 1 and got[2]["chunks"] == 1, got


def _examples(lm, n=3, length=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    vocab = int(lm.config["vocab_size"])
    out = []
    for _ in range(n):
        c = torch.randint(0, vocab, (length,), generator=g)
        x = c.clone()
        x[2] = (x[2] + 1) % vocab
        out.append(Example(c.tolist(), x.tolist()))
    return out


def test_an_out_of_memory_chunk_halves_and_retries(tiny_qwen2, monkeypatch):
    """A forward that raises torch.OutOfMemoryError for chunks of more than 3 rows (what a GPU
    raises when a chunk does not fit) is retried with 6, then 3 rows; scores are those of an
    unconstrained run (no partial chunk counted twice), and the retries are said."""
    lm = load_model(tiny_qwen2, "fp64", "cpu")
    exs = _examples(lm)
    eng = EapIg(lm)
    ref = eng.run(exs, steps=4, memory="1GiB")
    assert ref.chunk_rows == 12

    layer = lm.model.model.layers[1]

    def oom_when_big(module, args, kwargs):
        if args[0].shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    h = layer.register_forward_pre_hook(oom_when_big, with_kwargs=True)
    notes: list[str] = []
    try:
        res = eng.run(exs, steps=4, memory="1GiB", log=notes.append)
    finally:
        h.remove()
    assert res.chunk_rows == 3 and res.n_chunks == 4
    assert np.allclose(res.scores, ref.scores, rtol=1e-12, atol=1e-300)
    assert [n for n in notes if "a chunk of" in n] == [
        "note: a chunk of 12 rows ran out of memory; retrying with 6",
        "note: a chunk of 6 rows ran out of memory; retrying with 3"]


def test_one_row_that_does_not_fit_is_a_user_error(tiny_qwen2):
    lm = load_model(tiny_qwen2, "fp64", "cpu")
    exs = _examples(lm)
    eng = EapIg(lm)
    with pytest.raises(SparkError) as e:
        eng.run(exs, steps=4, memory="10MiB")
    msg = e.value.render()
    assert "more than the memory budget of 10 MiB" in msg and "set memory = " in msg
    # the smallest budget it names does fit
    need = msg.split("set memory = ")[1].split()[0]
    assert eng.run(exs, steps=4, memory=need).chunk_rows >= 1

    layer = lm.model.model.layers[0]
    h = layer.register_forward_pre_hook(
        lambda m, a, k: (_ for _ in ()).throw(torch.OutOfMemoryError("simulated")), with_kwargs=True)
    try:
        with pytest.raises(SparkError, match="out of memory in EAP-IG's clean/corrupted pass of one example of 9"):
            eng.run(exs, steps=4, memory="1GiB")
    finally:
        h.remove()


def test_a_one_row_budget_is_said(tiny_qwen2):
    from sparkql.plan.sizing import chunk_peak

    lm = load_model(tiny_qwen2, "fp64", "cpu")
    exs = _examples(lm)
    eng = EapIg(lm)
    notes: list[str] = []
    res = eng.run(exs, steps=4, memory=chunk_peak(eng.shape, 9, 1, 4) + 1, log=notes.append)
    assert res.chunk_rows == 1
    assert any("fits one row per chunk" in n and "no fused batching" in n for n in notes), notes
