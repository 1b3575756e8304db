"""Occupancy measures, the Bellman-flow polytope, policy recovery, and returns through occupancies.

Conventions (spec ``occupancy-regularization.md`` §0–§1, ``docs/occupancy.md``):

* μ_π(s, a) = (1−γ) Σ_t γ^t Pr_π(s_t = s, a_t = a) with s_0 ∼ ρ, so Σ μ = 1.
* The return is normalized: J(π, R) = (1−γ) E_π[Σ_t γ^t R_t] = ⟨μ_π, R⟩.
* Flow matrix E = M − γ Pᵀ of shape (S, S·A) with M[s, (s, a)] = 1; the flow constraints read
  E vec(μ) = (1−γ) ρ, and K = {μ ≥ 0 : E μ = (1−γ) ρ} is the set of stationary-policy occupancies
  (Puterman 1994, §6.9).
* Policy recovery: π(a|s) = μ(s, a)/Σ_a' μ(s, a') where that sum exceeds 1e-14, and π_b(·|s) (or the
  uniform policy) elsewhere; those states carry no flow, so neither μ nor J depends on the choice.

Reference: Laidlaw, Singhal, Dragan, "Correlated Proxies", ICLR 2025, arXiv:2403.03185, §2–§3.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from klsim._validation import (
    as_float_array,
    check_choice,
    check_distribution,
    check_finite,
    check_nonneg,
    check_shape,
)
from klsim.mdp import TabularMDP

__all__ = [
    "SolverError",
    "occupancy",
    "state_occupancy",
    "flow_matrix",
    "flow_residual",
    "policy_from_occupancy",
    "occupancy_support",
    "occupancy_return",
    "policy_values",
    "advantage",
    "performance_difference",
    "chi2_occupancy",
    "kl_occupancy",
    "l1_occupancy",
    "action_kl",
    "check_policy",
]

RECOVERY_TOL = 1e-14
"""States whose occupancy mass is at most this are 'unvisited' in :func:`policy_from_occupancy`."""
POST_TOL = 1e-10
"""Post-condition tolerance of :func:`occupancy` on the flow residual and on |Σμ − 1|."""
_CLIP = 1e-14
KRYLOV_MIN_STATES = 2000
"""Sparse systems with more states than this are solved by GMRES (residual-checked), falling back to LU."""


class SolverError(RuntimeError):
    """A solver or an exact linear solve did not reach its stated accuracy; no result is returned."""


def check_policy(name: str, policy, mdp: TabularMDP) -> np.ndarray:
    """Validate a stochastic policy table of shape (S, A) (rows sum to 1 within 1e-10); return float64."""
    pi = as_float_array(name, policy)
    check_shape(name, pi, (mdp.n_states, mdp.n_actions))
    check_finite(name, pi, ("s", "a"))
    check_distribution(name, pi, tol=1e-10, axis=1)
    return pi


def _policy_matrix(mdp: TabularMDP, pi: np.ndarray):
    """P_π[s, s'] = Σ_a π(a|s) P[(s,a), s'] (sparse CSR for sparse MDPs, dense otherwise)."""
    S, A = mdp.n_states, mdp.n_actions
    if mdp.is_sparse:
        rows = np.repeat(np.arange(S), A)
        Pi = sp.csr_array((pi.ravel(), (rows, np.arange(S * A))), shape=(S, S * A))
        return (Pi @ mdp.transition_matrix()).tocsc()
    return np.einsum("sa,sat->st", pi, mdp.dense_P())


def _solve_policy_system(mdp: TabularMDP, pi: np.ndarray, rhs: np.ndarray, transpose: bool) -> np.ndarray:
    """Solve (I − γ P_π)ᵀ x = rhs (``transpose``) or (I − γ P_π) x = rhs exactly (LU)."""
    S = mdp.n_states
    Ppi = _policy_matrix(mdp, pi)
    if sp.issparse(Ppi):
        Amat = sp.identity(S, format="csc") - mdp.gamma * Ppi
        if transpose:
            Amat = Amat.T.tocsc()
        if S > KRYLOV_MIN_STATES:
            # random sparse graphs (Garnets) fill in under LU; I − γP_π has its spectrum in the disc
            # |z − 1| ≤ γ, and restarted GMRES reaches rounding level in a few dozen matvecs
            x, info = spla.gmres(Amat, rhs, rtol=1e-14, atol=0.0, restart=min(100, S), maxiter=50)
            if np.max(np.abs(Amat @ x - rhs)) <= 1e-13 * max(1.0, float(np.max(np.abs(rhs)))):
                return x
        lu = spla.splu(sp.csc_matrix(Amat))
        x = lu.solve(rhs)
        # one step of iterative refinement keeps the residual at rounding level for γ near 1
        x = x + lu.solve(rhs - Amat @ x)
        return x
    Amat = np.eye(S) - mdp.gamma * Ppi
    lu = sla.lu_factor(Amat.T if transpose else Amat)
    x = sla.lu_solve(lu, rhs)
    return x + sla.lu_solve(lu, rhs - (Amat.T if transpose else Amat) @ x)


def state_occupancy(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """Normalized discounted state occupancy d_π(s) = Σ_a μ_π(s, a).

    Solves (I − γ P_πᵀ) d = (1−γ) ρ by sparse LU (``scipy.sparse.linalg.splu``) for CSR MDPs and dense LU
    otherwise (spec §1); sparse systems with S > 2000 use restarted GMRES to a residual of 1e-14 (LU if it
    does not get there), because random sparse graphs fill in under LU.

    Parameters
    ----------
    mdp : TabularMDP
    policy : ndarray, shape (S, A)
        π(a|s), rows summing to 1.

    Returns
    -------
    ndarray, shape (S,)
    """
    pi = check_policy("policy", policy, mdp)
    return _state_occupancy(mdp, pi)


def _state_occupancy(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    d = _solve_policy_system(mdp, pi, (1.0 - mdp.gamma) * mdp.initial, transpose=True)
    if np.any(d < -POST_TOL):
        raise SolverError(f"occupancy: linear solve produced a negative mass {d.min():.3g}")
    return np.where(d < _CLIP, np.maximum(d, 0.0), d)


def occupancy(mdp: TabularMDP, policy: np.ndarray) -> np.ndarray:
    """Normalized discounted state-action occupancy μ_π(s, a) = d_π(s) π(a|s) (spec §1).

    μ_π(s, a) = (1−γ) Σ_t γ^t Pr_π(s_t = s, a_t = a), s_0 ∼ ρ.  Exact: one LU solve of
    (I − γ P_πᵀ) d = (1−γ) ρ (sparse where the MDP is), then μ = d ⊙ π.

    Parameters
    ----------
    mdp : TabularMDP
    policy : ndarray, shape (S, A)
        π(a|s), rows summing to 1 within 1e-10.

    Returns
    -------
    ndarray, shape (S, A)
        μ ≥ 0 with Σμ = 1 and E vec(μ) = (1−γ) ρ, both to 1e-10 (checked; negatives of magnitude
        below 1e-14 are clipped to 0).

    Raises
    ------
    ValueError
        Bad policy (shape, NaN, non-stochastic row).
    SolverError
        If the post-conditions fail (an ill-conditioned system).

    Examples
    --------
    >>> from klsim import chain
    >>> mdp = chain(4, gamma=0.9)
    >>> mu = occupancy(mdp, np.full((4, 2), 0.5))
    >>> round(float(mu.sum()), 12)
    1.0
    """
    pi = check_policy("policy", policy, mdp)
    return _occupancy(mdp, pi)


def _occupancy(mdp: TabularMDP, pi: np.ndarray, check: bool = True) -> np.ndarray:
    d = _state_occupancy(mdp, pi)
    mu = d[:, None] * pi  # d was clipped at 0 (negatives of magnitude < 1e-14 come from rounding)
    if check:
        res = flow_residual(mdp, mu)
        tot = abs(mu.sum() - 1.0)
        if res > POST_TOL or tot > POST_TOL:
            raise SolverError(
                f"occupancy: post-condition failed (flow residual {res:.3g}, |Σμ−1| = {tot:.3g} > {POST_TOL:g})"
            )
    return mu


def flow_matrix(mdp: TabularMDP) -> sp.csr_array:
    """Bellman-flow matrix E = M − γ Pᵀ, sparse of shape (S, S·A) (spec §0).

    Column (s, a) holds +1 in row s and −γ P(s'|s, a) in rows s'; each column sums to 1 − γ.
    """
    S, A = mdp.n_states, mdp.n_actions
    M = sp.csr_array((np.ones(S * A), (np.repeat(np.arange(S), A), np.arange(S * A))), shape=(S, S * A))
    PT = sp.csr_array(mdp.transition_matrix()).T
    return sp.csr_array(M - mdp.gamma * PT)


def flow_residual(mdp: TabularMDP, mu: np.ndarray) -> float:
    """‖E vec(μ) − (1−γ) ρ‖_∞, the violation of the Bellman-flow equations (spec §1).

    Row s reads Σ_a μ(s, a) = (1−γ) ρ(s) + γ Σ_{s', a'} P(s|s', a') μ(s', a').
    """
    mu = as_float_array("mu", mu)
    check_shape("mu", mu, (mdp.n_states, mdp.n_actions))
    inflow = mdp.transition_matrix().T @ mu.ravel()
    r = mu.sum(axis=1) - (1.0 - mdp.gamma) * mdp.initial - mdp.gamma * np.asarray(inflow).ravel()
    return float(np.max(np.abs(r)))


def policy_from_occupancy(
    mu: np.ndarray,
    base_policy: np.ndarray | None = None,
    *,
    fallback: str = "base",
    tol: float = RECOVERY_TOL,
) -> np.ndarray:
    """Recover π from an occupancy: π(a|s) = μ(s, a)/Σ_a' μ(s, a') (spec §1, policy recovery).

    Parameters
    ----------
    mu : ndarray, shape (S, A)
        A (possibly solver-produced) occupancy; negatives of magnitude ≤ 1e-14 are treated as 0.
    base_policy : ndarray, shape (S, A), optional
        π_b, used at states whose mass Σ_a μ(s, a) ≤ ``tol`` when ``fallback="base"`` (library default).
    fallback : {"base", "uniform"}
        What unvisited states get.  Neither μ nor J depends on it (those states receive no flow).
    tol : float
        Mass threshold for 'unvisited' (default 1e-14).

    Returns
    -------
    ndarray, shape (S, A)
        A stochastic policy; the round trip ``occupancy(mdp, policy_from_occupancy(μ))`` returns μ for μ ∈ K.
    """
    mu = as_float_array("mu", mu, ndim=2)
    check_finite("mu", mu, ("s", "a"))
    check_choice("fallback", fallback, ("base", "uniform"))
    if np.any(mu < -1e-10):
        idx = np.unravel_index(int(np.argmin(mu)), mu.shape)
        raise ValueError(f"mu: negative entry {mu[idx]!r} at (s={idx[0]}, a={idx[1]})")
    mu = np.maximum(mu, 0.0)
    S, A = mu.shape
    if fallback == "base":
        if base_policy is None:
            raise ValueError("base_policy: required when fallback='base' (or pass fallback='uniform')")
        fb = as_float_array("base_policy", base_policy)
        check_shape("base_policy", fb, (S, A))
        check_distribution("base_policy", fb, tol=1e-10, axis=1)
    else:
        fb = np.full((S, A), 1.0 / A)
    mass = mu.sum(axis=1)
    visited = mass > tol
    pi = fb.copy()
    pi[visited] = mu[visited] / mass[visited, None]
    return pi


def occupancy_support(mdp: TabularMDP, base_policy: np.ndarray) -> np.ndarray:
    """Structural support of μ_b as a boolean (S, A) mask (spec §1; never thresholds floats).

    A pair (s, a) is in the support iff s is reachable from supp ρ through edges with π_b > 0 and
    P > 0, and π_b(a|s) > 0.
    """
    pi = check_policy("base_policy", base_policy, mdp)
    S, A = mdp.n_states, mdp.n_actions
    T = sp.csr_array(mdp.transition_matrix())
    indptr, indices, data = T.indptr, T.indices, T.data
    reach = np.zeros(S, dtype=bool)
    stack = list(np.flatnonzero(mdp.initial > 0))
    reach[stack] = True
    while stack:
        s = stack.pop()
        for a in range(A):
            if pi[s, a] <= 0:
                continue
            row = s * A + a
            for k in range(indptr[row], indptr[row + 1]):
                t = indices[k]
                if data[k] > 0 and not reach[t]:
                    reach[t] = True
                    stack.append(t)
    return reach[:, None] & (pi > 0)


def occupancy_return(mu: np.ndarray, reward: np.ndarray) -> float:
    """J = ⟨μ, R⟩, the normalized return (1−γ) E[Σ_t γ^t R_t] (spec §0)."""
    mu = as_float_array("mu", mu, ndim=2)
    R = as_float_array("reward", reward)
    check_shape("reward", R, mu.shape)
    check_finite("reward", R, ("s", "a"))
    return float(np.sum(mu * R))


def policy_values(mdp: TabularMDP, policy: np.ndarray, reward: np.ndarray | None = None):
    """Exact (q^π, v^π) by one LU solve of (I − γ P_π) v = r_π (unnormalized values).

    Returns
    -------
    q : ndarray, shape (S, A)
        q(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) v(s').
    v : ndarray, shape (S,)
    """
    pi = check_policy("policy", policy, mdp)
    R = mdp.R if reward is None else _check_reward(mdp, reward)
    v = _solve_policy_system(mdp, pi, np.sum(pi * R, axis=1), transpose=False)
    q = R + mdp.gamma * mdp.expected_next(v)
    return q, v


def advantage(mdp: TabularMDP, policy: np.ndarray, reward: np.ndarray | None = None) -> np.ndarray:
    """A^π(s, a) = q^π(s, a) − v^π(s), shape (S, A) (unnormalized values)."""
    q, v = policy_values(mdp, policy, reward)
    return q - v[:, None]


def performance_difference(
    mdp: TabularMDP, policy: np.ndarray, base_policy: np.ndarray, reward: np.ndarray | None = None
) -> float:
    """J(π, R) − J(π_b, R) = ⟨μ_π, A^{π_b}⟩ (performance-difference lemma; Kakade & Langford 2002, Lemma 6.1).

    With normalized returns the (1−γ)⁻¹ of the lemma cancels against μ's normalization.
    """
    pi = check_policy("policy", policy, mdp)
    return float(np.sum(_occupancy(mdp, pi) * advantage(mdp, base_policy, reward)))


def _check_reward(mdp: TabularMDP, reward, name: str = "reward") -> np.ndarray:
    R = as_float_array(name, reward)
    check_shape(name, R, (mdp.n_states, mdp.n_actions))
    check_finite(name, R, ("s", "a"))
    return R


def _check_pair(mu, mu_b):
    mu = as_float_array("mu", mu)
    mu_b = as_float_array("mu_b", mu_b)
    check_shape("mu_b", mu_b, mu.shape)
    check_nonneg("mu", mu)
    check_nonneg("mu_b", mu_b)
    return mu, mu_b


def _off_support(mu, mu_b, support) -> bool:
    supp = (mu_b > 0) if support is None else np.asarray(support, dtype=bool)
    return bool(np.any((mu > 0) & ~supp))


def chi2_occupancy(mu: np.ndarray, mu_b: np.ndarray, support: np.ndarray | None = None) -> float:
    """χ²(μ‖μ_b) = Σ_supp (μ − μ_b)²/μ_b = Σ μ²/μ_b − 1; +∞ if supp μ ⊄ supp μ_b (spec §0).

    A plain function of two occupancy tables (also usable for bandits, μ = p(x) π(y|x)).
    """
    mu, mu_b = _check_pair(mu, mu_b)
    if _off_support(mu, mu_b, support):
        return float("inf")
    m = mu_b > 0
    return float(np.sum((mu[m] - mu_b[m]) ** 2 / mu_b[m]))


def kl_occupancy(mu: np.ndarray, mu_b: np.ndarray, support: np.ndarray | None = None) -> float:
    """KL(μ‖μ_b) = Σ μ log(μ/μ_b) with 0 log 0 = 0; +∞ if supp μ ⊄ supp μ_b (spec §0)."""
    mu, mu_b = _check_pair(mu, mu_b)
    if _off_support(mu, mu_b, support):
        return float("inf")
    m = mu > 0
    return float(np.sum(mu[m] * (np.log(mu[m]) - np.log(mu_b[m]))))


def l1_occupancy(mu: np.ndarray, mu_b: np.ndarray) -> float:
    """‖μ − μ_b‖₁ (spec §0)."""
    mu, mu_b = _check_pair(mu, mu_b)
    return float(np.sum(np.abs(mu - mu_b)))


def action_kl(mu: np.ndarray, policy: np.ndarray, base_policy: np.ndarray) -> float:
    """KL_AD(π) = E_{s∼d_π} KL(π(·|s)‖π_b(·|s)), d_π(s) = Σ_a μ_π(s, a); no 1/(1−γ) factor (spec §0).

    +∞ if π puts mass where π_b has none at a visited state.
    """
    mu = as_float_array("mu", mu, ndim=2)
    pi = as_float_array("policy", policy)
    pb = as_float_array("base_policy", base_policy)
    check_shape("policy", pi, mu.shape)
    check_shape("base_policy", pb, mu.shape)
    d = mu.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pi > 0, pi * (np.log(pi) - np.log(pb)), 0.0)
    kl_s = terms.sum(axis=1)
    vis = d > 0
    if np.any(np.isinf(kl_s[vis])):
        return float("inf")
    return float(np.sum(d[vis] * kl_s[vis]))
