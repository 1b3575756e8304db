"""Numba kernel of Munchausen value iteration, M-VI(α, τ), in its stable form (spec §5).

M-VI's sweep is the entropy-regularized sweep of ``klsim._kernels.dp`` (β = 0, temperature τ:
log π = q/τ − L, v = τ L with L = lse(q/τ), q_out = R + γ P v) plus the Munchausen bonus, which this
kernel adds in one pass over the state-action pairs:

    ℓ = q − v (= τ ln π ≤ 0),   q_out += α·ℓ   (or α·clip(ℓ, l0, 0))

``clip_lo = −inf`` means no clip, and then the bonus is exactly α·ℓ.  The pass also records, per state,
the action gap max_b q(s,b) − (second-largest q(s,·)) of the *input* q.
"""

from __future__ import annotations

import numpy as np

from klsim._jit import njit

__all__ = ["munchausen_bonus_rows"]


@njit
def munchausen_bonus_rows(q, v, alpha, clip_lo, q_out, gap):
    """q_out[s, a] += α·clip(q[s, a] − v[s], clip_lo, 0) (no clip when clip_lo = −inf); gap[s] = top-2 gap of q[s].

    Shapes: q, q_out (S, A); v, gap (S,).
    """
    S, A = q.shape
    clipped = clip_lo > -np.inf
    for s in range(S):
        m = -np.inf
        m2 = -np.inf
        vs = v[s]
        for a in range(A):
            x = q[s, a]
            if x > m:
                m2 = m
                m = x
            elif x > m2:
                m2 = x
            ell = x - vs
            if clipped:
                ell = min(max(ell, clip_lo), 0.0)
            q_out[s, a] += alpha * ell
        gap[s] = m - m2 if A > 1 else 0.0
    return q_out
