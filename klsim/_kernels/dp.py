"""Numba kernels of the dynamic-programming family (dense (S, A, S) and CSR over state-action rows).

Every layout-dependent kernel exists in a ``_dense`` and a ``_csr`` form with the same arithmetic, so
the two layouts agree to rounding.  Arrays are float64 / int64 only, one signature per kernel (spec
``kl-regularized-dp.md`` §12, pitfall 12).  Row kernels (``*_rows``) do not depend on the layout.

The regularized sweep (spec §2) is fused: per state ``z = β log μ + q/(λ+τ)``, ``L = lse(z)``,
``log π = z − L``, ``v = (λ+τ) L``; then ``q_next = R + γ P v``.  It never takes the log of a probability.
The ``*_par`` twins of the sweeps use ``prange`` over states only (each state's work is independent; there
is no cross-state reduction), so they give the same bits as the serial kernels whatever the thread count;
callers use them only for large problems (thread start-up dominates small ones).  Dense dot products use eight
interleaved accumulators in a fixed order (no ``fastmath``), which is deterministic and equals the
kernel's ``.py_func`` up to the last ulps of ``exp``/``log``.
"""

from __future__ import annotations

import numpy as np

from klsim._jit import njit, pnjit, prange
from klsim._kernels.common import lse_1d

__all__ = [
    "backup_dense",
    "backup_csr",
    "soft_greedy_rows",
    "hard_greedy_rows",
    "policy_value_rows",
    "soft_sweep_dense",
    "soft_sweep_csr",
    "soft_sweep_dense_par",
    "soft_sweep_csr_par",
]


@njit
def _dot8(x, y):
    """Σ_i x[i] y[i] with eight interleaved accumulators in a fixed order (deterministic, no fastmath)."""
    n = x.shape[0]
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    a4 = 0.0
    a5 = 0.0
    a6 = 0.0
    a7 = 0.0
    n8 = n - n % 8
    for i in range(0, n8, 8):
        a0 += x[i] * y[i]
        a1 += x[i + 1] * y[i + 1]
        a2 += x[i + 2] * y[i + 2]
        a3 += x[i + 3] * y[i + 3]
        a4 += x[i + 4] * y[i + 4]
        a5 += x[i + 5] * y[i + 5]
        a6 += x[i + 6] * y[i + 6]
        a7 += x[i + 7] * y[i + 7]
    for i in range(n8, n):
        a0 += x[i] * y[i]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@njit
def backup_dense(P, R, gamma, v, out):
    """out[s, a] = R[s, a] + γ Σ_s' P[s, a, s'] v[s'].  Shapes: P (S, A, S), R (S, A), v (S,), out (S, A)."""
    S, A, _ = P.shape
    for s in range(S):
        for a in range(A):
            out[s, a] = R[s, a] + gamma * _dot8(P[s, a], v)
    return out


@njit
def backup_csr(indptr, indices, data, R, gamma, v, out):
    """CSR twin of :func:`backup_dense`; row ``s*A + a`` of (indptr, indices, data) is P(·|s, a)."""
    S, A = R.shape
    for s in range(S):
        for a in range(A):
            row = s * A + a
            acc = 0.0
            for k in range(indptr[row], indptr[row + 1]):
                acc += data[k] * v[indices[k]]
            out[s, a] = R[s, a] + gamma * acc
    return out


@njit
def _soft_row(q, log_mu, beta, temp, log_pi):
    """One state of the regularized greedy step; writes ``log_pi`` (A,), returns v = temp·lse(z).

    z = β log μ + q/temp (the β·log μ term is skipped when β = 0, so log μ = −inf there is harmless);
    an all-(−inf) z gives log π = −inf and v = −inf, never NaN.
    """
    A = q.shape[0]
    for a in range(A):
        z = q[a] / temp
        if beta != 0.0:
            z += beta * log_mu[a]
        log_pi[a] = z
    L = lse_1d(log_pi)
    if L == -np.inf:
        for a in range(A):
            log_pi[a] = -np.inf
        return -np.inf
    for a in range(A):
        log_pi[a] = log_pi[a] - L
    return temp * L


@njit
def soft_greedy_rows(q, log_mu, beta, temp, log_pi, v):
    """Regularized greedy step G^{λ,τ}_μ per state (spec §2), temp = λ+τ > 0 and β = λ/(λ+τ).

    Shapes: q, log_mu, log_pi (S, A); v (S,).  log_pi[s] = z − lse(z), v[s] = temp·lse(z),
    z = β log_mu[s] + q[s]/temp.
    """
    for s in range(q.shape[0]):
        v[s] = _soft_row(q[s], log_mu[s], beta, temp, log_pi[s])
    return v


