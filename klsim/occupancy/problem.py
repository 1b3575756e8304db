"""The regularized-occupancy problem: everything the exact solvers share, computed once.

An :class:`OccupancyProblem` fixes the dynamics, the base policy π_b, the proxy reward R̃ and the true
reward R, and precomputes μ_b, its structural support, the whitened constraint matrix
A_w = E_b diag(√μ_b) (spec §3, "whitened form"), σ_R̃, σ_R, the μ_b-correlation r, λ* and the
saturation threshold λ_0.  Every solver in :mod:`klsim.occupancy.regularized` takes one and maps its
output through the re-evaluation rule (:func:`finalize`).

Reference: Laidlaw, Singhal, Dragan, ICLR 2025, arXiv:2403.03185, Eq. (5) and Theorem 5.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from klsim.mdp import TabularMDP
from klsim.occupancy.measures import (
    _check_reward,
    _occupancy,
    action_kl,
    check_policy,
    chi2_occupancy,
    flow_matrix,
    flow_residual,
    kl_occupancy,
    occupancy_support,
    policy_from_occupancy,
)
from klsim.results import OccupancyResult

__all__ = ["OccupancyProblem", "occupancy_problem", "finalize", "saturation_threshold"]


@dataclass(frozen=True, eq=False)
class OccupancyProblem:
    """Precomputed data of max_{μ ∈ K_b} ⟨μ, R̃⟩ − coef · D(μ‖μ_b) (build with :func:`occupancy_problem`).

    Attributes
    ----------
    mdp : TabularMDP
        Dynamics, ρ and γ (its own reward is ignored).
    base_policy : ndarray, shape (S, A)
        π_b.
    proxy_reward, true_reward : ndarray, shape (S, A)
        R̃ (optimized) and R (evaluated).
    mu_b : ndarray, shape (S, A)
        Base occupancy.
    support : ndarray of bool, shape (S, A)
        Structural supp μ_b.
    pairs : ndarray of int64, shape (n,)
        Flat indices s·A + a of the support pairs (the solver variables).
    states : ndarray of int64, shape (S_b,)
        States reachable under π_b (the flow rows that can be nonzero).
    E_b : scipy.sparse.csr_array, shape (S_b, n)
        Flow matrix restricted to reachable rows and support columns.
    sqrt_mu_b : ndarray, shape (n,)
        √μ_b on the support.
    c : ndarray, shape (n,)
        √μ_b ⊙ R̃ on the support (linear term of the whitened objective).
    rho_b : ndarray, shape (S_b,)
        (1−γ) ρ on the reachable states.
    J_b_proxy, J_b_true : float
        Base returns ⟨μ_b, R̃⟩ and ⟨μ_b, R⟩.
    sigma_proxy, sigma_true : float
        Standard deviations of R̃ and R under μ_b.
    r : float
        μ_b-correlation of R and R̃ (NaN if a σ is 0).
    lambda_star : float
        σ_R̃ √(1 − r²) (NaN when r is NaN).
    lambda_0 : float
        Saturation threshold ‖Π_N(c)‖₂ with N = null(E_b diag √μ_b).
    """

    mdp: TabularMDP
    base_policy: np.ndarray
    proxy_reward: np.ndarray
    true_reward: np.ndarray
    mu_b: np.ndarray
    support: np.ndarray
    pairs: np.ndarray
    states: np.ndarray
    E_b: Any
    sqrt_mu_b: np.ndarray
    c: np.ndarray
    rho_b: np.ndarray
    J_b_proxy: float
    J_b_true: float
    sigma_proxy: float
    sigma_true: float
    r: float
    lambda_star: float
    lambda_0: float
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_vars(self) -> int:
        """Number n of support pairs."""
        return int(self.pairs.size)

    @property
    def A_w(self):
        """Whitened constraint matrix E_b diag(√μ_b), sparse (S_b, n)."""
        if "A_w" not in self._cache:
            self._cache["A_w"] = sp.csr_array(self.E_b @ sp.diags_array(self.sqrt_mu_b))
        return self._cache["A_w"]

    def to_full(self, x_support: np.ndarray) -> np.ndarray:
        """Scatter a support vector of length n into an (S, A) table (zeros elsewhere)."""
        out = np.zeros(self.mdp.n_states * self.mdp.n_actions)
        out[self.pairs] = x_support
        return out.reshape(self.mdp.n_states, self.mdp.n_actions)

    def mu_from_whitened(self, v: np.ndarray) -> np.ndarray:
        """μ = μ_b + √μ_b ⊙ v on the support, 0 elsewhere (negatives clipped)."""
        return self.to_full(np.maximum(self.mu_b.ravel()[self.pairs] + self.sqrt_mu_b * v, 0.0))


def occupancy_problem(
    mdp: TabularMDP,
    base_policy: np.ndarray,
    proxy_reward: np.ndarray,
    true_reward: np.ndarray | None = None,
) -> OccupancyProblem:
    """Build the :class:`OccupancyProblem` for (mdp, π_b, R̃, R); R defaults to ``mdp.R``.

    Raises
    ------
    ValueError
        Bad shapes, NaN rewards, a non-stochastic base policy.
    """
    pb = check_policy("base_policy", base_policy, mdp)
    Rp = _check_reward(mdp, proxy_reward, "proxy_reward")
    Rt = mdp.R if true_reward is None else _check_reward(mdp, true_reward, "true_reward")
    mu_b = _occupancy(mdp, pb)
    support = occupancy_support(mdp, pb)
    mu_b = np.where(support, mu_b, 0.0)  # structural zeros are exact zeros
    pairs = np.flatnonzero(support.ravel()).astype(np.int64)
    states = np.flatnonzero(support.any(axis=1)).astype(np.int64)
    E = flow_matrix(mdp)
    E_b = sp.csr_array(E[states][:, pairs])
    sq = np.sqrt(mu_b.ravel()[pairs])
    c = sq * Rp.ravel()[pairs]
    J_bp, J_bt = float(np.sum(mu_b * Rp)), float(np.sum(mu_b * Rt))
    sd_p = float(np.sqrt(max(np.sum(mu_b * (Rp - J_bp) ** 2), 0.0)))
    sd_t = float(np.sqrt(max(np.sum(mu_b * (Rt - J_bt) ** 2), 0.0)))
    if sd_p > 0 and sd_t > 0:
        r = float(np.sum(mu_b * (Rt - J_bt) * (Rp - J_bp)) / (sd_p * sd_t))
        r = min(max(r, -1.0), 1.0)
        lam_star = sd_p * np.sqrt(max(1.0 - r * r, 0.0))
    else:
        r, lam_star = float("nan"), float("nan")
    rho_b = (1.0 - mdp.gamma) * mdp.initial[states]
    prob = OccupancyProblem(
        mdp=mdp,
        base_policy=pb,
        proxy_reward=Rp,
        true_reward=np.asarray(Rt, dtype=np.float64),
        mu_b=mu_b,
        support=support,
        pairs=pairs,
        states=states,
        E_b=E_b,
        sqrt_mu_b=sq,
        c=c,
        rho_b=rho_b,
        J_b_proxy=J_bp,
        J_b_true=J_bt,
        sigma_proxy=sd_p,
        sigma_true=sd_t,
        r=r,
        lambda_star=float(lam_star),
        lambda_0=float("nan"),
    )
    object.__setattr__(prob, "lambda_0", saturation_threshold(prob))
    return prob


def _null_projection(prob: OccupancyProblem, x: np.ndarray) -> np.ndarray:
    """Π_N x = x − A_wᵀ (A_w A_wᵀ)⁻¹ A_w x, N = null(A_w) (least squares; A_w has full row rank)."""
    if "AAt_lu" not in prob._cache:
        Aw = prob.A_w
        G = sp.csc_matrix(Aw @ Aw.T)
        prob._cache["AAt_lu"] = spla.splu(G)
    Aw = prob.A_w
    y = prob._cache["AAt_lu"].solve(Aw @ x)
    p = x - Aw.T @ y
    # one refinement step
    y2 = prob._cache["AAt_lu"].solve(Aw @ p)
    return p - Aw.T @ y2


def saturation_threshold(prob: OccupancyProblem) -> float:
    """λ_0 = ‖Π_N(√μ_b ⊙ R̃)‖₂: μ_b is optimal for the √χ² objective iff coef ≥ λ_0 (spec §3(b)).

    λ_0 ≤ σ_R̃ always (Π_N removes at least the mean direction √μ_b, which lies in range(A_wᵀ)).
    """
    return float(np.linalg.norm(_null_projection(prob, prob.c)))


def finalize(
    prob: OccupancyProblem,
    mu_solver: np.ndarray,
    *,
    regularizer: str,
    coef: float,
    method: str,
    status: str = "optimal",
    history: dict | None = None,
    diagnostics: dict | None = None,
    policy: np.ndarray | None = None,
) -> OccupancyResult:
    """Apply the re-evaluation rule and package an :class:`~klsim.results.OccupancyResult` (spec §1).

    μ_solver → π = policy_from_occupancy(μ_solver, π_b) → μ = occupancy(π) (exact LU).  Every reported
    number comes from the re-evaluated μ; ‖μ_solver − μ‖∞ is kept as ``diagnostics["solver_mu_gap"]``.
    A ``policy`` given directly (soft VI, policy iteration) is evaluated as is.
    """
    mdp = prob.mdp
    pi = policy_from_occupancy(mu_solver, prob.base_policy) if policy is None else policy
    mu = _occupancy(mdp, pi)
    chi2 = chi2_occupancy(mu, prob.mu_b, prob.support)
    if regularizer == "chi2":
        div = chi2
    elif regularizer == "sqrt_chi2":
        div = float(np.sqrt(chi2))
    elif regularizer == "kl":
        div = kl_occupancy(mu, prob.mu_b, prob.support)
    elif regularizer == "action_kl":
        div = action_kl(mu, pi, prob.base_policy)
    elif regularizer == "none":
        div = 0.0
    else:  # pragma: no cover - internal
        raise ValueError(f"regularizer: unknown {regularizer!r}")
    Jp, Jt = float(np.sum(mu * prob.proxy_reward)), float(np.sum(mu * prob.true_reward))
    diag = {"solver_mu_gap": float(np.max(np.abs(mu_solver - mu))), "flow_residual": flow_residual(mdp, mu)}
    diag.update(diagnostics or {})
    obj = Jp - coef * div if coef > 0 else Jp
    return OccupancyResult(
        policy=pi,
        occupancy=mu,
        true_return=Jt,
        proxy_return=Jp,
        divergence=float(div),
        status=status,
        history=history or {},
        params={"regularizer": regularizer, "coef": float(coef)},
        objective=float(obj),
        method=method,
        chi2=float(chi2),
        lambda_0=prob.lambda_0,
        sigma_proxy=prob.sigma_proxy,
        lambda_star=prob.lambda_star,
        diagnostics=diag,
    )
