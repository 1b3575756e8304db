"""Numba kernels of Munchausen value iteration, M-VI(α, τ), in its stable form (spec §5).

Per state, with L = lse(q/τ) (max-shifted):

    log π = q/τ − L,   v = τ L,   ℓ = q − v (= τ ln π ≤ 0),   bonus = α·ℓ   (or α·clip(ℓ, l0, 0))
    q_next = R + bonus + γ P v

``clip_lo = −inf`` means no clip, and then the bonus is exactly α·ℓ.  The fused sweeps also record per
state the action gap max_b q(s,b) − second-largest q(s,·) of the *input* q and the support size of π.
They use ``prange`` over states only (no cross-state reduction), like the ``klsim._kernels.dp`` sweeps.
"""

from __future__ import annotations

import numpy as np

from klsim._jit import njit, pnjit, prange

__all__ = ["munchausen_sweep_dense", "munchausen_sweep_csr"]


@njit
def _munchausen_row(qs, alpha, tau, clip_lo, log_pi, bonus):
    """One state: writes log π (A,) and the bonus (A,); returns (v, action gap, support size)."""
    A = qs.shape[0]
    m = -np.inf
    m2 = -np.inf
    for a in range(A):
        x = qs[a]
        if x > m:
            m2 = m
            m = x
        elif x > m2:
            m2 = x
    gap = m - m2 if A > 1 else 0.0
    mt = m / tau
    acc = 0.0
    for a in range(A):
        acc += np.exp(qs[a] / tau - mt)
    L = mt + np.log(acc)
    vs = tau * L
    cnt = 0
    for a in range(A):
        lp = qs[a] / tau - L
        log_pi[a] = lp
        if lp > -np.inf:
            cnt += 1
        ell = qs[a] - vs
        if clip_lo > -np.inf:
            if ell < clip_lo:
                ell = clip_lo
            elif ell > 0.0:
                ell = 0.0
        bonus[a] = alpha * ell
    return vs, gap, cnt


@pnjit
def munchausen_sweep_dense(P, R, gamma, q, alpha, tau, clip_lo, log_pi, v, bonus, gap, support, q_out):
    """One fused M-VI sweep, dense layout.

    Shapes: P (S, A, S); R, q, log_pi, bonus, q_out (S, A); v, gap (S,) float64; support (S,) int64.
    Writes log π_{k+1} = log sm(q/τ), v = τ lse(q/τ), the bonus, and q_out = R + bonus + γ P v
    (``q_out`` must not alias ``q``).
    """
    S, A, S2 = P.shape
    for s in prange(S):
        v[s], gap[s], support[s] = _munchausen_row(q[s], alpha, tau, clip_lo, log_pi[s], bonus[s])
    for s in prange(S):
        for a in range(A):
            acc = 0.0
            for t in range(S2):
                acc += P[s, a, t] * v[t]
            q_out[s, a] = R[s, a] + bonus[s, a] + gamma * acc
    return q_out


@pnjit
def munchausen_sweep_csr(
    indptr, indices, data, R, gamma, q, alpha, tau, clip_lo, log_pi, v, bonus, gap, support, q_out
):
    """CSR twin of :func:`munchausen_sweep_dense`; row ``s*A + a`` of (indptr, indices, data) is P(·|s, a)."""
    S, A = R.shape
    for s in prange(S):
        v[s], gap[s], support[s] = _munchausen_row(q[s], alpha, tau, clip_lo, log_pi[s], bonus[s])
    for s in prange(S):
        for a in range(A):
            row = s * A + a
            acc = 0.0
            for k in range(indptr[row], indptr[row + 1]):
                acc += data[k] * v[indices[k]]
            q_out[s, a] = R[s, a] + bonus[s, a] + gamma * acc
    return q_out
