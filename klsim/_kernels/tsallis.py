"""Numba kernels of the Tsallis family: the regularized greedy step's threshold (spec §6).

Per row, the maximizer of ⟨π, Q⟩ − λ D_q(π‖μ) + τ S_q(π) over the simplex (q > 1, λ, τ ≥ 0, λ + τ > 0) is

    π(a) = [(q−1)(Q(a) − ν) / (q w(a))]_+^{1/(q−1)},   w(a) = λ μ(a)^{1−q} + τ,   Σ_a π(a) = 1.

The support {Q > ν} is a top-K set in Q order.  The kernel sorts the candidates (supp μ when λ > 0, every
action otherwise) by Q descending, locates K by a binary search on the monotone predicate
f(Q_(K+1)) ≥ 0, and solves for ν on the fixed support: in closed form for q = 2, by safeguarded Newton
(bisection fallback) on F(ν) = ln Σ_{a≤K} π_a(ν) otherwise, to |Δν| ≤ 4·eps·max(1, |ν|).  Everything is
computed in log space (ln π_a = p(ln((q−1)/q) + ln(Q_a − ν) − ln w_a), p = 1/(q−1)), so q close to 1
(p ~ 1e6) neither overflows nor underflows, and the result is renormalized in log space.
"""

from __future__ import annotations

import numpy as np

from klsim._jit import njit

__all__ = ["tsallis_threshold_rows"]

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


@njit
def tsallis_threshold_rows(Q, log_mu, lam, tau, q, out_logp, out_nu):
    """Tsallis-regularized greedy step per row, in log space.

    Parameters
    ----------
    Q : (N, A) float64, finite
    log_mu : (N, A) or (1, A) float64
        Log reference policy (read only when ``lam > 0``; −inf marks actions outside supp μ).
    lam, tau : float
        λ, τ ≥ 0 with λ + τ > 0.
    q : float
        Tsallis index, q > 1.
    out_logp : (N, A) float64
        Receives ln π (−inf off the support).
    out_nu : (N,) float64
        Receives the threshold ν.
    """
    N, A = Q.shape
    p = 1.0 / (q - 1.0)
    c0 = np.log((q - 1.0) / q)
    log_lam = np.log(lam) if lam > 0.0 else -np.inf
    log_tau = np.log(tau) if tau > 0.0 else -np.inf
    idx = np.empty(A, dtype=np.int64)
    lw = np.empty(A)
    is_two = q == 2.0
    for i in range(N):
        mrow = i if log_mu.shape[0] > 1 else 0
        Qrow = Q[i]
        # candidates, ln w, and insertion sort by Q descending (ties keep the lower index first)
        n = 0
        for a in range(A):
            out_logp[i, a] = -np.inf
            if lam > 0.0:
                lm = log_mu[mrow, a]
                if lm == -np.inf:
                    continue
                x = log_lam + (1.0 - q) * lm
                if tau > 0.0:
                    if x >= log_tau:
                        lw[a] = x + np.log1p(np.exp(log_tau - x))
                    else:
                        lw[a] = log_tau + np.log1p(np.exp(x - log_tau))
                else:
                    lw[a] = x
            else:
                lw[a] = log_tau
            qa = Qrow[a]
            j = n
            while j > 0 and Qrow[idx[j - 1]] < qa:
                idx[j] = idx[j - 1]
                j -= 1
            idx[j] = a
            n += 1
        if n == 0:
            out_nu[i] = np.nan
            continue
        top = idx[0]
        # lower bracket end: π(a*) = 1 alone; widened by a relative 1e-12 (spec §6 step 2)
        nu_lo = Qrow[top] - np.exp(lw[top] + np.log(q / (q - 1.0)))
        nu_lo -= 1e-12 * max(1.0, abs(nu_lo))
        if is_two:
            # f(ν) on the top-K support is linear: (S1 − ν S0)/2 − 1 with S1 = Σ Q/w, S0 = Σ 1/w
            s1 = 0.0
            s0 = 0.0
            K = 0
            while K < n:
                a = idx[K]
                iw = np.exp(-lw[a])
                s1 += Qrow[a] * iw
                s0 += iw
                K += 1
                if K == n:
                    break
                nxt = Qrow[idx[K]]
                if nxt <= nu_lo or 0.5 * (s1 - nxt * s0) - 1.0 >= 0.0:
                    break
            nu = (s1 - 2.0) / s0
            hi = Qrow[idx[K - 1]]
            lo = nu_lo if K == n else max(nu_lo, Qrow[idx[K]])
            if nu > hi:
                nu = hi
            if nu < lo:
                nu = lo
            tot = 0.0
            for j in range(K):
                a = idx[j]
                d = Qrow[a] - nu
                if d > 0.0:
                    val = 0.5 * d * np.exp(-lw[a])
                    out_logp[i, a] = np.log(val)
                    tot += val
            lt = np.log(tot)
            for j in range(K):
                a = idx[j]
                out_logp[i, a] -= lt
            out_nu[i] = nu
            continue
        # binary search for the smallest K in [1, n] with f(Q_(K+1)) >= 0 (Q_(n+1) := −inf)
        kl = 1
        kh = n
        while kl < kh:
            km = (kl + kh) // 2
            nxt = Qrow[idx[km]]
            if nxt <= nu_lo:
                kh = km
                continue
            F, _ = _log_mass(Qrow, lw, idx, km, nxt, p, c0)
            if F >= 0.0:
                kh = km
            else:
                kl = km + 1
        K = kl
        hi = Qrow[idx[K - 1]]
        lo = nu_lo if K == n else max(nu_lo, Qrow[idx[K]])
        # safeguarded Newton on F(ν) = 0 in [lo, hi]; F(lo) >= 0 > F(hi)
        nu = lo
        for _ in range(200):
            F, dF = _log_mass(Qrow, lw, idx, K, nu, p, c0)
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
        m = -np.inf
        for j in range(K):
            a = idx[j]
            d = Qrow[a] - nu
            if d > 0.0:
                g = p * (c0 + np.log(d) - lw[a])
                out_logp[i, a] = g
                if g > m:
                    m = g
        s = 0.0
        for j in range(K):
            a = idx[j]
            if out_logp[i, a] > -np.inf:
                s += np.exp(out_logp[i, a] - m)
        L = m + np.log(s)
        for j in range(K):
            a = idx[j]
            out_logp[i, a] -= L
        out_nu[i] = nu
    return out_nu
