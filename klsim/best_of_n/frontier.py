"""Beyond the two papers: BoNBoN's win-rate frontier, Mroueh's bounds, InfAlign's calibrate-and-transform.

Spec ``best-of-n-vs-kl-rl.md`` §3.7, §6, §8.  References: Gui, Gârbacea, Veitch (2024, BoNBoN),
arXiv:2406.00832 (Thm 1, Fig. 2); Mroueh (2024), arXiv:2406.05883 (Thm 1, Lemma 2); Balashankar et al.
(2024, InfAlign), arXiv:2412.19792 (§3–§4: calibration, transforms exp(t·u) / −exp(−t·u), Thm 1 fixed point).

Calibrated space: C(y) = P_{z∼p}(r(z) < r(y)) + ½ P(r(z) = r(y)) (the mid-CDF).  Every InfAlign routine here
works on reward levels with masses P_k (a 1-D "atomless" model is M equal bins, :func:`uniform_levels`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special
from scipy.optimize import brentq, minimize_scalar

from klsim._kernels.bon import inference_fixed_point
from klsim._validation import (
    as_float_array,
    check_choice,
    check_int,
    check_nonnegative_scalar,
    check_positive,
)
from klsim.best_of_n.data import FiniteDist, MemorylessLM, as_levels, parse_log_n
from klsim.best_of_n.laws import bon_kl_formula, solve_kl_coef, tilt_kl, tilt_level_log_probs
from klsim.divergences import logsumexp

__all__ = [
    "bonbon_win_rate",
    "bonbon_kl",
    "bonbon_frontier",
    "bonbon_beta",
    "calibrated_reward",
    "calibrated_tilt",
    "threshold_policy",
    "mroueh_bound",
    "renyi_beta_uniform",
    "gaussian_bon_gain",
    "uniform_levels",
    "inference_win_rate",
    "inference_reward_gradient",
    "infalign_transform",
    "infalign_best_transform",
    "infalign_fixed_point",
]

_MODES = ("bon", "won")


# ---------------------------------------------------------------------------------------------- BoNBoN


def bonbon_win_rate(c: float | np.ndarray) -> np.ndarray:
    """W(c) = 1/(1 − e^{−c}) − 1/c: win rate over p of the atomless calibrated tilt π_c ∝ p e^{cu} (§6)."""
    c = np.asarray(c, dtype=np.float64)
    return -1.0 / np.expm1(-c) - 1.0 / c


def bonbon_kl(c: float | np.ndarray) -> np.ndarray:
    """KL(c) = ln c − c − ln(1 − e^{−c}) + c W(c) = D(π_c‖p) in the atomless case (spec §6)."""
    c = np.asarray(c, dtype=np.float64)
    return np.log(c) - c - np.log(-np.expm1(-c)) + c * bonbon_win_rate(c)


def bonbon_frontier(
    *, n_samples: float | None = None, log_n_samples: float | None = None
) -> dict[str, float]:
    """BoN against the optimal win-rate tilt at equal KL, atomless case (BoNBoN Thm 1, Fig. 2; spec §6).

    Returns
    -------
    dict
        ``kl`` = ln N − (N−1)/N, ``w_bon`` = N/(N+1), ``c_star`` (KL(c*) = kl, Brent), ``w_opt`` = W(c*),
        ``gap`` = w_opt − w_bon (≥ 0: the tilt is optimal).
    """
    ln = parse_log_n(n_samples, log_n_samples)
    kl = bon_kl_formula(ln)
    w_bon = 1.0 / (1.0 + math.exp(-ln)) if ln < 700 else 1.0
    if kl <= 0.0:
        return {"kl": 0.0, "w_bon": 0.5, "c_star": 0.0, "w_opt": 0.5, "gap": 0.0}
    hi = 2.0
    while float(bonbon_kl(hi)) < kl:
        hi *= 2.0
    c = brentq(lambda x: float(bonbon_kl(x)) - kl, 1e-6, hi, xtol=1e-13, rtol=4 * np.finfo(float).eps)
    w = float(bonbon_win_rate(c))
    return {"kl": kl, "w_bon": w_bon, "c_star": float(c), "w_opt": w, "gap": w - w_bon}


def bonbon_beta(n_samples: int) -> float:
    """β*_N = 1/(2(N−1)H_{N−1}): BoNBoN's IPO weight, N ≥ 2 integer (spec §6)."""
    n = check_int("n_samples", n_samples, minimum=2)
    h = float(np.sum(1.0 / np.arange(1, n)))
    return 1.0 / (2.0 * (n - 1) * h)


