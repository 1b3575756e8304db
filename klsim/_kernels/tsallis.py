"""Numba kernels of the Tsallis family: the regularized greedy step's threshold (spec §6).

Per row, the maximizer of ⟨π, Q⟩ − λ D_q(π‖μ) + τ S_q(π) over the simplex (q > 1, λ, τ ≥ 0, λ + τ > 0) is

    π(a) = [(q−1)(Q(a) − ν) / (q w(a))]_+^{1/(q−1)},   w(a) = λ μ(a)^{1−q} + τ,   Σ_a π(a) = 1.

The support {Q > ν} is a top-K set in Q order, and ν ≥ ν_lo = Q(a*) − q w(a*)/(q−1) (where the best
candidate a* alone has mass 1).  The kernel sorts the candidates (supp μ when λ > 0, every action otherwise)
with Q > ν_lo by Q descending, locates K by a binary search on the monotone predicate
f(Q_(K+1)) ≥ 0, and solves for ν on the fixed support: in closed form for q = 2, by safeguarded Newton
(bisection fallback) on F(ν) = ln Σ_{a≤K} π_a(ν) otherwise, to |Δν| ≤ 4·eps·max(1, |ν|).  Everything is
computed in log space (ln π_a = p(ln((q−1)/q) + ln(Q_a − ν) − ln w_a), p = 1/(q−1)), so q close to 1
(p ~ 1e6) neither overflows nor underflows, and the result is renormalized in log space.

q = 2 with λ = 0 (sparsemax, the common case) has its own row function, dispatched outside the row loop,
which filters the candidates with the two-largest-values bound on ν before sorting
(:func:`_row_q2_entropy`); its result is bit-identical to the general q = 2 path.
"""

from __future__ import annotations

import numpy as np

from klsim._jit import njit, pnjit, prange

__all__ = [
    "tsallis_threshold_rows",
    "tsallis_threshold_rows_par",
    "PARALLEL_MIN_ENTRIES",
    "PARALLEL_MIN_THREADS",
]

PARALLEL_MIN_ENTRIES = 1 << 18
"""Batches with at least this many entries (N·A) may use the parallel kernel; smaller ones use the serial one."""

PARALLEL_MIN_THREADS = 4
"""The parallel kernel is used only with at least this many numba threads (as ``klsim.dp``'s CSR sweep): on 2
shared, loaded cores thread start-up and starvation cost more than the second core gains (measured on the
development machine: 100,000 × 20 at q = 2, 68 ms with 2 threads vs 67 ms serial, wall clock)."""

_EPS = 2.220446049250313e-16


@njit
def _log_mass(Qrow, lw, idx, K, nu, p, c0):
    """F(ν) = ln Σ_{j<K} π_{idx[j]}(ν) and dF/dν (log space, max-shifted); terms with Q ≤ ν are 0."""
    m = -np.inf
    for j in range(K):
        d = Qrow[idx[j]] - nu
        if d > 0.0:
            g = p * (c0 + np.log(d) - lw[idx[j]])
            if g > m:
                m = g
    if m == -np.inf:
        return -np.inf, 0.0
    s = 0.0
    ds = 0.0
    for j in range(K):
        d = Qrow[idx[j]] - nu
        if d > 0.0:
            e = np.exp(p * (c0 + np.log(d) - lw[idx[j]]) - m)
            s += e
            ds += e / d
    return m + np.log(s), -p * ds / s


@njit(inline="always")
def _log_w(lm, lam, tau, log_lam, log_tau, q):
    """ln w(a) = ln(λ μ(a)^{1−q} + τ), evaluated as a logaddexp (no overflow for tiny μ)."""
    if lam > 0.0:
        x = log_lam + (1.0 - q) * lm
        if tau > 0.0:
            if x >= log_tau:
                return x + np.log1p(np.exp(log_tau - x))
            return log_tau + np.log1p(np.exp(x - log_tau))
        return x
    return log_tau


