"""Best-of-N kernels: the log-space BoN law on reward levels, KL reductions, sequence-reward laws.

All inputs are float64/int64 arrays and scalars; outputs go to ``out`` buffers.  The formulas are those of
spec ``best-of-n-vs-kl-rl.md`` §3.2 (stable log-space BoN law) and §4 (law of the sequence reward).
"""

from __future__ import annotations

import math

import numpy as np

from klsim._jit import njit
from klsim._kernels.common import lse_1d

__all__ = [
    "log1mexp",
    "g_loglog",
    "h_log1mexpexp",
    "bon_level_law",
    "kl_from_logs_1d",
    "bon_kl_levels",
    "lattice_log_law",
    "composition_types",
    "group_logsumexp",
    "inference_fixed_point",
    "tilt_kl_level",
]

_LOG2 = math.log(2.0)


@njit
def _logaddexp(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@njit
def _log_cdf(log_mass, out):
    """ln F_k = ln Σ_{j≤k} P_j by a forward log-cumsum-exp into ``out``, with ln F_{K−1} pinned to 0."""
    acc = -np.inf
    for k in range(log_mass.shape[0]):
        acc = _logaddexp(acc, log_mass[k])
        out[k] = acc
    out[log_mass.shape[0] - 1] = 0.0


@njit
def log1mexp(x):
    """ln(1 − e^{−x}) for x ≥ 0 (Mächler's switch at ln 2); x = 0 gives −inf, x = +inf gives 0."""
    if x <= 0.0:
        return -np.inf
    if x < _LOG2:
        return math.log(-math.expm1(-x))
    return math.log1p(-math.exp(-x))


@njit
def g_loglog(u):
    """g(u) = ln(−ln(1 − e^u)) for u ≤ 0 (spec §3.2); u = −inf gives −inf, u = 0 gives +inf."""
    if u == -np.inf:
        return -np.inf
    if u >= 0.0:
        return np.inf
    if u < -18.0:
        return u + math.log1p(math.exp(u) / 2.0)
    if u < -_LOG2:
        return math.log(-math.log1p(-math.exp(u)))
    return math.log(-math.log(-math.expm1(u)))


@njit
def h_log1mexpexp(v):
    """h(v) = ln(1 − exp(−e^v)) (spec §3.2); v = −inf gives −inf, v = +inf gives 0."""
    if v == np.inf:
        return 0.0
    if v == -np.inf:
        return -np.inf
    if v < -18.0:
        return v + math.log1p(-math.exp(v) / 2.0)
    return log1mexp(math.exp(v))


@njit
def bon_level_law(log_mass, log_n, log_cdf, log_tail, log_a, log_q, ell):
    """Exact best-of-N level law in log space (spec §3.2), O(K).

    Parameters
    ----------
    log_mass : (K,) float64
        ln P_k of the reward levels sorted by increasing reward, normalized (ln Σ P_k = 0).
    log_n : float
        ln N ≥ 0 (real N allowed); N itself is never formed.
    log_cdf, log_tail, log_a, log_q, ell : (K,) float64 out buffers
        ln F_k, ln T_k (T_k = 1 − F_k, computed by a reverse log-cumsum-exp), ln A_k (A_k = −N ln F_k),
        ln Q_k (Q_k = F_k^N − F_{k−1}^N) and ℓ_k = ln(−ln Q_k).
    """
    K = log_mass.shape[0]
    _log_cdf(log_mass, log_cdf)
    acc = -np.inf
    for k in range(K - 1, -1, -1):
        log_tail[k] = acc
        acc = _logaddexp(acc, log_mass[k])
    for k in range(K):
        if log_cdf[k] < -_LOG2:
            log_a[k] = log_n + math.log(-log_cdf[k])
        else:
            log_a[k] = log_n + g_loglog(log_tail[k])
    for k in range(K):
        if k == 0:
            ldiff = np.inf
        else:
            ratio = log_mass[k] - log_cdf[k]
            if ratio < -_LOG2:
                ldiff = log_n + g_loglog(ratio)
            else:
                ldiff = log_n + math.log(log_cdf[k] - log_cdf[k - 1])
        hk = h_log1mexpexp(ldiff)
        if log_a[k] == -np.inf:
            a_k = 0.0
        else:
            a_k = math.exp(log_a[k])
        log_q[k] = -a_k + hk
        # ln(−h) = g(−e^{ldiff}) stays finite where h rounds to 0 (top levels at huge N)
        if ldiff == np.inf:
            lmh = -np.inf
        elif ldiff < 5.0:  # D < e^5: h is a normal negative number, ln(−h) directly
            lmh = math.log(-hk)
        else:  # D ≥ e^5: −h = −ln(1 − e^{−D}) ≈ e^{−D} may underflow; g(−D) is exact
            lmh = g_loglog(-math.exp(ldiff))
        ell[k] = _logaddexp(log_a[k], lmh)


@njit
def _log_q_logspace(lf, lf_prev, lt, lm_k, log_n, first):
    """ln Q_k by the §3.2 log-space route (used where N, A or D would overflow or underflow)."""
    if lf < -_LOG2:
        la = log_n + math.log(-lf)
    else:
        la = log_n + g_loglog(lt)
    if first:
        ldiff = np.inf
    else:
        ratio = lm_k - lf
        if ratio < -_LOG2:
            ldiff = log_n + g_loglog(ratio)
        else:
            ldiff = log_n + math.log(lf - lf_prev)
    a_k = 0.0 if la == -np.inf else math.exp(la)
    return -a_k + h_log1mexpexp(ldiff)


@njit
def bon_kl_levels(log_mass, log_n, work):
    """Exact D(π_N‖p) = Σ_k Q_k (ln Q_k − ln P_k) in two fused passes (spec §3.2–3.3).

    Pass 1 (forward) stores ln F_k in ``work``.  Pass 2 (backward) accumulates ln T_k only while F_k ≥ ½ and
    evaluates ln Q_k = −A_k + ln(1 − e^{−D_k}), A_k = N(−ln F_k), D_k = A_{k−1} − A_k = N(−ln(1 − P_k/F_k)).
    Where ln N ≤ 600 and the arguments stay above e^{−600}, A_k and D_k are formed as products N·x (one
    rounding each, no exp(log) round trip: at least as accurate as the log route); elsewhere the §3.2
    log-space route is used, so ln N up to 1e4 never overflows.
    """
    K = log_mass.shape[0]
    _log_cdf(log_mass, work)
    big_n = log_n <= 600.0
    n = math.exp(log_n) if big_n else np.inf
    lt = -np.inf
    kl = 0.0
    for k in range(K - 1, -1, -1):
        lf = work[k]
        lm_k = log_mass[k]
        lf_prev = work[k - 1] if k > 0 else -np.inf
        ratio = lm_k - lf
        fast = big_n and ratio > -600.0 and (lf < -_LOG2 or lt > -600.0 or k == K - 1)
        if fast:
            if lf < -_LOG2:
                x = -lf
            elif k == K - 1:
                x = 0.0
            else:
                x = -math.log1p(-math.exp(lt))
            if k == 0:
                lq = -n * x
            else:
                if ratio < -_LOG2:
                    d = -math.log1p(-math.exp(ratio))
                else:
                    d = lf - lf_prev
                lq = -n * x + log1mexp(n * d)
        else:
            lq = _log_q_logspace(lf, lf_prev, lt, lm_k, log_n, k == 0)
        if lq > -np.inf:
            kl += math.exp(lq) * (lq - lm_k)
        if lf >= -_LOG2:
            lt = _logaddexp(lt, lm_k)
    return kl


@njit
def kl_from_logs_1d(log_a, log_b):
    """Σ a (ln a − ln b) over entries with a > 0; +inf where a > 0 = b (convention C11)."""
    s = 0.0
    for k in range(log_a.shape[0]):
        la = log_a[k]
        if la == -np.inf:
            continue
        lb = log_b[k]
        if lb == -np.inf:
            return np.inf
        s += math.exp(la) * (la - lb)
    return s


@njit
def lattice_log_law(log_p, m, n, out):
    """Law of S_n = Σ_i m(y_i) for i.i.d. tokens with integer scores m ≥ 0, in log space (spec §4).

    L_i(s) = logsumexp_x [ln p(x) + L_{i−1}(s − m(x))], L_0 = δ_0.  Cost O(n² · k · max m) time,
    O(n · max m) memory.  ``out`` has length n · max(m) + 1 and receives ln P(S_n = s).
    """
    k = log_p.shape[0]
    mmax = 0
    for x in range(k):
        if m[x] > mmax:
            mmax = m[x]
    size = n * mmax + 1
    prev = np.full(size, -np.inf)
    cur = np.full(size, -np.inf)
    prev[0] = 0.0
    for i in range(1, n + 1):
        top_prev = (i - 1) * mmax
        top = i * mmax
        for s in range(top + 1):
            mx = -np.inf
            for x in range(k):
                j = s - m[x]
                if j >= 0 and j <= top_prev:
                    t = log_p[x] + prev[j]
                    if t > mx:
                        mx = t
            if mx == -np.inf:
                cur[s] = -np.inf
                continue
            acc = 0.0
            for x in range(k):
                j = s - m[x]
                if j >= 0 and j <= top_prev:
                    t = log_p[x] + prev[j]
                    if t > -np.inf:
                        acc += math.exp(t - mx)
            cur[s] = mx + math.log(acc)
        for s in range(top + 1):
            prev[s] = cur[s]
    for s in range(size):
        out[s] = prev[s]


@njit
def composition_types(log_p, values, n, out_logw, out_sum):
    """Enumerate the type classes (c_1..c_k), Σ c = n, of n i.i.d. tokens (spec §4, generic rewards).

    Writes ln[n!/Π c_j! · Π p_j^{c_j}] and Σ_j c_j v_j per class, in the lexicographic order of
    Nijenhuis-Wilf's NEXCOM.  ``out_*`` have length C(n+k−1, k−1).  Returns the number written.
    """
    k = log_p.shape[0]
    r = np.zeros(k, dtype=np.int64)
    r[0] = n
    t = n
    h = 0
    lg_n = math.lgamma(n + 1.0)
    idx = 0
    while True:
        lw = lg_n
        s = 0.0
        for j in range(k):
            if r[j] > 0:
                lw += r[j] * log_p[j] - math.lgamma(r[j] + 1.0)
                s += r[j] * values[j]
        out_logw[idx] = lw
        out_sum[idx] = s
        idx += 1
        if r[k - 1] == n:
            break
        if t > 1:
            h = 0
        h += 1
        t = r[h - 1]
        r[h - 1] = 0
        r[0] = t - 1
        r[h] += 1
    return idx


@njit
def group_logsumexp(x, starts, out):
    """out[g] = logsumexp(x[starts[g]:starts[g+1]]) (``starts`` has G+1 entries, last = len(x))."""
    G = starts.shape[0] - 1
    for g in range(G):
        a = starts[g]
        b = starts[g + 1]
        mx = -np.inf
        for i in range(a, b):
            if x[i] > mx:
                mx = x[i]
        if mx == -np.inf:
            out[g] = -np.inf
            continue
        acc = 0.0
        for i in range(a, b):
            acc += math.exp(x[i] - mx)
        out[g] = mx + math.log(acc)


@njit
def inference_fixed_point(log_p, base, n, worst, beta, log_f, eta, tol, max_iter):
    """Damped fixed point ln f ← (1−η) ln f + η R_f/β of InfAlign's stationarity condition (spec §8 Grid).

    R_i = Σ_{j≥i} N G_j^{N−1}(base_j − base_{j+1}) (BoN-N; WoN-N uses (1 − G_j)^{N−1} with 1 − G from a
    reverse cumsum); π = p e^{ln f}, renormalized each step.  ``log_f`` is updated in place.  Returns
    (residual, iterations), residual = ½(max − min) of ln f − R/β (the sup-norm distance to a constant).
    """
    K = log_p.shape[0]
    pi = np.empty(K)
    r = np.empty(K)
    res = np.inf
    it = 0
    while it < max_iter:
        it += 1
        # π and its CDF / tail
        mx = -np.inf
        for k in range(K):
            t = log_p[k] + log_f[k]
            if t > mx:
                mx = t
        z = 0.0
        for k in range(K):
            pi[k] = math.exp(log_p[k] + log_f[k] - mx)
            z += pi[k]
        for k in range(K):
            pi[k] /= z
        acc = 0.0
        tail = 0.0
        # reverse cumsum gives the tail 1 − G_k = Σ_{j>k} π_j; G_k = 1 − tail_k only for BoN with G ≤ ½ issues
        # avoided by a forward cumsum for G.
        for k in range(K - 1, -1, -1):
            r[k] = tail  # temporarily: Σ_{j>k} π_j
            tail += pi[k]
        g = 0.0
        for k in range(K):
            g += pi[k]
            bnext = base[k + 1] if k + 1 < K else 0.0
            if worst:
                w = r[k]
            else:
                w = min(g, 1.0)
            r[k] = n * w ** (n - 1.0) * (base[k] - bnext)
        acc = 0.0
        for k in range(K - 1, -1, -1):
            acc += r[k]
            r[k] = acc / beta
        lo = np.inf
        hi = -np.inf
        for k in range(K):
            d = log_f[k] - r[k]
            if d < lo:
                lo = d
            if d > hi:
                hi = d
        res = 0.5 * (hi - lo)
        if res <= tol:
            break
        for k in range(K):
            log_f[k] = (1.0 - eta) * log_f[k] + eta * r[k]
        for k in range(K):
            pi[k] = log_p[k] + log_f[k]  # scratch: π is recomputed at the top of the next iteration
        c = lse_1d(pi)
        for k in range(K):
            log_f[k] -= c
    return res, it


@njit
def tilt_kl_level(values, log_mass, theta):
    """D(φ_θ‖p) = Σ_k Φ_k [θ(v_k − v_ref) − c], c = ln Σ P_k e^{θ(v_k − v_ref)}, v_ref = v_K (θ ≥ 0) or v_1.

    The cancellation-free form of spec §1 (never θK' − K); ``values`` increasing, ``log_mass`` normalized.
    """
    K = values.shape[0]
    vref = values[K - 1] if theta >= 0 else values[0]
    mx = -np.inf
    for k in range(K):
        t = log_mass[k] + theta * (values[k] - vref)
        if t > mx:
            mx = t
    z = 0.0
    for k in range(K):
        z += math.exp(log_mass[k] + theta * (values[k] - vref) - mx)
    c = mx + math.log(z)
    s = 0.0
    for k in range(K):
        rel = theta * (values[k] - vref) - c
        s += math.exp(log_mass[k] + rel) * rel
    return max(0.0, s)
