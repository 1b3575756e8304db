"""Reward-model ensembles: worst-case (WCO) and uncertainty-weighted (UWO) objectives (spec §7).

Members R_1..R_k (stacked on the first axis), mean R̄.

* WCO = min_i R_i;
* UWO = R̄ − coef · Var_i R_i with the **population variance (ddof = 0)** by default, as in Coste et al.'s
  best-of-n code; their PPO code uses ddof = 1, and coef(ddof=1) = coef(ddof=0)·(k−1)/k gives identical
  rewards (:func:`uwo_coef_convert`).

Per-(s, a) WCO/UWO tables are proxies for any regularized solver.  :func:`ensemble_maxmin` solves the LP
max_{μ ∈ K} min_i ⟨μ, R_i⟩, whose worst-case value is ≥ that of the WCO-table optimum.

Reference: Coste, Anwar, Kirk, Krueger, "Reward Model Ensembles Help Mitigate Overoptimization",
ICLR 2024, arXiv:2310.02743.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp

from klsim._validation import as_float_array, check_finite, check_int, check_nonnegative_scalar
from klsim.mdp import TabularMDP
from klsim.occupancy.measures import SolverError, flow_matrix

__all__ = ["wco_reward", "uwo_reward", "uwo_coef_convert", "ensemble_maxmin"]


def _members(members) -> np.ndarray:
    M = as_float_array("members", members)
    if M.ndim < 2 or M.shape[0] < 1:
        raise ValueError(f"members: expected shape (k, ...) with k >= 1, got {M.shape}")
    check_finite("members", M)
    return M


def wco_reward(members: np.ndarray) -> np.ndarray:
    """Worst-case optimization reward min_i R_i, shape members.shape[1:] (Coste et al. 2024, §3)."""
    return _members(members).min(axis=0)


def uwo_reward(members: np.ndarray, coef: float = 0.5, *, ddof: int = 0) -> np.ndarray:
    """Uncertainty-weighted reward R̄ − coef · Var_i R_i (ddof = 0 by default; Coste et al. 2024, Eq. 3).

    Defaults: coef = 0.5 (their best-of-n value; 0.1 for PPO).  ``ddof=1`` needs k ≥ 2.
    """
    M = _members(members)
    coef = check_nonnegative_scalar("coef", coef)
    ddof = check_int("ddof", ddof, 0)
    if ddof not in (0, 1):
        raise ValueError(f"ddof: must be 0 or 1, got {ddof}")
    if M.shape[0] - ddof < 1:
        raise ValueError(f"members: ddof={ddof} needs at least {ddof + 1} members, got {M.shape[0]}")
    return M.mean(axis=0) - coef * M.var(axis=0, ddof=ddof)


def uwo_coef_convert(coef: float, k: int, *, from_ddof: int = 0, to_ddof: int = 1) -> float:
    """Coefficient giving identical UWO rewards under another ddof: coef₁ = coef₀·(k−1)/k (and back)."""
    k = check_int("k", k, 2)
    coef = check_nonnegative_scalar("coef", coef)
    if (from_ddof, to_ddof) == (0, 1):
        return coef * (k - 1) / k
    if (from_ddof, to_ddof) == (1, 0):
        return coef * k / (k - 1)
    if from_ddof == to_ddof and from_ddof in (0, 1):
        return coef
    raise ValueError(f"from_ddof/to_ddof: must be 0 or 1, got {from_ddof}/{to_ddof}")


def ensemble_maxmin(mdp: TabularMDP, members: np.ndarray) -> tuple[np.ndarray, float]:
    """max_{μ ∈ K} min_i ⟨μ, R_i⟩ as an LP in (μ, t) (HiGHS; spec §7(ii)).

    Returns
    -------
    mu : ndarray, shape (S, A)
        A maximin occupancy (possibly of a stochastic policy).
    value : float
        The maximin value min_i ⟨μ, R_i⟩.
    """
    M = _members(members)
    S, A = mdp.n_states, mdp.n_actions
    if M.shape[1:] != (S, A):
        raise ValueError(f"members: expected shape (k, {S}, {A}), got {M.shape}")
    k, n = M.shape[0], S * A
    c = np.zeros(n + 1)
    c[-1] = -1.0  # maximize t
    A_ub = sp.hstack([sp.csr_array(-M.reshape(k, n)), sp.csr_array(np.ones((k, 1)))]).tocsr()
    A_eq = sp.hstack([flow_matrix(mdp), sp.csr_array((S, 1))]).tocsr()
    bounds = [(0, None)] * n + [(None, None)]
    res = so.linprog(
        c,
        A_ub=A_ub,
        b_ub=np.zeros(k),
        A_eq=A_eq,
        b_eq=(1 - mdp.gamma) * mdp.initial,
        bounds=bounds,
        method="highs",
    )
    if res.status != 0:
        raise SolverError(f"ensemble_maxmin: LP failed ({res.message})")
    mu = np.maximum(res.x[:n], 0.0).reshape(S, A)
    return mu, float(np.min(M.reshape(k, n) @ mu.ravel()))