@njit(inline="always")
def _sort_desc(qc, idx, m):
    """Insertion sort of ``idx[:m]`` by ``qc`` descending; ties keep their order (the lower index first)."""
    for k in range(m):
        a = idx[k]
        qa = qc[a]
        j = k
        while j > 0 and qc[idx[j - 1]] < qa:
            idx[j] = idx[j - 1]
            j -= 1
        idx[j] = a


@njit(inline="always")
def _q2_nu(s1, s0, lo, hi):
    """q = 2 threshold on a fixed support, ν = (S1 − 2)/S0, clipped to [lo, hi] against rounding."""
    nu = (s1 - 2.0) / s0
    if nu > hi:
        nu = hi
    if nu < lo:
        nu = lo
    return nu


@njit(inline="always")
def _q2_finish(qc, idx, K, s1, s0, lo, lam, lw, out):
    """q = 2 on the support ``idx[:K]``: ν = (S1 − 2)/S0 clipped to [lo, Q_(K)], then ln π; returns ν.

    π_a ∝ (Q_a − ν)/w_a on the support, normalized by its sum (one log per support action); with λ > 0,
    ``lw`` holds ln w on entry.  ``lw`` is reused for the unnormalized masses.
    """
    nu = _q2_nu(s1, s0, lo, qc[idx[K - 1]])
    tot = 0.0
    for j in range(K):
        a = idx[j]
        d = qc[a] - nu
        val = max(d, 0.0) * (np.exp(-lw[a]) if lam > 0.0 else 1.0)
        lw[a] = val
        tot += val
    inv_tot = 1.0 / tot
    for j in range(K):
        a = idx[j]
        if lw[a] > 0.0:
            out[a] = np.log(lw[a] * inv_tot)
    return nu


@njit(inline="always")
def _candidates(Qrow, lmrow, lam, tau, log_lam, log_tau, q, idx, lw, qc, out):
    """Centered, sorted candidates that can be in the support; returns (m, n, ν_lo, c).

    Pass 1 finds the best candidate a* (largest Q; supp μ when λ > 0, every action otherwise) and centers the
    row, qc = Q − c with c = Q(a*), so that huge Q cannot overflow the sums.  The bracket end
    ν_lo = −q w(a*)/(q−1) (centered), where π(a*) = 1 alone, is widened by a relative 1e-12 (spec §6 step 2).
    Since ν ≥ ν_lo, only candidates with qc > ν_lo can carry mass: pass 2 compacts them (branch-free, index
    order) and insertion-sorts them into ``idx[:m]`` (qc descending, ties keep the lower index first),
    filling ``lw`` = ln w.  ``n`` counts all candidates; ``out`` is set to −inf.
    """
    A = Qrow.shape[0]
    n = 0
    if lam > 0.0:
        best = -1
        for a in range(A):
            out[a] = -np.inf
            if lmrow[a] == -np.inf:
                continue
            n += 1
            if best < 0 or Qrow[a] > Qrow[best]:
                best = a
        if n == 0:
            return 0, 0, np.nan, 0.0
        c = Qrow[best]
        nu_lo = -np.exp(_log_w(lmrow[best], lam, tau, log_lam, log_tau, q) + np.log(q / (q - 1.0)))
    else:
        c = Qrow[0]
        for a in range(A):
            out[a] = -np.inf
            c = max(c, Qrow[a])
        n = A
        nu_lo = -q * tau / (q - 1.0)
    nu_lo -= 1e-12 * max(1.0, abs(nu_lo))
    m = 0
    for a in range(A):
        qc[a] = Qrow[a] - c
        idx[m] = a
        if lam > 0.0:
            m += (qc[a] > nu_lo) and lmrow[a] > -np.inf
        else:
            m += qc[a] > nu_lo
    for k in range(m):
        lw[idx[k]] = _log_w(lmrow[idx[k]], lam, tau, log_lam, log_tau, q)
    _sort_desc(qc, idx, m)
    return m, n, nu_lo, c