@njit
def hard_greedy_rows(q, log_pi, v):
    """λ = τ = 0 branch: log π = 0 at the first argmax (ties to the lowest index, C7), −inf elsewhere; v = max q."""
    S, A = q.shape
    for s in range(S):
        best = 0
        for a in range(1, A):
            if q[s, a] > q[s, best]:
                best = a
        for a in range(A):
            log_pi[s, a] = -np.inf
        log_pi[s, best] = 0.0
        v[s] = q[s, best]
    return v


@njit
def policy_value_rows(log_pi, q, log_mu, kl_coef, entropy_coef, out):
    """out[s] = Σ_a π(a|s) [q(s,a) − λ(ln π − ln μ)(s,a) − τ ln π(s,a)] = ⟨π,q⟩ − λKL(π‖μ) + τH(π).

    C11: actions with π(a|s) = 0 contribute 0; π(a|s) > 0 = μ(a|s) with λ > 0 gives −inf.  ``log_mu`` is
    not read when λ = 0.
    """
    S, A = q.shape
    for s in range(S):
        acc = 0.0
        for a in range(A):
            lp = log_pi[s, a]
            if lp == -np.inf:
                continue
            term = q[s, a] - entropy_coef * lp
            if kl_coef != 0.0:
                lm = log_mu[s, a]
                if lm == -np.inf:
                    acc = -np.inf
                    break
                term -= kl_coef * (lp - lm)
            acc += np.exp(lp) * term
        out[s] = acc
    return out


@njit
def soft_sweep_dense(P, R, gamma, q, log_mu, beta, temp, log_pi, v, q_out):
    """Fused regularized Bellman sweep, dense layout (spec §2); temp = λ+τ > 0, β = λ/(λ+τ).

    Writes log_pi (S, A) = G^{λ,τ}_μ(q), v (S,) = (λ+τ)·lse(β log μ + q/(λ+τ)) and
    q_out (S, A) = R + γ P v.  Shapes: P (S, A, S); R, q, log_mu (S, A).  ``q_out`` must not alias ``q``.
    """
    S, A, _ = P.shape
    for s in range(S):
        v[s] = _soft_row(q[s], log_mu[s], beta, temp, log_pi[s])
    for s in range(S):
        for a in range(A):
            q_out[s, a] = R[s, a] + gamma * _dot8(P[s, a], v)
    return q_out


@njit
def soft_sweep_csr(indptr, indices, data, R, gamma, q, log_mu, beta, temp, log_pi, v, q_out):
    """CSR twin of :func:`soft_sweep_dense`; row ``s*A + a`` of (indptr, indices, data) is P(·|s, a)."""
    S, A = R.shape
    for s in range(S):
        v[s] = _soft_row(q[s], log_mu[s], beta, temp, log_pi[s])
    for s in range(S):
        for a in range(A):
            row = s * A + a
            acc = 0.0
            for k in range(indptr[row], indptr[row + 1]):
                acc += data[k] * v[indices[k]]
            q_out[s, a] = R[s, a] + gamma * acc
    return q_out


@pnjit
def soft_sweep_dense_par(P, R, gamma, q, log_mu, beta, temp, log_pi, v, q_out):
    """Parallel twin of :func:`soft_sweep_dense` (``prange`` over independent states; same arithmetic)."""
    S, A, _ = P.shape
    for s in prange(S):
        v[s] = _soft_row(q[s], log_mu[s], beta, temp, log_pi[s])
    for s in prange(S):
        for a in range(A):
            q_out[s, a] = R[s, a] + gamma * _dot8(P[s, a], v)
    return q_out


@pnjit
def soft_sweep_csr_par(indptr, indices, data, R, gamma, q, log_mu, beta, temp, log_pi, v, q_out):
    """Parallel twin of :func:`soft_sweep_csr` (``prange`` over independent states; same arithmetic)."""
    S, A = R.shape
    for s in prange(S):
        v[s] = _soft_row(q[s], log_mu[s], beta, temp, log_pi[s])
    for s in prange(S):
        for a in range(A):
            row = s * A + a
            acc = 0.0
            for k in range(indptr[row], indptr[row + 1]):
                acc += data[k] * v[indices[k]]
            q_out[s, a] = R[s, a] + gamma * acc
    return q_out
