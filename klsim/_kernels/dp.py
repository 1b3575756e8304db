"""Numba kernels of the dynamic-programming family (dense (S, A, S) and CSR over state-action rows).

Every layout-dependent kernel exists in a ``_dense`` and a ``_csr`` form computing the same formula; the
two layouts agree to rounding (the dense dot product sums in eight interleaved lanes, CSR rows in storage
order).  Arrays are float64 / int64 only, one signature per kernel (spec
``kl-regularized-dp.md`` §12, pitfall 12).  Row kernels (``*_rows``) do not depend on the layout.

The regularized sweep (spec §2) is fused: per state ``z = β log μ + q/(λ+τ)``, ``L = lse(z)``,
``log π = z − L``, ``v = (λ+τ) L``; then ``q_next = R + γ P v``.  It never takes the log of a probability.
The ``soft_sweep_csr_par`` twin uses ``prange`` over states only (each state's work is independent; there
is no cross-state reduction), so it gives the same bits as the serial kernel whatever the thread count;
callers use it only for large problems (thread start-up dominates small ones).  Dense dot products use eight
interleaved accumulators in a fixed order (no ``fastmath``), which is deterministic and equals the
kernel's ``.py_func`` up to the last ulps of ``log``.  The soft step's exponentials come from a branch-free
polynomial ``_exp_nonpos`` (~1.5 ulp) that LLVM vectorizes without ``fastmath``; the soft step runs in blocks
of 256 states.
"""

from __future__ import annotations

import numpy as np

from klsim._jit import njit, pnjit, prange

