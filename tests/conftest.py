"""Shared pytest set-up: a persistent numba cache, fixed seeds, and the ``llm`` marker's import guard."""

from __future__ import annotations

import os
from pathlib import Path

# must happen before numba is imported anywhere
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:  # hypothesis profile: deterministic, no deadline (numba compiles on first call)
    from hypothesis import settings

    settings.register_profile("klsim", deadline=None, derandomize=True, max_examples=60)
    settings.load_profile("klsim")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator for test data."""
    return np.random.default_rng(12345)


@pytest.fixture
def dense_kernels(monkeypatch):
    """Force klsim.dp's dense kernels on dense-layout MDPs (no zero skipping), to compare the two layouts."""
    import klsim.dp._core as core

    monkeypatch.setattr(core, "ZERO_SKIP_MAX_DENSITY", -1.0)
