"""Performance bounds of KL/entropy-regularized approximate DP ([LtA] Thms 1-2, [GSP]; spec §4).

Checks use exact evaluations q^{π_k} (:func:`~klsim.dp.policy_evaluation`), never the iterates q_k.  The bounds
are loose (about 100× on Garnets): they catch sign and indexing bugs, not tightness; identity tests pin
the indexing.
"""

from __future__ import annotations

import numpy as np

from klsim._validation import as_float_array, check_gamma, check_int, check_nonnegative_scalar
from klsim.dp._core import check_log_policy, check_mdp, policy_transition
from klsim.mdp import TabularMDP

__all__ = [
    "kl_vmax",
    "theorem1_bound",
    "theorem1_componentwise_bound",
    "theorem2_bound",
    "entropy_bias_bounds",
    "resolvent_apply",
]


def kl_vmax(*, gamma: float, kl_coef: float, r_max: float, n_actions: int, tight: bool = True) -> float:
    r"""v^λ_max of Theorem 1 (convention C9).

    ``tight=True`` (asserted by the library): (r_max + γλ ln|A|)/(1−γ); ``tight=False``: (r_max + λ ln|A|)/(1−γ).
    """
    g = check_gamma(gamma)
    lam = check_nonnegative_scalar("kl_coef", kl_coef)
    r = check_nonnegative_scalar("r_max", r_max)
    A = check_int("n_actions", n_actions, 1)
    return (r + (g if tight else 1.0) * lam * np.log(A)) / (1.0 - g)


def theorem1_bound(
    k: np.ndarray | int,
    error_avg: np.ndarray | float,
    *,
    gamma: float,
    kl_coef: float,
    r_max: float,
    n_actions: int,
    tight: bool = True,
) -> np.ndarray:
    r"""Right-hand side of [LtA] Theorem 1 (MD-VI(λ, 0), m = 1), sup-norm form (spec §4)::

        ‖q* − q^{π_k}‖∞ ≤ (2/(1−γ)) ‖E_k/k‖∞ + 4 v^λ_max / ((1−γ) k)

    Parameters
    ----------
    k : int or ndarray of int
        Iteration(s) k ≥ 1; π_k is paired with E_k = Σ_{j=1}^{k} ε_j.
    error_avg : float or ndarray
        ‖E_k/k‖∞ (``md_vi``'s ``history["error_avg"][k-1]``).
    gamma, kl_coef, r_max, n_actions :
        γ, λ, max|r|, |A|.
    tight : bool
        Which v^λ_max (see :func:`kl_vmax`); the library asserts ``tight=True`` and reports both.

    Returns
    -------
    ndarray
        The bound, broadcast over ``k`` and ``error_avg``.
    """
    kk = np.asarray(k, dtype=np.float64)
    if np.any(kk < 1):
        raise ValueError("k: Theorem 1 holds for k >= 1")
    vmax = kl_vmax(gamma=gamma, kl_coef=kl_coef, r_max=r_max, n_actions=n_actions, tight=tight)
    g = float(gamma)
    return 2.0 / (1.0 - g) * np.asarray(error_avg, dtype=np.float64) + 4.0 * vmax / ((1.0 - g) * kk)