def calibrated_reward(dist: FiniteDist) -> np.ndarray:
    """C(y) = P_p(r < r(y)) + ½ P_p(r = r(y)), shape (M,) (InfAlign calibration, ties ½; spec §8)."""
    if not isinstance(dist, FiniteDist):
        raise ValueError("dist: calibrated_reward needs a FiniteDist")
    lev = dist.levels
    p = lev.mass
    mid = np.concatenate(([0.0], np.cumsum(p)[:-1])) + 0.5 * p
    out = np.full(dist.n_outcomes, np.nan)
    ok = lev.outcome_level >= 0
    out[ok] = mid[lev.outcome_level[ok]]
    return out


def _mid(level_log_mass: np.ndarray) -> np.ndarray:
    p = np.exp(level_log_mass)
    return np.concatenate(([0.0], np.cumsum(p)[:-1])) + 0.5 * p


def calibrated_tilt(dist: FiniteDist | MemorylessLM, kl_budget: float) -> dict[str, float]:
    """Discrete BoNBoN optimum p·e^{c C_k} at D = Δ: the exact max of W(π ≻ p) at fixed KL (spec §3.7, §6).

    Returns ``c``, ``kl`` and ``win_rate`` (= E_π C).
    """
    lev = as_levels(dist)
    mid = _mid(lev.log_mass)
    c = solve_kl_coef(mid, lev.log_mass, kl_budget)
    lphi = tilt_level_log_probs(mid, lev.log_mass, c)
    return {"c": c, "kl": tilt_kl(mid, lev.log_mass, c), "win_rate": float(np.dot(np.exp(lphi), mid))}