@njit(inline="always")
def _row_q2(Qrow, lmrow, lam, tau, log_lam, log_tau, idx, lw, qc, out):
    """q = 2: f is linear on a fixed top-K support, f(ν) = (S1 − ν S0)/2 − 1 with S1 = Σ Q/w, S0 = Σ 1/w."""
    m, n, nu_lo, c = _candidates(Qrow, lmrow, lam, tau, log_lam, log_tau, 2.0, idx, lw, qc, out)
    if n == 0:
        return np.nan
    inv_tau = 1.0 / tau if tau > 0.0 else 0.0
    s1 = 0.0
    s0 = 0.0
    K = 0
    nxt = -np.inf
    while K < m:
        a = idx[K]
        iw = np.exp(-lw[a]) if lam > 0.0 else inv_tau
        s1 += qc[a] * iw
        s0 += iw
        K += 1
        nxt = qc[idx[K]] if K < m else -np.inf  # candidates beyond idx[:m] have qc <= ν_lo
        if nxt == -np.inf or 0.5 * (s1 - nxt * s0) - 1.0 >= 0.0:
            break
    return c + _q2_finish(qc, idx, K, s1, s0, max(nu_lo, nxt), lam, lw, out)


@njit
def _row_q2_sorted_call(Qrow, tau, idx, lw, qc, out):
    """Not inlined: the sorted q = 2 path (λ = 0), the fallback of :func:`_row_q2_entropy`."""
    return _row_q2(Qrow, Qrow, 0.0, tau, -np.inf, np.log(tau), idx, lw, qc, out)


@njit(inline="always")
def _row_q2_entropy(Qrow, tau, nu_lo, iw, idx, lw, out):
    """q = 2, λ = 0 (sparsemax of Q/(2τ)): :func:`_row_q2` with a tighter candidate filter, same bits.

    Pass 1 keeps the two largest values c ≥ c2 (of the multiset).  For any action set S, the root of
    Σ_S (Q − ν) = 2τ is ≤ ν, since Σ_S (Q − ν) ≤ Σ_a [Q − ν]_+ (the argument of Michelot's algorithm); so
    with S = {top two}, ν ≥ (c + c2 − 2τ)/2; centered, the filter
    b = max(ν_lo, (c2 − c − 2τ)/2) (widened by a relative 1e-12) keeps about the support alone (3.0
    candidates for 4.6 with ν_lo on N(0,1) rows, A = 20, τ = 0.5), so the insertion sort is shorter.  The
    candidates are compacted as (centered value, action) pairs into ``lw`` / ``idx`` (no indirection in
    the sort and the scan).  The support scan, ν and ln π then run exactly as in :func:`_row_q2` (same
    order, same arithmetic); at the end of the shortened list the next value is the largest filtered-out
    one above ν_lo, as in the full list.  If that test fails (possible only through rounding), it returns
    NaN and :func:`_rows_q2_entropy` redoes the row on the full sorted path, so the result is bit-identical
    to :func:`_row_q2`.  ``nu_lo`` = −2τ widened by a relative 1e-12 and ``iw`` = 1/τ come from the caller.
    """
    A = Qrow.shape[0]
    c = -np.inf
    c2 = -np.inf
    fin = True
    for a in range(A):
        out[a] = -np.inf
        x = Qrow[a]
        fin &= (x - x) == 0.0  # False for NaN and ±inf
        c2 = max(c2, min(c, x))
        c = max(c, x)
    if not fin:
        return np.nan  # flagged; left NaN by the redo pass, so the caller can name the bad entry
    b = 0.5 * ((c2 - c) - 2.0 * tau)
    b -= 1e-12 * max(1.0, abs(b))
    b = max(b, nu_lo)
    m = 0
    ex = -np.inf  # the largest centered value filtered out
    for a in range(A):
        x = Qrow[a] - c
        lw[m] = x
        idx[m] = a
        m += x > b
        ex = max(ex, x if x <= b else -np.inf)
    # insertion sort of the (value, action) pairs, value descending, ties keep the lower action first
    for k in range(1, m):
        v = lw[k]
        a = idx[k]
        j = k
        while j > 0 and lw[j - 1] < v:
            lw[j] = lw[j - 1]
            idx[j] = idx[j - 1]
            j -= 1
        lw[j] = v
        idx[j] = a
    ex = ex if ex > nu_lo else -np.inf
    s1 = 0.0
    s0 = 0.0
    K = 0
    nxt = -np.inf
    found = False
    while K < m:
        s1 += lw[K] * iw
        s0 += iw
        K += 1
        nxt = lw[K] if K < m else ex
        if nxt == -np.inf or 0.5 * (s1 - nxt * s0) - 1.0 >= 0.0:
            found = True
            break
    if not found:
        return np.nan  # rounding only: the caller redoes the row on the full sorted path
    nu = _q2_nu(s1, s0, max(nu_lo, nxt), lw[K - 1])
    tot = 0.0
    for j in range(K):
        val = max(lw[j] - nu, 0.0) * 1.0
        lw[j] = val
        tot += val
    inv_tot = 1.0 / tot
    for j in range(K):
        if lw[j] > 0.0:
            out[idx[j]] = np.log(lw[j] * inv_tot)
    return c + nu


