"""Shared fixtures: tiny random models in HF format, built once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_models_dir):
    """Qwen2 (GQA: 4 query heads over 2 kv heads, q/k/v biases), 2 layers, hidden 32."""
    from sparkql.runtime.models.tiny import make_tiny_model

    return make_tiny_model(tiny_models_dir / "qwen2", "qwen2", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3(tiny_models_dir):
    """Qwen3 (q_norm/k_norm) with head_dim 16 != hidden / heads = 8."""
    from sparkql.runtime.models.tiny import make_tiny_model

    return make_tiny_model(tiny_models_dir / "qwen3", "qwen3", head_dim=16, seed=1)


@pytest.fixture(scope="session")
def tiny_llama(tiny_models_dir):
    """Llama with grouped-query attention, no biases."""
    from sparkql.runtime.models.tiny import make_tiny_model

    return make_tiny_model(tiny_models_dir / "llama", "llama", seed=2)