def threshold_policy(eps: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Idealized rewind-and-repeat: p restricted to its atomless top-ε quantile; (KL, W) = (ln 1/ε, 1 − ε/2)."""
    e = as_float_array("eps", eps)
    if not np.all((e > 0) & (e <= 1)):
        raise ValueError("eps: must lie in (0, 1]")
    return -np.log(e), 1.0 - e / 2.0


# ---------------------------------------------------------------------------------------------- Mroueh


def mroueh_bound(sigma2: float | np.ndarray, kl: float | np.ndarray) -> np.ndarray:
    """E_π r − E_p r ≤ √(2σ² D(π‖p)) for σ²-sub-Gaussian r under p (Mroueh 2024, Thm 1; spec §6).

    For rewards in [a, b] use σ² = (b − a)²/4 (Hoeffding).
    """
    s = np.asarray(sigma2, dtype=np.float64)
    k = np.asarray(kl, dtype=np.float64)
    if np.any(~(s >= 0)) or np.any(~(k >= 0)):
        raise ValueError("sigma2: sigma2 and kl must be >= 0")
    return np.sqrt(2.0 * s * k)


def renyi_beta_uniform(n_samples: float, alpha: float) -> float:
    """D_α(Beta(N,1)‖U(0,1)) = (1/(α−1)) ln(N^α/(α(N−1)+1)); α = 1: ln N − (N−1)/N (spec §6).

    By data processing it bounds D_α(π_N‖p) for every p (Mroueh 2024, Lemma 2).  Finite for α(N−1)+1 > 0.
    """
    ln = parse_log_n(n_samples, None)
    a = check_positive("alpha", alpha)
    if a == 1.0:
        return bon_kl_formula(ln)
    n = math.exp(ln)
    return float((a * ln - math.log(a * (n - 1.0) + 1.0)) / (a - 1.0))


def gaussian_bon_gain(n_samples: float) -> float:
    """E max of N i.i.d. N(0, 1) = ∫ x N φ(x) Φ(x)^{N−1} dx, by adaptive quadrature in log space (§6)."""
    ln = parse_log_n(n_samples, None)
    n = math.exp(ln)
    if n == 1.0:
        return 0.0

    def f(x: float) -> float:
        return x * math.exp(ln - 0.5 * x * x - 0.5 * math.log(2 * math.pi) + (n - 1.0) * special.log_ndtr(x))

    centre = math.sqrt(2.0 * ln)
    val, _ = integrate.quad(f, -12.0, 12.0, points=[0.0, centre], limit=400, epsabs=1e-13, epsrel=1e-12)
    return float(val)


# ---------------------------------------------------------------------------------------------- InfAlign


def uniform_levels(n_bins: int) -> np.ndarray:
    """ln P_j = −ln M for M equal bins: the 1-D atomless model on a grid of M ≥ 2 levels (spec §8 Grid)."""
    m = check_int("n_bins", n_bins, minimum=2)
    return np.full(m, -math.log(m))


def _level_probs(log_probs: np.ndarray, name: str) -> np.ndarray:
    lp = as_float_array(name, log_probs, ndim=1)
    tot = logsumexp(lp)
    if not abs(tot) <= 1e-9:
        raise ValueError(f"{name}: sums to exp({tot!r}) (must be 1 within 1e-9)")
    return np.exp(lp - tot)


def _transformed_masses(pi: np.ndarray, n: float, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masses of T(π) on the levels, G, 1 − G) with 1 − G from a reverse cumsum (no 1 − F)."""
    g = np.minimum(np.cumsum(pi), 1.0)
    tail = np.concatenate((np.cumsum(pi[::-1])[::-1][1:], [0.0]))
    g_prev = np.concatenate(([0.0], g[:-1]))
    tail_prev = np.concatenate(([1.0], tail[:-1]))
    if mode == "bon":
        m = g**n - g_prev**n
    else:
        m = tail_prev**n - tail**n
    return np.maximum(m, 0.0), g, tail


def _base(p: np.ndarray, n: float, mode: str) -> np.ndarray:
    mp = _transformed_masses(p, n, mode)[0]
    return np.concatenate(([0.0], np.cumsum(mp)[:-1])) + 0.5 * mp


def inference_win_rate(
    log_probs: np.ndarray, level_log_mass: np.ndarray, n_samples: float = 1.0, mode: str = "bon"
) -> float:
    """W(T(π) ≻ T(p)) with T = best-of-N (``"bon"``) or worst-of-N (``"won"``), ties ½ (spec §8).

    T(π) has level masses G_k^N − G_{k−1}^N (BoN) or (1 − G_{k−1})^N − (1 − G_k)^N (WoN), G the level CDF of
    π; W = Σ_k M^π_k (M^p_{<k} + ½ M^p_k).

    Parameters
    ----------
    log_probs, level_log_mass : ndarray, shape (K,)
        ln π and ln p on reward levels sorted by increasing reward.
    """
    check_choice("mode", mode, _MODES)
    n = float(np.exp(parse_log_n(n_samples, None)))
    pi = _level_probs(log_probs, "log_probs")
    p = _level_probs(level_log_mass, "level_log_mass")
    if pi.shape != p.shape:
        raise ValueError(f"log_probs: expected shape {p.shape}, got {pi.shape}")
    return float(np.dot(_transformed_masses(pi, n, mode)[0], _base(p, n, mode)))


def inference_reward_gradient(
    log_probs: np.ndarray, level_log_mass: np.ndarray, n_samples: float = 1.0, mode: str = "bon"
) -> np.ndarray:
    """R_i = ∂W/∂π_i = Σ_{j≥i} ∂W/∂G_j, the exact discrete gradient of :func:`inference_win_rate` (§8 Grid).

    BoN: ∂W/∂G_j = N G_j^{N−1}(base_j − base_{j+1}); WoN: N (1 − G_j)^{N−1}(base_j − base_{j+1}), with
    base_j = M^p_{<j} + ½ M^p_j and base_{K+1} = 0.
    """
    check_choice("mode", mode, _MODES)
    n = float(np.exp(parse_log_n(n_samples, None)))
    pi = _level_probs(log_probs, "log_probs")
    p = _level_probs(level_log_mass, "level_log_mass")
    return _gradient(pi, p, n, mode)


def _gradient(
    pi: np.ndarray, p: np.ndarray, n: float, mode: str, base: np.ndarray | None = None
) -> np.ndarray:
    if base is None:
        base = _base(p, n, mode)
    _, g, tail = _transformed_masses(pi, n, mode)
    dbase = base - np.concatenate((base[1:], [0.0]))
    dg = n * (g ** (n - 1.0) if mode == "bon" else tail ** (n - 1.0)) * dbase
    return np.cumsum(dg[::-1])[::-1]


def _transform_values(mid: np.ndarray, t: float, mode: str) -> np.ndarray:
    if mode == "bon":
        return np.exp(t * mid)
    return -np.exp(-t * mid)


def infalign_transform(
    level_log_mass: np.ndarray,
    kl_budget: float,
    *,
    n_samples: float = 1.0,
    mode: str = "bon",
    transform: str = "exp",
    t: float = 1.0,
) -> dict[str, float]:
    """Calibrate-and-transform: π ∝ p e^{Φ(C)/β} with D(π‖p) = Δ, and its inference-time win rate (§8).

    Parameters
    ----------
    transform : {"identity", "log", "exp"}
        Φ(u) = u, ln u, or the mode's exponential: e^{t u} (BoN-N), −e^{−t u} (WoN-N).
    t : float
        Slope of the exponential transform.

    Returns
    -------
    dict
        ``beta`` (1/λ of the §2 solver on the reward Φ(C)), ``kl``, ``win_rate`` and ``log_probs`` (levels).
    """
    check_choice("mode", mode, _MODES)
    check_choice("transform", transform, ("identity", "log", "exp"))
    lm = as_float_array("level_log_mass", level_log_mass, ndim=1)
    mid = _mid(lm)
    if transform == "identity":
        vals = mid
    elif transform == "log":
        vals = np.log(mid)
    else:
        vals = _transform_values(mid, check_positive("t", t), mode)
    lam = solve_kl_coef(vals, lm, check_nonnegative_scalar("kl_budget", kl_budget))
    lphi = tilt_level_log_probs(vals, lm, lam)
    w = inference_win_rate(lphi, lm, n_samples, mode)
    return {
        "beta": 1.0 / lam if lam > 0 else np.inf,
        "kl": tilt_kl(vals, lm, lam),
        "win_rate": w,
        "log_probs": lphi,
    }


def infalign_best_transform(
    level_log_mass: np.ndarray,
    kl_budget: float,
    *,
    n_samples: float = 1.0,
    mode: str = "bon",
    t_bounds: tuple[float, float] = (0.01, 60.0),
) -> dict[str, float]:
    """Tune t of the exponential transform: maximize the inference-time W over ln t ∈ ln ``t_bounds``.

    klsim's t procedure: ``scipy.optimize.minimize_scalar(method="bounded", xatol=1e-6)`` on ln t.
    Returns :func:`infalign_transform`'s dict plus ``t``.
    """

    def neg(logt: float) -> float:
        return -infalign_transform(
            level_log_mass, kl_budget, n_samples=n_samples, mode=mode, transform="exp", t=math.exp(logt)
        )["win_rate"]

    res = minimize_scalar(
        neg, bounds=(math.log(t_bounds[0]), math.log(t_bounds[1])), method="bounded", options={"xatol": 1e-6}
    )
    t = math.exp(float(res.x))
    out = infalign_transform(level_log_mass, kl_budget, n_samples=n_samples, mode=mode, transform="exp", t=t)
    out["t"] = t
    return out


def _fixed_point_at_beta(
    lp: np.ndarray,
    n: float,
    mode: str,
    beta: float,
    log_f: np.ndarray,
    eta: float,
    tol: float,
    max_iter: int,
    base: np.ndarray,
) -> tuple[np.ndarray, float, int]:
    """Damped iteration log f ← (1−η) log f + η R_f/β at fixed β (numba kernel); returns (log f, residual, its)."""
    log_f = np.ascontiguousarray(log_f, dtype=np.float64)
    res, it = inference_fixed_point(lp, base, float(n), mode == "won", float(beta), log_f, eta, tol, max_iter)
    return log_f, float(res), int(it)


def infalign_fixed_point(
    level_log_mass: np.ndarray,
    kl_budget: float,
    *,
    n_samples: float = 1.0,
    mode: str = "bon",
    eta: float = 0.3,
    tol: float = 1e-11,
    max_iter: int = 5_000,
    kl_tol: float = 1e-9,
) -> dict[str, float]:
    """Stationary point π* ∝ p e^{R_{π*}/β} of W_T(π ≻ p) − β D(π‖p) at D(π*‖p) = Δ (InfAlign Thm 1; §8).

    Inner loop: damped fixed-point iteration on ln f = ln(π/p) with the exact discrete gradient
    :func:`inference_reward_gradient`; outer loop: Brent on ln β so that D(π*‖p) = Δ (within ``kl_tol``).

    Returns
    -------
    dict
        ``win_rate``, ``kl``, ``beta``, ``residual`` = max|ln f − R/β − c| (c optimal), ``converged``
        (residual ≤ 10·tol and |KL − Δ| ≤ kl_tol), ``iterations`` (inner, total), ``log_probs``.
    """
    check_choice("mode", mode, _MODES)
    delta = check_nonnegative_scalar("kl_budget", kl_budget)
    lp = as_float_array("level_log_mass", level_log_mass, ndim=1)
    lp = lp - logsumexp(lp)
    p = np.exp(lp)
    n = float(np.exp(parse_log_n(n_samples, None)))
    base = _base(p, n, mode)
    state = {"log_f": np.zeros_like(lp), "iters": 0, "res": np.inf}

    def kl_at(log_beta: float) -> float:
        log_f, res, it = _fixed_point_at_beta(
            lp, n, mode, math.exp(log_beta), state["log_f"].copy(), eta, tol, max_iter, base
        )
        state.update(log_f=log_f, res=res)
        state["iters"] += it
        pi = np.exp(lp + log_f)
        return float(np.dot(pi, log_f)) - delta

    # bracket ln β: small β = large KL
    hi = 2.0
    while kl_at(hi) > 0:
        hi += 2.0
    lo = hi - 2.0
    while kl_at(lo) < 0:
        lo -= 2.0
        if lo < -40:
            break
    try:
        log_beta = brentq(kl_at, lo, hi, xtol=1e-13, rtol=4 * np.finfo(float).eps)
    except ValueError:  # non-converged inner iterations broke the sign change: report, do not raise
        log_beta = 0.5 * (lo + hi)
    gap = kl_at(log_beta)
    log_f = state["log_f"]
    lpi = lp + log_f
    w = inference_win_rate(lpi, lp, n, mode)
    return {
        "win_rate": w,
        "kl": float(np.dot(np.exp(lpi), log_f)),
        "beta": math.exp(log_beta),
        "residual": state["res"],
        "converged": bool(state["res"] <= 10 * tol and abs(gap) <= kl_tol),
        "iterations": state["iters"],
        "log_probs": lpi,
    }
