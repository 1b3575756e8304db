"""Gao, Schulman & Hilton's reward-model over-optimization scaling forms, their fit, and a synthetic toy.

Spec ``best-of-n-vs-kl-rl.md`` §7 (Gao et al. 2022, arXiv:2210.10760, eqs. (1)–(2)), with d = √D(π‖π_init):

    R_bon(d) = d(α − β d)          peak d* = α/(2β),       R* = α²/(4β)
    R_RL(d)  = d(α − β ln d)       peak d* = e^{α/β − 1},  R* = β d*

The toy makes no claim about the paper's numbers: gold r* ~ N(0, 1) per outcome, proxy r̂ = r* + ε with ε
Gaussian or Student-t; BoN(r̂) and tilt(r̂) are computed exactly, and gold gain is read off their laws.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares

from klsim._validation import as_float_array, check_choice, check_int, check_positive
from klsim.best_of_n.data import FiniteDist
from klsim.best_of_n.laws import bon_distribution, kl_rl_tilt

__all__ = ["gao_reward", "gao_peak", "fit_gao", "gao_toy"]

_FORMS = ("bon", "rl")


def _design(d: np.ndarray, form: str) -> np.ndarray:
    if form == "bon":
        return np.stack([d, -d * d], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dl = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    return np.stack([d, -dl], axis=1)


def gao_reward(d: np.ndarray | float, alpha: float, beta: float, form: str) -> np.ndarray:
    """R(d) of the ``"bon"`` (d(α − βd)) or ``"rl"`` (d(α − β ln d)) form; R(0) = 0."""
    check_choice("form", form, _FORMS)
    dd = np.atleast_1d(as_float_array("d", d))
    if np.any(~(dd >= 0)):
        raise ValueError("d: must be >= 0")
    out = _design(dd, form) @ np.array([alpha, beta])
    return out if np.ndim(d) else out[:1]


def gao_peak(alpha: float, beta: float, form: str) -> tuple[float, float]:
    """(d*, R*): BoN form α/(2β), α²/(4β); RL form e^{α/β − 1}, β d* (β > 0)."""
    check_choice("form", form, _FORMS)
    b = check_positive("beta", beta)
    if form == "bon":
        return alpha / (2 * b), alpha * alpha / (4 * b)
    ds = math.exp(alpha / b - 1.0)
    return ds, b * ds


def fit_gao(
    d: np.ndarray,
    reward: np.ndarray,
    form: str,
    weights: np.ndarray | None = None,
    d_min: float = 0.0,
) -> dict[str, float | np.ndarray]:
    """Least-squares fit of a Gao scaling form (spec §7, ``fit_gao``).

    Both forms are linear in (α, β): the fit starts from ``numpy.linalg.lstsq`` and is refined by
    ``scipy.optimize.least_squares``.  Points with d < ``d_min`` are excluded (the RL form's slope is
    infinite at 0).

    Returns
    -------
    dict
        ``alpha``, ``beta``, ``d_star``, ``r_star`` (NaN when β ≤ 0: no peak), ``rmse``, ``cov`` (2×2,
        s²(JᵀJ)⁻¹), ``alpha_lstsq``, ``beta_lstsq``, ``n_points``.
    """
    check_choice("form", form, _FORMS)
    dd = as_float_array("d", d, ndim=1)
    rr = as_float_array("reward", reward, ndim=1)
    if rr.shape != dd.shape:
        raise ValueError(f"reward: expected shape {dd.shape}, got {rr.shape}")
    w = np.ones_like(dd) if weights is None else as_float_array("weights", weights, ndim=1)
    if w.shape != dd.shape or np.any(~(w >= 0)):
        raise ValueError("weights: must be non-negative with the shape of d")
    keep = (dd >= d_min) & np.isfinite(rr) & (dd >= 0)
    if keep.sum() < 2:
        raise ValueError("d: fewer than 2 points with d >= d_min")
    x, y, sw = _design(dd[keep], form), rr[keep], np.sqrt(w[keep])
    coef0 = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)[0]
    res = least_squares(lambda c: (x @ c - y) * sw, coef0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    a, b = (float(v) for v in res.x)
    resid = x @ res.x - y
    dof = max(1, keep.sum() - 2)
    jw = x * sw[:, None]
    s2 = float(np.sum((resid * sw) ** 2) / dof)
    cov = s2 * np.linalg.pinv(jw.T @ jw)
    ds, rs = gao_peak(a, b, form) if b > 0 else (float("nan"), float("nan"))
    return {
        "alpha": a,
        "beta": b,
        "d_star": ds,
        "r_star": rs,
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "cov": cov,
        "alpha_lstsq": float(coef0[0]),
        "beta_lstsq": float(coef0[1]),
        "n_points": int(keep.sum()),
    }


def gao_toy(
    n_outcomes: int = 2**16,
    *,
    noise: str = "gaussian",
    nu: float = 3.0,
    noise_scale: float = 1.0,
    dirichlet: float | None = None,
    n_values: np.ndarray | None = None,
    kl_values: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Synthetic gold/proxy over-optimization toy (spec §7), exact for every N and λ.

    Parameters
    ----------
    n_outcomes : int
        M outcomes; p uniform, or Dirichlet(``dirichlet``) when given.
    noise : {"gaussian", "student"}
        Proxy noise ε(y) (fixed per outcome), scaled by ``noise_scale``; Student-t has ``nu`` d.o.f.
    n_values : ndarray, optional
        Real N for BoN(r̂) (default 40 log-spaced values in [1, 1e5]).
    kl_values : ndarray, optional
        KL budgets for tilt(r̂) (default: the BoN KLs).

    Returns
    -------
    dict
        ``bon_d``, ``bon_gold``, ``bon_proxy`` (d = √KL, gains relative to p), the same with ``tilt_`` prefix,
        and ``n_values``.
    """
    m = check_int("n_outcomes", n_outcomes, minimum=2)
    check_choice("noise", noise, ("gaussian", "student"))
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(m, float(dirichlet))) if dirichlet else np.full(m, 1.0 / m)
    gold = rng.standard_normal(m)
    eps = rng.standard_normal(m) if noise == "gaussian" else rng.standard_t(nu, m)
    proxy = gold + noise_scale * eps
    dist = FiniteDist(p, proxy)
    base_gold, base_proxy = float(p @ gold), float(p @ proxy)
    ns = np.geomspace(1.0, 1e5, 40) if n_values is None else as_float_array("n_values", n_values, ndim=1)
    out: dict[str, list[float]] = {
        k: [] for k in ("bon_d", "bon_gold", "bon_proxy", "tilt_d", "tilt_gold", "tilt_proxy")
    }
    for n in ns:
        res = bon_distribution(dist, n_samples=float(n))
        q = np.exp(res.log_probs)
        out["bon_d"].append(math.sqrt(res.kl))
        out["bon_gold"].append(float(q @ gold) - base_gold)
        out["bon_proxy"].append(res.expected_reward - base_proxy)
    kls = np.array(out["bon_d"]) ** 2 if kl_values is None else as_float_array("kl_values", kl_values, ndim=1)
    for kl in kls:
        res = kl_rl_tilt(dist, float(kl))
        q = np.exp(res.log_probs)
        out["tilt_d"].append(math.sqrt(res.kl))
        out["tilt_gold"].append(float(q @ gold) - base_gold)
        out["tilt_proxy"].append(res.expected_reward - base_proxy)
    result = {k: np.asarray(v) for k, v in out.items()}
    result["n_values"] = ns
    return result