@njit(inline="always")
def _rows_q2_entropy(Q, tau, start, stop, idx, lw, qc, out_logp, out_nu):
    """Rows ``start:stop`` at q = 2, λ = 0; rows the fast path flags (NaN) are redone on the sorted path."""
    nu_lo = -2.0 * tau
    nu_lo -= 1e-12 * max(1.0, abs(nu_lo))
    iw = 1.0 / tau
    for i in range(start, stop):
        out_nu[i] = _row_q2_entropy(Q[i], tau, nu_lo, iw, idx, lw, out_logp[i])
    _redo_flagged_q2_rows(Q, tau, start, stop, idx, lw, qc, out_logp, out_nu)


@njit
def _redo_flagged_q2_rows(Q, tau, start, stop, idx, lw, qc, out_logp, out_nu):
    """Rows ``start:stop`` whose ``out_nu`` is NaN (flagged by :func:`_row_q2_entropy`): the sorted path.

    Rows holding NaN or ±inf stay flagged (ν = NaN, ln π = −inf).
    """
    for i in range(start, stop):
        if np.isnan(out_nu[i]) and np.all(np.isfinite(Q[i])):
            out_nu[i] = _row_q2_sorted_call(Q[i], tau, idx, lw, qc, out_logp[i])


@njit(inline="always")
def _row_general(Qrow, lmrow, lam, tau, log_lam, log_tau, q, idx, lw, qc, out):
    """q > 1, q ≠ 2: binary search for K on the sorted candidates, safeguarded Newton on F(ν) = 0 (log space)."""
    p = 1.0 / (q - 1.0)
    c0 = np.log((q - 1.0) / q)
    m, n, nu_lo, c = _candidates(Qrow, lmrow, lam, tau, log_lam, log_tau, q, idx, lw, qc, out)
    if n == 0:
        return np.nan
    # binary search for the smallest K in [1, m] with f(Q_(K+1)) >= 0 (Q_(m+1) <= ν_lo: always true)
    kl = 1
    kh = m
    while kl < kh:
        km = (kl + kh) // 2
        F, _ = _log_mass(qc, lw, idx, km, qc[idx[km]], p, c0)
        if F >= 0.0:
            kh = km
        else:
            kl = km + 1
    K = kl
    hi = qc[idx[K - 1]]
    lo = nu_lo if K == m else max(nu_lo, qc[idx[K]])
    # safeguarded Newton on F(ν) = 0 in [lo, hi]; F(lo) >= 0 > F(hi)
    nu = lo
    for _ in range(200):
        F, dF = _log_mass(qc, lw, idx, K, nu, p, c0)
        if F == 0.0:
            break
        if F > 0.0:
            lo = nu
        else:
            hi = nu
        if dF < 0.0 and F != -np.inf:
            nn = nu - F / dF
        else:
            nn = 0.5 * (lo + hi)
        if not (lo < nn < hi):
            nn = 0.5 * (lo + hi)
        step = abs(nn - nu)
        nu = nn
        if step <= 4.0 * _EPS * max(1.0, abs(nu)) or hi - lo <= 4.0 * _EPS * max(1.0, abs(nu)):
            break
    # log π on the support, renormalized in log space
    mx = -np.inf
    for j in range(K):
        a = idx[j]
        d = qc[a] - nu
        if d > 0.0:
            g = p * (c0 + np.log(d) - lw[a])
            out[a] = g
            if g > mx:
                mx = g
    ssum = 0.0
    for j in range(K):
        a = idx[j]
        if out[a] > -np.inf:
            ssum += np.exp(out[a] - mx)
    L = mx + np.log(ssum)
    for j in range(K):
        out[idx[j]] -= L
    return c + nu