__all__ = [
    "backup_dense",
    "backup_csr",
    "soft_greedy_rows",
    "hard_greedy_rows",
    "policy_value_rows",
    "soft_sweep_dense",
    "soft_sweep_csr",
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
def _csr_row_dot(indptr, indices, data, v, row):
    """Σ_k data[k] v[indices[k]] over CSR row ``row``, in storage order.

    Indices are converted to unsigned so numba emits no negative-index wraparound (they are validated
    non-negative when the MDP is built); this is about 2× faster and gives the same bits.
    """
    acc = 0.0
    k = np.uint64(indptr[row])
    end = np.uint64(indptr[row + 1])
    while k < end:
        acc += data[k] * v[np.uint64(indices[k])]
        k += np.uint64(1)
    return acc


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
            acc = _csr_row_dot(indptr, indices, data, v, row)
            out[s, a] = R[s, a] + gamma * acc
    return out


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.44269504088896338700e00
_EXP_MIN = -700.0
_C2, _C3, _C4, _C5, _C6, _C7 = 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040
_C8, _C9, _C10, _C11, _C12 = 1 / 40320, 1 / 362880, 1 / 3628800, 1 / 39916800, 1 / 479001600
_CHUNK = 256
"""States per block of the soft step (the exponentials of a block are computed in one vectorized loop)."""


@njit
def _exp_nonpos(x, out, n):
    """out[i] = exp(x[i]) for i < n and x[i] ≤ 0 (−inf allowed); ``out`` must not alias ``x`` (else it is scalar).

    Branch-free, so LLVM vectorizes it without ``fastmath``: Cody-Waite reduction x = k ln2 + r with
    |r| ≤ ln2/2, the degree-12 Taylor polynomial of e^r (truncation < 2.5e-16 relative), and 2^k applied
    through the exponent bits.  Measured max relative error 3.3e-16 (~1.5 ulp).  Inputs below −700 give 0:
    they only enter sums whose largest term is e^0 = 1, where e^−700 < 1e-304 is below rounding.
    """
    bits = out.view(np.int64)
    for i in range(n):
        xi = x[i]
        xc = max(xi, _EXP_MIN)
        k = np.floor(xc * _LOG2E + 0.5)
        r = (xc - k * _LN2_HI) - k * _LN2_LO
        p = _C11 + r * _C12
        p = _C10 + r * p
        p = _C9 + r * p
        p = _C8 + r * p
        p = _C7 + r * p
        p = _C6 + r * p
        p = _C5 + r * p
        p = _C4 + r * p
        p = _C3 + r * p
        p = _C2 + r * p
        p = 1.0 + r * p
        p = 1.0 + r * p
        keep = 1.0 if xi >= _EXP_MIN else 0.0
        out[i] = p
        bits[i] = bits[i] + (np.int64(k) << 52)
        out[i] = out[i] * keep


@njit
def _soft_block(q, log_mu, beta, temp, log_pi, v, s0, s1, zbuf, ebuf, mbuf):
    """Regularized greedy step for states s0 ≤ s < s1 (spec §2); q, log_mu, log_pi C-contiguous (S, A).

    z = β log μ + q·(1/temp) (the β·log μ term is skipped when β = 0, so log μ = −inf there is harmless);
    L = max z + ln Σ exp(z − max z); log π = z − L; v = temp·L.  An all-(−inf) z gives log π = −inf and
    v = −inf, never NaN.  Scratch: ``zbuf``, ``ebuf`` (≥ (s1−s0)·A, distinct so the exponential loop
    vectorizes), ``mbuf`` (≥ s1−s0).  Flat unsigned indices spare numba's negative-index wraparound.
    """
    A = q.shape[1]
    Au = np.uint64(A)
    qf = q.reshape(-1)
    mf = log_mu.reshape(-1)
    pf = log_pi.reshape(-1)
    inv = 1.0 / temp
    n = s1 - s0
    base = np.uint64(s0) * Au
    for i in range(n):
        off = base + np.uint64(i) * Au
        m = -np.inf
        for a in range(A):
            j = off + np.uint64(a)
            z = qf[j] * inv
            if beta != 0.0:
                z += beta * mf[j]
            pf[j] = z
            m = max(m, z)
        mbuf[np.uint64(i)] = m
    for i in range(n):
        off = base + np.uint64(i) * Au
        loc = np.uint64(i) * Au
        m = mbuf[np.uint64(i)]
        for a in range(A):
            zbuf[loc + np.uint64(a)] = pf[off + np.uint64(a)] - m if m != -np.inf else -np.inf
    _exp_nonpos(zbuf, ebuf, n * A)
    for i in range(n):
        off = base + np.uint64(i) * Au
        loc = np.uint64(i) * Au
        m = mbuf[np.uint64(i)]
        s = np.uint64(s0) + np.uint64(i)
        if m == -np.inf:
            for a in range(A):
                pf[off + np.uint64(a)] = -np.inf
            v[s] = -np.inf
            continue
        acc = 0.0
        for a in range(A):
            acc += ebuf[loc + np.uint64(a)]
        L = m + np.log(acc)
        for a in range(A):
            pf[off + np.uint64(a)] = pf[off + np.uint64(a)] - L
        v[s] = temp * L


@njit
def soft_greedy_rows(q, log_mu, beta, temp, log_pi, v):
    """Regularized greedy step G^{λ,τ}_μ per state (spec §2), temp = λ+τ > 0 and β = λ/(λ+τ).

    Shapes: q, log_mu, log_pi (S, A), C-contiguous; v (S,).  log_pi[s] = z − lse(z), v[s] = temp·lse(z),
    z = β log_mu[s] + q[s]/temp.
    """
    S, A = q.shape
    zbuf = np.empty(_CHUNK * A)
    ebuf = np.empty(_CHUNK * A)
    mbuf = np.empty(_CHUNK)
    for s0 in range(0, S, _CHUNK):
        _soft_block(q, log_mu, beta, temp, log_pi, v, s0, min(s0 + _CHUNK, S), zbuf, ebuf, mbuf)
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
    soft_greedy_rows(q, log_mu, beta, temp, log_pi, v)
    for s in range(S):
        for a in range(A):
            q_out[s, a] = R[s, a] + gamma * _dot8(P[s, a], v)
    return q_out


@njit
def soft_sweep_csr(indptr, indices, data, R, gamma, q, log_mu, beta, temp, log_pi, v, q_out):
    """CSR twin of :func:`soft_sweep_dense`; row ``s*A + a`` of (indptr, indices, data) is P(·|s, a)."""
    S, A = R.shape
    soft_greedy_rows(q, log_mu, beta, temp, log_pi, v)
    for s in range(S):
        for a in range(A):
            row = s * A + a
            acc = _csr_row_dot(indptr, indices, data, v, row)
            q_out[s, a] = R[s, a] + gamma * acc
    return q_out


@pnjit
def soft_sweep_csr_par(indptr, indices, data, R, gamma, q, log_mu, beta, temp, log_pi, v, q_out):
    """Parallel twin of :func:`soft_sweep_csr` (``prange`` over independent states; same arithmetic)."""
    S, A = R.shape
    n_chunks = (S + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        s0 = c * _CHUNK
        zbuf, ebuf, mbuf = np.empty(_CHUNK * A), np.empty(_CHUNK * A), np.empty(_CHUNK)
        _soft_block(q, log_mu, beta, temp, log_pi, v, s0, min(s0 + _CHUNK, S), zbuf, ebuf, mbuf)
    for s in prange(S):
        for a in range(A):
            row = s * A + a
            acc = _csr_row_dot(indptr, indices, data, v, row)
            q_out[s, a] = R[s, a] + gamma * acc
    return q_out
