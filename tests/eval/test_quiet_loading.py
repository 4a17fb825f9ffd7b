"""Loading a model prints nothing of transformers' own: its "Loading weights" bars went to stderr
between the run's step lines (and into logs as carriage-return garbage)."""

from __future__ import annotations


def test_load_model_draws_no_transformers_bars_and_restores_the_setting(tiny_qwen2, capfd):
    from transformers.utils import logging as hf_logging

    from sparkql.runtime.models.loading import load_model

    assert hf_logging.is_progress_bar_enabled()
    capfd.readouterr()
    lm = load_model(tiny_qwen2, dtype="fp32", device="cpu")
    out, err = capfd.readouterr()
    assert lm.n_heads == 4
    assert "Loading" not in err + out and "%|" not in err + out
    assert hf_logging.is_progress_bar_enabled()  # a notebook's own setting is left as it was
