"""KL regularization toward a FIXED reference policy: demonstration-regularized RL ([DRRL]; spec §7)."""

from __future__ import annotations

import numpy as np

from klsim._validation import as_float_array, check_gamma, check_int, check_nonneg, check_positive
from klsim.dp._core import check_log_policy, check_mdp, greedy_rows, policy_value
from klsim.dp.evaluation import policy_evaluation, solve_policy_system
from klsim.dp.solvers import soft_value_iteration
from klsim.mdp import TabularMDP

__all__ = ["kl_ref_backward_induction", "behavior_cloning", "kl_ref_tradeoff", "BC_KAPPA"]

BC_KAPPA = 1.0
"""Default add-κ smoothing of :func:`behavior_cloning` (Laplace smoothing)."""


def kl_ref_backward_induction(
    mdp: TabularMDP,
    log_ref: np.ndarray,
    *,
    kl_coef: float,
    horizon: int,
    gamma: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Finite-horizon KL-to-reference DP by backward induction (spec §7, [DRRL])::

        V_{H+1} = 0;   Q_h = r + γ P V_{h+1};   V_h = λ lse(ln π_ref,h + Q_h/λ);   π_h = sm(ln π_ref,h + Q_h/λ)

    Parameters
    ----------
    mdp : TabularMDP
        Transitions and rewards (stationary over h).
    log_ref : ndarray, shape (S, A) or (H, S, A)
        log π_ref (or one per step h = 1..H); −inf entries are hard constraints.
    kl_coef : float
        λ > 0.
    horizon : int
        H ≥ 1.
    gamma : float, optional
        Discount in [0, 1] (γ = 1 allowed here); defaults to ``mdp.gamma``.

    Returns
    -------
    log_policy : ndarray, shape (H, S, A)
        log π_h, h = 1..H (index h − 1).
    q : ndarray, shape (H, S, A)
        Q_h.
    v : ndarray, shape (H + 1, S)
        V_h, with V_{H+1} = 0 last.
    """
    check_mdp(mdp)
    lam = check_positive("kl_coef", kl_coef)
    H = check_int("horizon", horizon, 1)
    g = mdp.gamma if gamma is None else check_gamma(gamma, allow_one=True)
    S, A = mdp.n_states, mdp.n_actions
    ref = as_float_array("log_ref", log_ref)
    if ref.shape == (S, A):
        ref = np.broadcast_to(ref, (H, S, A))
    if ref.shape != (H, S, A):
        raise ValueError(
            f"log_ref: expected shape (S, A) = {(S, A)} or (H, S, A) = {(H, S, A)}, got {ref.shape}"
        )
    for h in range(H):
        check_log_policy(f"log_ref[{h}]", ref[h], (S, A))
    log_pi = np.empty((H, S, A))
    q = np.empty((H, S, A))
    v = np.zeros((H + 1, S))
    for h in range(H - 1, -1, -1):
        q[h] = mdp.R + g * mdp.expected_next(v[h + 1])
        greedy_rows(q[h], np.ascontiguousarray(ref[h]), lam, 0.0, log_pi[h], v[h])
    return log_pi, q, v


def behavior_cloning(
    counts: np.ndarray, kappa: float = BC_KAPPA, *, support: np.ndarray | None = None
) -> np.ndarray:
    r"""Add-κ smoothed behavior cloning, as log-probabilities (spec §7)::

        π^BC(a|s) = (n(s,a) + κ) / (n(s) + κ|A_s|)

    Parameters
    ----------
    counts : ndarray, shape (S, A)
        Visit counts n(s, a) ≥ 0 of the expert data.
    kappa : float
        κ > 0 (default 1, Laplace smoothing).
    support : ndarray of bool, shape (S, A), optional
        Allowed actions (each state needs one); others get probability 0 (−inf), a hard constraint
        when the result is used as π_ref.  |A_s| counts the allowed actions.

    Returns
    -------
    ndarray, shape (S, A)
        log π^BC.
    """
    n = as_float_array("counts", counts)
    if n.ndim != 2:
        raise ValueError(f"counts: expected shape (S, A), got {n.shape}")
    check_nonneg("counts", n, ("s", "a"))
    k = check_positive("kappa", kappa)
    mask = np.ones(n.shape, dtype=bool) if support is None else np.asarray(support, dtype=bool)
    if mask.shape != n.shape:
        raise ValueError(f"support: expected shape {n.shape}, got {mask.shape}")
    if not mask.any(axis=1).all():
        raise ValueError(f"support: state s={int(np.flatnonzero(~mask.any(axis=1))[0])} allows no action")
    if np.any((n > 0) & ~mask):
        s, a = np.argwhere((n > 0) & ~mask)[0]
        raise ValueError(f"counts: positive count outside support at (s={s}, a={a})")
    num = np.where(mask, n + k, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(num) - np.log(num.sum(axis=1, keepdims=True))


def kl_ref_tradeoff(
    mdp: TabularMDP, log_ref: np.ndarray, kl_coefs: np.ndarray, *, tol: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    r"""J(λ) = ρᵀ v^{π*_λ} and K(λ) = ρᵀ (I − γP^{π*_λ})⁻¹ KL(π*_λ‖π_ref) over a grid of λ (spec §7).

    π*_λ = sm(ln π_ref + q_λ/λ) with q_λ the fixed point of q = r + γP[λ lse(ln π_ref + q/λ)]
    (:func:`~klsim.dp.soft_value_iteration`).  Both are non-increasing in λ (spec §10 claim 17).

    Returns
    -------
    J, K : ndarray, shape like ``kl_coefs``
        Unregularized return and discounted KL of π*_λ under ρ = ``mdp.initial``.
    """
    check_mdp(mdp)
    S, A = mdp.n_states, mdp.n_actions
    ref = check_log_policy("log_ref", log_ref, (S, A))
    lams = np.atleast_1d(as_float_array("kl_coefs", kl_coefs))
    J = np.empty(lams.shape)
    K = np.empty(lams.shape)
    zeros = np.zeros((S, A))
    for i, lam in enumerate(lams):
        check_positive("kl_coefs", lam)
        log_pi = soft_value_iteration(mdp, kl_coef=lam, log_ref=ref, tol=tol).log_policy
        _, v = policy_evaluation(mdp, log_pi)
        kl = -policy_value(log_pi, zeros, ref, 1.0, 0.0)
        J[i] = mdp.initial @ v
        K[i] = mdp.initial @ solve_policy_system(mdp, np.exp(log_pi), kl)
    return J, K
