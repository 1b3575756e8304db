"""Numba kernels of the dynamic-programming family (dense (S, A, S) and CSR over state-action rows).

Every kernel exists in a ``_dense`` and a ``_csr`` form with the same arithmetic order, so the two
layouts agree to rounding.  Arrays are float64 / int64 only (spec §12, pitfall 12).
"""

from __future__ import annotations

from klsim._jit import njit

__all__ = ["backup_dense", "backup_csr"]


@njit
def backup_dense(P, R, gamma, v, out):
    """out[s, a] = R[s, a] + γ Σ_s' P[s, a, s'] v[s'].  Shapes: P (S, A, S), R (S, A), v (S,), out (S, A)."""
    S, A, S2 = P.shape
    for s in range(S):
        for a in range(A):
            acc = 0.0
            for t in range(S2):
                acc += P[s, a, t] * v[t]
            out[s, a] = R[s, a] + gamma * acc
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