@njit
def tsallis_threshold_rows(Q, log_mu, lam, tau, q, out_logp, out_nu):
    """Tsallis-regularized greedy step per row, in log space (serial).

    Parameters
    ----------
    Q : (N, A) float64, finite (at q = 2 with λ = 0 a row holding NaN or ±inf is flagged with ν = NaN)
    log_mu : (N, A) or (1, A) float64
        Log reference policy (read only when ``lam > 0``; −inf marks actions outside supp μ).
    lam, tau : float
        λ, τ ≥ 0 with λ + τ > 0.
    q : float
        Tsallis index, q > 1.
    out_logp : (N, A) float64
        Receives ln π (−inf off the support).
    out_nu : (N,) float64
        Receives the threshold ν (NaN for a row without candidates).
    """
    N, A = Q.shape
    log_lam = np.log(lam) if lam > 0.0 else -np.inf
    log_tau = np.log(tau) if tau > 0.0 else -np.inf
    idx = np.empty(A, dtype=np.int64)
    lw = np.empty(A)
    qc = np.empty(A)
    if q == 2.0 and lam == 0.0:  # sparsemax: the dispatch is hoisted out of the row loop
        _rows_q2_entropy(Q, tau, 0, N, idx, lw, qc, out_logp, out_nu)
        return out_nu
    for i in range(N):
        lmrow = log_mu[i] if log_mu.shape[0] > 1 else log_mu[0]
        if q == 2.0:
            out_nu[i] = _row_q2(Q[i], lmrow, lam, tau, log_lam, log_tau, idx, lw, qc, out_logp[i])
        else:
            out_nu[i] = _row_general(Q[i], lmrow, lam, tau, log_lam, log_tau, q, idx, lw, qc, out_logp[i])
    return out_nu


@pnjit
def tsallis_threshold_rows_par(Q, log_mu, lam, tau, q, out_logp, out_nu):
    """Parallel twin of :func:`tsallis_threshold_rows` (``prange`` over chunks of independent rows, same arithmetic)."""
    N, A = Q.shape
    log_lam = np.log(lam) if lam > 0.0 else -np.inf
    log_tau = np.log(tau) if tau > 0.0 else -np.inf
    n_chunks = min(N, 64)
    for c in prange(n_chunks):  # rows are independent; scratch buffers per chunk
        idx = np.empty(A, dtype=np.int64)
        lw = np.empty(A)
        qc = np.empty(A)
        if q == 2.0 and lam == 0.0:
            _rows_q2_entropy(
                Q, tau, c * N // n_chunks, (c + 1) * N // n_chunks, idx, lw, qc, out_logp, out_nu
            )
            continue
        for i in range(c * N // n_chunks, (c + 1) * N // n_chunks):
            lmrow = log_mu[i] if log_mu.shape[0] > 1 else log_mu[0]
            if q == 2.0:
                out_nu[i] = _row_q2(Q[i], lmrow, lam, tau, log_lam, log_tau, idx, lw, qc, out_logp[i])
            else:
                out_nu[i] = _row_general(Q[i], lmrow, lam, tau, log_lam, log_tau, q, idx, lw, qc, out_logp[i])
    return out_nu
