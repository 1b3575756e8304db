"""Fixtures shared by the klsim_llm tests (the root ``tests/conftest.py`` still applies)."""

from __future__ import annotations

import pytest


def _single_torch_thread():
    """Tiny tensors: one intra-op thread avoids thread-pool wake-ups (14x faster on a loaded 2-core box)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the duration of a test (restored afterwards)."""
    yield from _single_torch_thread()


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """One torch intra-op thread for the duration of a test module (restored afterwards)."""
    yield from _single_torch_thread()
