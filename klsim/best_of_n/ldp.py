"""Large deviations of the per-token reward under the tilt: rate function, SCGF, Rényi form, exact tails.

Spec ``best-of-n-vs-kl-rl.md`` §5 (Yang et al. 2024, arXiv:2404.01730, §4: LDP of S_n/n under φ_λ^{⊗n};
Bahadur & Rao 1960 for the lattice tail correction).  All functions take a :class:`MemorylessLM` (or a
:class:`FiniteDist`, read as one token) and λ as ``kl_coef=`` or through a *sequence* budget ``kl_budget=``
(per-token δ = Δ/n).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from klsim._validation import as_float_array, check_finite
from klsim.best_of_n.data import FiniteDist, MemorylessLM, lattice_span, token_levels
from klsim.best_of_n.laws import (
    _tilt_on_levels,
    log_partition,
    solve_kl_coef,
    tilt_moments,
)
from klsim.divergences import logsumexp

__all__ = [
    "rate_function",
    "scgf",
    "exact_scgf",
    "exact_cumulants",
    "renyi_cross_entropy",
    "renyi_log_partition",
    "tail_log_prob",
    "bahadur_rao_log_tail",
    "tilt_kl_coef",
]


def tilt_kl_coef(
    dist: FiniteDist | MemorylessLM, kl_budget: float | None = None, kl_coef: float | None = None
) -> float:
    """λ of the tilt: ``kl_coef`` itself, or the per-token root of D(φ_λ‖p) = Δ/n (spec §2, §4)."""
    tok, n = token_levels(dist)
    if (kl_budget is None) == (kl_coef is None):
        raise ValueError("kl_budget: give exactly one of kl_budget= or kl_coef=")
    if kl_coef is not None:
        lam = float(kl_coef)
        if not (np.isfinite(lam) and lam >= 0):
            raise ValueError(f"kl_coef: must be a finite number >= 0, got {kl_coef!r}")
        return lam
    lam = solve_kl_coef(tok.values, tok.log_mass, float(kl_budget) / n)
    if not np.isfinite(lam):
        raise ValueError("kl_budget: reaches ln(1/p_top); the tilt is a point mass and has no LDP")
    return lam


def _theta_for_mean(values: np.ndarray, log_mass: np.ndarray, x: float) -> float:
    """θ with K'(θ) = x for min v < x < max v (K' is increasing; doubling bracket, then Brent)."""

    def f(t: float) -> float:
        return tilt_moments(values, log_mass, t)[0] - x

    lo, hi = -1.0, 1.0
    while f(lo) > 0:
        lo *= 2.0
    while f(hi) < 0:
        hi *= 2.0
    return float(brentq(f, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500))


def rate_function(
    dist: FiniteDist | MemorylessLM,
    x: float | np.ndarray,
    *,
    kl_budget: float | None = None,
    kl_coef: float | None = None,
) -> np.ndarray:
    """Cramér rate I_φ(x) of the per-token mean under φ_λ (spec §5).

    I_φ(x) = sup_t [t x − Λ_φ(t)] = D(φ_{θx}‖φ_λ) = (θx − λ) x − K(θx) + K(λ), with K'(θx) = x.

    Parameters
    ----------
    dist : MemorylessLM or FiniteDist
        Per-token reward law (an LM contributes its token distribution).
    x : float or ndarray
        Per-token reward values.  At the endpoints I = −ln Φ(min r) or −ln Φ(max r); outside, +inf.
    kl_budget, kl_coef : float
        Sequence budget Δ (λ solves D = Δ/n per token) or λ itself (λ = 0: the rate under p).

    Returns
    -------
    ndarray
        I_φ(x), same shape as ``x``.
    """
    tok, _ = token_levels(dist)
    lam = tilt_kl_coef(dist, kl_budget, kl_coef)
    xs = np.atleast_1d(as_float_array("x", x))
    check_finite("x", xs)
    v, lm = tok.values, tok.log_mass
    k_lam = log_partition(v, lm, lam)
    out = np.empty(xs.shape)
    for i, xi in enumerate(xs.ravel()):
        if xi < v[0] or xi > v[-1]:
            out.flat[i] = np.inf
        elif xi == v[0] or xi == v[-1]:
            at = v == xi  # all levels at the endpoint (a tie-break key may have split it)
            out.flat[i] = -(float(logsumexp(lm[at])) + lam * xi - k_lam)
        else:
            th = _theta_for_mean(v, lm, float(xi))
            out.flat[i] = max(0.0, (th - lam) * xi - log_partition(v, lm, th) + k_lam)
    return out if np.ndim(x) else out[:1]


def scgf(
    dist: FiniteDist | MemorylessLM,
    t: float | np.ndarray,
    *,
    kl_budget: float | None = None,
    kl_coef: float | None = None,
) -> np.ndarray:
    """Λ_φ(t) = K(λ + t) − K(λ): the scaled cumulant generating function of S_n under φ_λ^{⊗n} (spec §5)."""
    tok, _ = token_levels(dist)
    lam = tilt_kl_coef(dist, kl_budget, kl_coef)
    ts = np.atleast_1d(as_float_array("t", t))
    k_lam = log_partition(tok.values, tok.log_mass, lam)
    out = np.array([log_partition(tok.values, tok.log_mass, lam + ti) - k_lam for ti in ts.ravel()])
    return out.reshape(ts.shape)


def exact_scgf(
    lm: MemorylessLM, t: float | np.ndarray, *, kl_budget: float | None = None, kl_coef: float | None = None
) -> np.ndarray:
    """(1/n) ln E_{φ^{⊗n}} e^{t S_n} from the exact levels of S_n (equals Λ_φ(t) for every n, spec §5)."""
    lev, lam, lphi = _tilt_on_levels(lm, None, tilt_kl_coef(lm, kl_budget, kl_coef))
    ts = np.atleast_1d(as_float_array("t", t))
    n = lm.length if isinstance(lm, MemorylessLM) else 1
    return np.array([float(logsumexp(lphi + ti * lev.values)) / n for ti in ts.ravel()]).reshape(ts.shape)


def exact_cumulants(
    lm: MemorylessLM, *, kl_budget: float | None = None, kl_coef: float | None = None
) -> tuple[float, float, float]:
    """First three cumulants of S_n under φ_λ^{⊗n}, divided by n, from the exact levels (= K', K'', K''')."""
    lev, lam, lphi = _tilt_on_levels(lm, None, tilt_kl_coef(lm, kl_budget, kl_coef))
    n = lm.length if isinstance(lm, MemorylessLM) else 1
    w = np.exp(lphi)
    m = float(np.dot(w, lev.values))
    c = lev.values - m
    return m / n, float(np.dot(w, c * c)) / n, float(np.dot(w, c * c * c)) / n


def renyi_cross_entropy(p: np.ndarray, q: np.ndarray, alpha: float) -> float:
    """H_α(p, q) = (1/(1−α)) ln Σ_x p(x) q(x)^{α−1}; at α = 1, −Σ p ln q (spec §5)."""
    p = as_float_array("p", p, ndim=1)
    q = as_float_array("q", q, ndim=1)
    if q.shape != p.shape:
        raise ValueError(f"q: expected shape {p.shape}, got {q.shape}")
    pos = p > 0
    with np.errstate(divide="ignore"):
        lp, lq = np.log(p[pos]), np.log(q[pos])
    if alpha == 1.0:
        return float(-np.dot(p[pos], lq))
    return float(logsumexp(lp + (alpha - 1.0) * lq) / (1.0 - alpha))


def renyi_log_partition(dist: FiniteDist | MemorylessLM, theta: float) -> float:
    """K(θ) = −θ H_{1+θ}(p, q) + θ ln Σ_x e^{r(x)}, with q = e^r / Σ e^r (spec §5, library convention)."""
    d = dist.token_dist if isinstance(dist, MemorylessLM) else dist
    r = d.rewards
    log_sum = float(logsumexp(r))
    q = np.exp(r - log_sum)
    return -theta * renyi_cross_entropy(d.probs, q, 1.0 + theta) + theta * log_sum


def tail_log_prob(
    lm: MemorylessLM,
    x: float,
    *,
    kl_budget: float | None = None,
    kl_coef: float | None = None,
    upper: bool | None = None,
) -> float:
    """Exact ln P_φ(S_n ≥ n x) (upper tail) or ln P_φ(S_n ≤ n x) (lower tail) from the levels (spec §5).

    ``upper`` defaults to x ≥ K'(λ).  A relative tolerance 1e-12 decides whether a level sits on n x.
    """
    lev, lam, lphi = _tilt_on_levels(lm, None, tilt_kl_coef(lm, kl_budget, kl_coef))
    n = lm.length if isinstance(lm, MemorylessLM) else 1
    tok, _ = token_levels(lm)
    if upper is None:
        upper = x >= tilt_moments(tok.values, tok.log_mass, lam)[0]
    thr = n * float(x)
    tol = 1e-12 * max(1.0, abs(thr))
    sel = lev.values >= thr - tol if upper else lev.values <= thr + tol
    return float(logsumexp(lphi[sel])) if sel.any() else -np.inf


def bahadur_rao_log_tail(
    lm: MemorylessLM, x: float, *, kl_budget: float | None = None, kl_coef: float | None = None
) -> float:
    """Bahadur-Rao lattice approximation of ln P_φ(S_n ≥ n x) (x above the mean; below, the lower tail).

    ln P ≈ −n I_φ(x) − ln[(1 − e^{−h|θx−λ|}) σ_x √(2πn) / h], σ_x² = K''(θx), h = lattice span of the
    per-token reward (spec §5, check procedure step 3; n x must lie on the lattice).
    """
    tok, n = token_levels(lm)
    lam = tilt_kl_coef(lm, kl_budget, kl_coef)
    lat = lattice_span(tok.values)
    if lat is None:
        raise ValueError("lm: token rewards are not on a lattice; Bahadur-Rao needs a lattice span")
    h = lat[0]
    th = _theta_for_mean(tok.values, tok.log_mass, float(x))
    sig2 = tilt_moments(tok.values, tok.log_mass, th)[1]
    rate = float(rate_function(lm, float(x), kl_coef=lam)[0])
    corr = math.log(-math.expm1(-h * abs(th - lam))) + 0.5 * math.log(sig2 * 2 * math.pi * n) - math.log(h)
    return -n * rate - corr
