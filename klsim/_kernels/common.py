"""Small numba building blocks shared by every kernel family (log-space reductions)."""

from __future__ import annotations

import numpy as np

from klsim._jit import njit

__all__ = ["lse_1d", "kl_rows_from_logs"]


@njit
def lse_1d(x):
    """Max-shifted ln Σ exp(x) of a 1-d float64 array; an all-(−inf) input gives −inf (never NaN)."""
    m = -np.inf
    for i in range(x.shape[0]):
        if x[i] > m:
            m = x[i]
    if m == -np.inf:
        return -np.inf
    if m == np.inf:
        return np.inf
    s = 0.0
    for i in range(x.shape[0]):
        s += np.exp(x[i] - m)
    return m + np.log(s)


@njit
def kl_rows_from_logs(log_p, log_q, out):
    """Row-wise KL(p‖q) = Σ p (ln p − ln q) from log-probabilities, with 0·ln 0 = 0 (C11)."""
    for i in range(log_p.shape[0]):
        s = 0.0
        for j in range(log_p.shape[1]):
            lp = log_p[i, j]
            if lp == -np.inf:
                continue
            lq = log_q[i, j]
            if lq == -np.inf:
                s = np.inf
                break
            s += np.exp(lp) * (lp - lq)
        out[i] = s
    return out
