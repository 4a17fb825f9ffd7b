"""EAP tests run tiny models: one intra-op thread is faster than two (and immune to OpenMP
spin-waiting when the machine's cores are shared), and is restored afterwards."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
