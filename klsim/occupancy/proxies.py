"""Correlated proxies and reward hacking (spec §2; paper Definitions 4.1 and 4.2).

* :func:`r_correlation` — the Pearson correlation of R and R̃ under the base occupancy μ_b;
* :func:`make_correlated_proxy` — a proxy with a prescribed μ_b-correlation (exact to 1e-10);
* :func:`make_hacking_proxy` — a trap proxy R + B·1_T on rarely visited pairs (r stays high);
* :func:`hacking_range` / :func:`is_reward_hacking` — the range of true returns over the proxy-optimal face
  (two HiGHS LPs) and the hacking verdict.

Reference: Laidlaw, Singhal, Dragan, ICLR 2025, arXiv:2403.03185, §4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize as so

from klsim._validation import as_float_array, check_finite, check_int, check_nonneg, check_shape
from klsim.mdp import TabularMDP
from klsim.occupancy.measures import SolverError, _check_reward, flow_matrix

__all__ = [
    "mu_mean_std",
    "r_correlation",
    "make_correlated_proxy",
    "make_hacking_proxy",
    "HackingRange",
    "hacking_range",
    "is_reward_hacking",
]


def _weights(mu_b) -> np.ndarray:
    w = as_float_array("mu_b", mu_b)
    check_nonneg("mu_b", w)
    if not abs(w.sum() - 1.0) <= 1e-8:
        raise ValueError(f"mu_b: must sum to 1 (an occupancy), got {w.sum()!r}")
    return w


def mu_mean_std(mu_b: np.ndarray, X: np.ndarray) -> tuple[float, float]:
    """(J_b(X), σ_X) = (⟨μ_b, X⟩, √E_{μ_b}(X − J_b(X))²); σ is a standard deviation (spec §0)."""
    w = _weights(mu_b)
    X = as_float_array("X", X)
    check_shape("X", X, w.shape)
    check_finite("X", X)
    m = float(np.sum(w * X))
    return m, float(np.sqrt(max(np.sum(w * (X - m) ** 2), 0.0)))


def r_correlation(mu_b: np.ndarray, R: np.ndarray, R_proxy: np.ndarray) -> float:
    """r = E_{μ_b}[(R − J_b(R))(R̃ − J_b(R̃))]/(σ_R σ_R̃) (paper Def. 4.1); NaN if a σ is 0."""
    w = _weights(mu_b)
    mR, sR = mu_mean_std(w, R)
    mP, sP = mu_mean_std(w, R_proxy)
    if sR == 0 or sP == 0:
        return float("nan")
    r = float(np.sum(w * (np.asarray(R) - mR) * (np.asarray(R_proxy) - mP)) / (sR * sP))
    return min(max(r, -1.0), 1.0)


def make_correlated_proxy(
    mu_b: np.ndarray,
    R: np.ndarray,
    r: float,
    mean: float = 0.0,
    std: float = 1.0,
    off_support: float | np.ndarray = 0.0,
    seed: int | None = 0,
) -> np.ndarray:
    """A proxy whose μ_b-correlation with R is exactly ``r`` (spec §2, "prescribed correlation").

    1. Z_R = (R − J_b(R))/σ_R on supp μ_b.
    2. Noise, centred under μ_b, minus its μ_b-projection on Z_R, scaled to unit μ_b-variance: W.
    3. R̃ = mean + std·(r Z_R + √(1−r²) W) on the support; ``off_support`` elsewhere.

    Returns
    -------
    ndarray, same shape as R
        |corr_{μ_b}(R, R̃) − r| ≤ 1e-10 (checked; raises otherwise).
    """
    w = _weights(mu_b)
    R = as_float_array("R", R)
    check_shape("R", R, w.shape)
    if not -1.0 <= float(r) <= 1.0:
        raise ValueError(f"r: must lie in [-1, 1], got {r!r}")
    mR, sR = mu_mean_std(w, R)
    if sR == 0:
        raise ValueError("R: has zero standard deviation under mu_b; no correlation can be prescribed")
    supp = w > 0
    Z = np.where(supp, (R - mR) / sR, 0.0)
    rng = np.random.default_rng(seed)
    for _ in range(10):
        N = np.where(supp, rng.standard_normal(R.shape), 0.0)
        N = N - np.sum(w * N)
        N = N - np.sum(w * N * Z) * Z
        sd = np.sqrt(np.sum(w * N * N))
        if sd > 1e-8:
            break
    else:
        if abs(abs(r) - 1.0) > 0:
            raise ValueError("mu_b: support too small to build noise uncorrelated with R")
        sd = 1.0
    W = np.where(supp, N / sd, 0.0)
    off = np.broadcast_to(np.asarray(off_support, dtype=np.float64), R.shape)
    out = np.where(supp, mean + std * (r * Z + np.sqrt(max(1.0 - r * r, 0.0)) * W), off)
    got = r_correlation(w, R, out)
    if not abs(got - r) <= 1e-10:
        raise SolverError(f"make_correlated_proxy: achieved correlation {got!r} differs from r={r!r}")
    return out


def make_hacking_proxy(
    mu_b: np.ndarray, R: np.ndarray, bonus: float, k: int = 1, pairs: np.ndarray | None = None
) -> np.ndarray:
    """Trap proxy R̃ = R + B·1_T (spec §2, "trap proxies").

    T is the ``k`` (s, a) pairs with the smallest positive μ_b (or the given flat indices ``pairs``).  r stays
    high because μ_b(T) is tiny (the tomato mechanism); measure it with :func:`r_correlation` and verify
    hacking with :func:`hacking_range`.
    """
    w = _weights(mu_b)
    R = as_float_array("R", R)
    check_shape("R", R, w.shape)
    out = R.copy().ravel()
    if pairs is None:
        k = check_int("k", k, 1)
        flat = w.ravel()
        pos = np.flatnonzero(flat > 0)
        pairs = pos[np.argsort(flat[pos], kind="stable")[:k]]
    out[np.asarray(pairs, dtype=np.int64)] += float(bonus)
    return out.reshape(R.shape)


@dataclass(frozen=True)
class HackingRange:
    """True returns on the proxy-optimal face (spec §2).

    Attributes
    ----------
    J_star_proxy : float
        max_K ⟨μ, R̃⟩.
    J_min, J_max : float
        min / max ⟨μ, R⟩ subject to ⟨μ, R̃⟩ ≥ J* − 1e-9·max(1, |J*|).
    J_base : float
        J(π_b, R).
    verdict : str
        ``"hacks (all)"`` if J_max < J_base, ``"hacks (some)"`` if J_min < J_base, else ``"no hacking"``.
    mu_min, mu_max : ndarray, shape (S, A)
        Occupancies attaining J_min and J_max.
    """

    J_star_proxy: float
    J_min: float
    J_max: float
    J_base: float
    verdict: str
    mu_min: np.ndarray
    mu_max: np.ndarray


def _lp(c, A_eq, b_eq, A_ub=None, b_ub=None):
    res = so.linprog(
        c,
        A_ub=A_ub,
        b_ub=b_ub,
        A_eq=A_eq,
        b_eq=b_eq,
        bounds=(0, None),
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if res.status != 0:
        raise SolverError(f"hacking_range: LP failed ({res.message})")
    return res.x


def hacking_range(
    mdp: TabularMDP, proxy_reward: np.ndarray, true_reward: np.ndarray, J_base: float
) -> HackingRange:
    """Range of J(π, R) over all proxy-optimal occupancies (HiGHS LPs over K; spec §2).

    Parameters
    ----------
    mdp : TabularMDP
    proxy_reward, true_reward : ndarray, shape (S, A)
    J_base : float
        J(π_b, R), e.g. ``prob.J_b_true``.
    """
    Rp = _check_reward(mdp, proxy_reward, "proxy_reward").ravel()
    Rt = _check_reward(mdp, true_reward, "true_reward").ravel()
    E = flow_matrix(mdp)
    b = (1 - mdp.gamma) * mdp.initial
    mu_p = _lp(-Rp, E, b)
    J_star = float(Rp @ mu_p)
    cut = J_star - 1e-9 * max(1.0, abs(J_star))
    mu_min = _lp(Rt, E, b, -Rp[None, :], np.array([-cut]))
    mu_max = _lp(-Rt, E, b, -Rp[None, :], np.array([-cut]))
    Jmin, Jmax = float(Rt @ mu_min), float(Rt @ mu_max)
    verdict = "hacks (all)" if Jmax < J_base else ("hacks (some)" if Jmin < J_base else "no hacking")
    shape = (mdp.n_states, mdp.n_actions)
    return HackingRange(
        J_star, Jmin, Jmax, float(J_base), verdict, mu_min.reshape(shape), mu_max.reshape(shape)
    )


def is_reward_hacking(J_policy_true: float, J_base_true: float) -> bool:
    """Paper Def. 4.2: a (proxy-optimal) policy hacks when J(π̃, R) < J(π_b, R)."""
    return bool(float(J_policy_true) < float(J_base_true))