def resolvent_apply(mdp: TabularMDP, log_policy: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""(I − γP_π)⁻¹ x for an (S, A) array x, through one S×S solve.

    With P_π q = P⟨π, q⟩ (SA×SA): y = x + γ P w, where w = (I − γP^π)⁻¹⟨π, x⟩.
    """
    check_mdp(mdp)
    S, A = mdp.n_states, mdp.n_actions
    log_pi = check_log_policy("log_policy", log_policy, (S, A))
    pi = np.exp(log_pi)
    x = as_float_array("x", x)
    Ppi = policy_transition(mdp, pi)
    M = np.eye(S) - mdp.gamma * (Ppi.toarray() if hasattr(Ppi, "toarray") else Ppi)
    w = np.linalg.solve(M, (pi * x).sum(axis=1))
    return x + mdp.gamma * mdp.expected_next(w)


def theorem1_componentwise_bound(
    mdp: TabularMDP,
    log_policy_opt: np.ndarray,
    log_policy_k: np.ndarray,
    error_sum: np.ndarray,
    k: int,
    *,
    kl_coef: float,
    tight: bool = True,
) -> np.ndarray:
    r"""Component-wise [LtA] Theorem 1: q* − q^{π_k} ≤ |A_k E_k|/k + 4v^λ_max/((1−γ)k), shape (S, A).

    A_k = (I−γP_{π*})⁻¹ − (I−γP_{π_k})⁻¹; ``error_sum`` is E_k = Σ_{j=1}^{k} ε_j (S, A).  Spec §4 asks for
    this form when SA ≤ 2000.
    """
    k = check_int("k", k, 1)
    E = as_float_array("error_sum", error_sum)
    AE = resolvent_apply(mdp, log_policy_opt, E) - resolvent_apply(mdp, log_policy_k, E)
    vmax = kl_vmax(gamma=mdp.gamma, kl_coef=kl_coef, r_max=mdp.r_max, n_actions=mdp.n_actions, tight=tight)
    return np.abs(AE) / k + 4.0 * vmax / ((1.0 - mdp.gamma) * k)


def theorem2_bound(
    error_ema_norms: np.ndarray,
    *,
    gamma: float,
    kl_coef: float,
    entropy_coef: float,
    r_max: float,
    n_actions: int,
) -> np.ndarray:
    r"""Right-hand side of [LtA] Theorem 2 (τ > 0, m = 1) for k = 0..K−1 (spec §4)::

        ‖q*_τ − q^{π_{k+1}}_τ‖∞ ≤ (2/(1−γ)) Σ_{j=1}^{k} γ^{k−j} ‖E^β_j‖∞
                                  + (1 + 1/(1−γ)) Σ_{j=0}^{k} β^j γ^{k−j} v^τ_max,   v^τ_max = (r_max + τ ln|A|)/(1−γ)

    Parameters
    ----------
    error_ema_norms : ndarray, shape (K,)
        ‖E^β_j‖∞ for j = 1..K (``md_vi``'s ``history["error_ema"]``); zeros for noiseless runs.
    gamma, kl_coef, entropy_coef, r_max, n_actions :
        γ, λ, τ > 0, max|r|, |A|; β = λ/(λ+τ).

    Returns
    -------
    ndarray, shape (K,)
        Entry k bounds the error of π_{k+1} (``md_vi``'s history index k).

    Notes
    -----
    Both sums are accumulated directly by the recursions S_k = γS_{k−1} + x_k (never γ^k Σ(β/γ)^j, which
    overflows).  The constants are not claimed tight; the bound is asserted as written.
    """
    g = check_gamma(gamma)
    lam = check_nonnegative_scalar("kl_coef", kl_coef)
    tau = check_nonnegative_scalar("entropy_coef", entropy_coef)
    if tau <= 0.0:
        raise ValueError("entropy_coef: Theorem 2 needs entropy_coef > 0")
    A = check_int("n_actions", n_actions, 1)
    e = as_float_array("error_ema_norms", error_ema_norms, ndim=1)
    beta = lam / (lam + tau)
    vmax = (check_nonnegative_scalar("r_max", r_max) + tau * np.log(A)) / (1.0 - g)
    K = e.shape[0]
    out = np.empty(K)
    err_sum = 0.0  # Σ_{j=1}^{k} γ^{k−j} ‖E^β_j‖
    init_sum = 0.0  # Σ_{j=0}^{k} β^j γ^{k−j}
    beta_pow = 1.0
    for k in range(K):
        if k >= 1:
            err_sum = g * err_sum + e[k - 1]
        init_sum = g * init_sum + beta_pow
        beta_pow *= beta
        out[k] = 2.0 / (1.0 - g) * err_sum + (1.0 + 1.0 / (1.0 - g)) * init_sum * vmax
    return out


def entropy_bias_bounds(*, gamma: float, entropy_coef: float, n_actions: int) -> tuple[float, float]:
    r"""The two entropy-bias bounds of [GSP] (spec §4), with π*_τ = sm(q*_τ/τ)::

    0 ≤ q*_τ − q* ≤ γ τ ln|A| / (1−γ)          (first value)
    0 ≤ q* − q^{π*_τ} ≤ τ ln|A| / (1−γ)          (second value)
    """
    g = check_gamma(gamma)
    tau = check_nonnegative_scalar("entropy_coef", entropy_coef)
    A = check_int("n_actions", n_actions, 1)
    return g * tau * np.log(A) / (1.0 - g), tau * np.log(A) / (1.0 - g)
