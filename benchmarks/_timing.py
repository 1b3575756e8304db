"""Timing helpers: alternating A/B medians and a streaming-read bandwidth probe."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["ab_medians", "streaming_read_bandwidth"]


def ab_medians(fns: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1) -> dict[str, float]:
    """Time each zero-argument callable ``repeats`` times, interleaved (A, B, A, B, ...); return medians (s)."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def streaming_read_bandwidth(n_bytes: int, repeats: int = 7) -> float:
    """Bytes/s of a numpy streaming read (``np.sum``) of a float64 array of ``n_bytes`` bytes."""
    a = np.ones(max(1, n_bytes // 8))
    t = ab_medians({"read": lambda: a.sum()}, repeats=repeats)["read"]
    return a.nbytes / t
