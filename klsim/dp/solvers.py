"""Exact solvers: value / policy / modified policy iteration and fixed-regularizer (soft) VI (spec §7, §9).

Stopping rules follow QuantEcon's ``DiscreteDP`` (spec §9), so ``kl_coef = entropy_coef = 0`` agrees with
it within ε/2 (VI, MPI) and exactly (PI).
"""

from __future__ import annotations

import numpy as np

from klsim._validation import check_int, check_positive
from klsim.dp._core import (
    backup,
    check_coefs,
    check_log_policy,
    check_mdp,
    greedy_rows,
    sweep,
    uniform_log_policy,
)
from klsim.dp.evaluation import policy_evaluation
from klsim.mdp import TabularMDP
from klsim.results import SolveResult

__all__ = [
    "value_iteration",
    "policy_iteration",
    "modified_policy_iteration",
    "optimal_q",
    "soft_value_iteration",
    "hard_log_policy",
    "PI_SWITCH_RTOL",
]

PI_SWITCH_RTOL = 1e-12
"""Policy iteration switches action only on an improvement > 1e-12·max(1, ‖q‖∞) (spec §9, pitfall 12)."""

_ROUNDING_FLOOR = 8.0 * np.finfo(np.float64).eps
"""Soft VI also stops once ‖Tq − q‖∞ ≤ 8 eps · max(1, ‖Tq‖∞) (the rounding floor)."""


def hard_log_policy(actions: np.ndarray, n_actions: int) -> np.ndarray:
    """Deterministic policy as log-probabilities: 0 at ``actions[s]``, −inf elsewhere; shape (S, A)."""
    actions = np.asarray(actions, dtype=np.int64)
    out = np.full((actions.shape[0], n_actions), -np.inf)
    out[np.arange(actions.shape[0]), actions] = 0.0
    return out


def _greedy(q: np.ndarray) -> np.ndarray:
    """First maximizer per row (C7)."""
    return np.argmax(q, axis=1)


def _vi_threshold(tol: float, gamma: float) -> float:
    return np.inf if gamma == 0.0 else tol * (1.0 - gamma) / (2.0 * gamma)


def value_iteration(mdp: TabularMDP, *, tol: float = 1e-8, max_iter: int = 10_000) -> SolveResult:
    r"""Value iteration v ← max_a (r + γPv) with QuantEcon's stopping rule (spec §9; Puterman 1994 §6.3).

    Starts from v_0 = max_a r(·, a) (as ``DiscreteDP.value_iteration``) and stops at the first n with
    ‖Tv_n − v_n‖∞ < ε(1−γ)/(2γ); returns Tv_n (within ε/2 of v*) and its greedy policy.  γ = 0 takes one step.

    Parameters
    ----------
    mdp : TabularMDP
    tol : float
        ε > 0.
    max_iter : int
        Hard cap on the number of Bellman updates (honored exactly).

    Returns
    -------
    SolveResult
        ``v`` = Tv_n (S,), ``q`` = r + γP v (S, A), ``log_policy`` = hard greedy of ``q`` (ties to the lowest
        index), ``residual`` = ‖Tv_n − v_n‖∞; ``history["bellman_residual"]`` per update.
    """
    check_mdp(mdp)
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter, 1)
    S, A = mdp.n_states, mdp.n_actions
    thr = _vi_threshold(tol, mdp.gamma)
    v = mdp.R.max(axis=1)
    q = np.empty((S, A))
    res_hist = []
    converged = False
    for _ in range(max_iter):
        backup(mdp, v, q)
        tv = q.max(axis=1)
        res = float(np.max(np.abs(tv - v)))
        res_hist.append(res)
        v = tv
        if res < thr:
            converged = True
            break
    backup(mdp, v, q)
    return SolveResult(
        q=q.copy(),
        v=v,
        log_policy=hard_log_policy(_greedy(q), A),
        converged=converged,
        num_iter=len(res_hist),
        residual=res_hist[-1],
        history={"bellman_residual": np.asarray(res_hist)},
        algorithm="value_iteration",
        params={"tol": tol, "max_iter": max_iter},
    )


def _sigma_system(mdp: TabularMDP, sigma: np.ndarray):
    """(r_σ, P_σ) of a deterministic policy: r_σ (S,), P_σ dense (S, S) or CSR (S, S)."""
    S, A = mdp.n_states, mdp.n_actions
    rows = np.arange(S) * A + sigma
    r_sigma = mdp.R.reshape(-1)[rows]
    return r_sigma, mdp.transition_matrix()[rows]


def modified_policy_iteration(
    mdp: TabularMDP, *, eval_steps: int = 20, tol: float = 1e-8, max_iter: int = 10_000
) -> SolveResult:
    r"""Modified policy iteration with QuantEcon's span stopping rule (spec §9; Puterman 1994 §6.5).

    From v_0 = min r/(1−γ): u = Tv, σ = greedy; stop when span(u − v) < ε(1−γ)/γ and return
    v ← u + midrange(u − v)·γ/(1−γ); otherwise apply T_σ ``eval_steps`` times to u and set v ← u.

    Parameters
    ----------
    mdp : TabularMDP
    eval_steps : int
        m ≥ 0, partial-evaluation sweeps per iteration (QuantEcon's ``k``).
    tol : float
        ε > 0.
    max_iter : int
        Maximum number of improvement steps.

    Returns
    -------
    SolveResult
        ``v`` (S,), ``q`` = r + γPv, ``log_policy`` = the last greedy σ (hard), ``residual`` = the last span,
        ``history["span"]``.
    """
    check_mdp(mdp)
    m = check_int("eval_steps", eval_steps, 0)
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter, 1)
    S, A = mdp.n_states, mdp.n_actions
    gamma = mdp.gamma
    thr = np.inf if gamma == 0.0 else tol * (1.0 - gamma) / gamma
    v = np.full(S, mdp.R.min() / (1.0 - gamma))
    q = np.empty((S, A))
    spans = []
    converged = False
    sigma = np.zeros(S, dtype=np.int64)
    for _ in range(max_iter):
        backup(mdp, v, q)
        sigma = _greedy(q)
        u = q[np.arange(S), sigma]
        diff = u - v
        span = float(diff.max() - diff.min())
        spans.append(span)
        if span < thr:
            v = u + 0.5 * (diff.min() + diff.max()) * gamma / (1.0 - gamma)
            converged = True
            break
        r_sigma, P_sigma = _sigma_system(mdp, sigma)
        for _ in range(m):
            u = r_sigma + gamma * (P_sigma @ u)
        v = u
    backup(mdp, v, q)
    return SolveResult(
        q=q.copy(),
        v=v,
        log_policy=hard_log_policy(sigma, A),
        converged=converged,
        num_iter=len(spans),
        residual=spans[-1],
        history={"span": np.asarray(spans)},
        algorithm="modified_policy_iteration",
        params={"eval_steps": m, "tol": tol, "max_iter": max_iter},
    )


def policy_iteration(mdp: TabularMDP, *, max_iter: int = 1_000) -> SolveResult:
    r"""Howard's policy iteration with exact evaluation and strict-improvement switching (spec §9).

    σ_0 is greedy for v_0 = max_a r (as QuantEcon).  Each step evaluates σ exactly
    (:func:`~klsim.dp.policy_evaluation`) and switches state s to its first maximizer only if that improves
    q^σ(s, ·) by more than 1e-12·max(1, ‖q^σ‖∞), so ties never cycle (pitfall 12).

    Returns
    -------
    SolveResult
        ``q`` = q^σ and ``v`` = v^σ (exact) of the final σ, ``log_policy`` hard, ``converged`` when no state
        switched, ``history["n_switched"]`` per iteration.
    """
    check_mdp(mdp)
    max_iter = check_int("max_iter", max_iter, 1)
    S, A = mdp.n_states, mdp.n_actions
    q0 = backup(mdp, mdp.R.max(axis=1), np.empty((S, A)))
    sigma = _greedy(q0)
    switched = []
    converged = False
    q = v = None
    for _ in range(max_iter):
        q, v = policy_evaluation(mdp, hard_log_policy(sigma, A))
        best = _greedy(q)
        thr = PI_SWITCH_RTOL * max(1.0, float(np.max(np.abs(q))))
        idx = np.arange(S)
        improve = q[idx, best] > q[idx, sigma] + thr
        switched.append(int(improve.sum()))
        if not improve.any():
            converged = True
            break
        sigma = np.where(improve, best, sigma)
    return SolveResult(
        q=q,
        v=v,
        log_policy=hard_log_policy(sigma, A),
        converged=converged,
        num_iter=len(switched),
        residual=float(np.max(np.abs(q.max(axis=1) - v))),
        history={"n_switched": np.asarray(switched)},
        algorithm="policy_iteration",
        params={"max_iter": max_iter},
    )


def optimal_q(mdp: TabularMDP) -> tuple[np.ndarray, np.ndarray]:
    """(q*, v*) of the unregularized MDP: policy iteration followed by exact evaluation (spec §9).

    Returns
    -------
    q_star : ndarray, shape (S, A)
    v_star : ndarray, shape (S,)
    """
    res = policy_iteration(mdp)
    if not res.converged:
        raise RuntimeError("optimal_q: policy iteration did not converge within max_iter")
    return res.q, res.v


def soft_value_iteration(
    mdp: TabularMDP,
    *,
    entropy_coef: float = 0.0,
    kl_coef: float = 0.0,
    log_ref: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 100_000,
) -> SolveResult:
    r"""VI with a fixed regularizer: q ← r + γP[(λ+τ) lse(β ln μ + q/(λ+τ))] (spec §2, §7, §9).

    Covers entropy-regularized VI (λ = 0: the fixed point is q*_τ, [GSP]) and KL toward a FIXED reference
    μ = exp(``log_ref``) (τ = 0: demonstration-regularized RL, [DRRL]; π*_λ = sm(ln μ + q/λ)).
    λ = τ = 0 is exact hard q-value iteration.  The operator is a monotone γ-contraction, so QuantEcon's
    rule applies: stop at the first n with ‖Tq_n − q_n‖∞ < ε(1−γ)/(2γ) and return Tq_n.

    Parameters
    ----------
    mdp : TabularMDP
    entropy_coef, kl_coef : float
        τ ≥ 0, λ ≥ 0.
    log_ref : ndarray, shape (S, A), optional
        log μ, required when λ > 0 (−inf entries are hard constraints).
    tol : float
        ε > 0.
    max_iter : int
        Maximum number of sweeps (honored exactly).

    Returns
    -------
    SolveResult
        ``q`` = Tq_n, ``log_policy`` = G^{λ,τ}_μ(q), ``v`` = (λ+τ) lse(β ln μ + q/(λ+τ)) (the regularized
        value), ``residual`` = ‖Tq_n − q_n‖∞, ``history["bellman_residual"]``.

    Notes
    -----
    Starts from q_0 = r.  Besides ε(1−γ)/(2γ) the loop also stops at the rounding floor
    ‖Tq − q‖∞ ≤ 8·eps·max(1, ‖Tq‖∞), below which float64 iterates only oscillate (``converged`` is True then).
    """
    check_mdp(mdp)
    lam, tau = check_coefs(kl_coef, entropy_coef)
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter, 1)
    S, A = mdp.n_states, mdp.n_actions
    if lam > 0.0:
        if log_ref is None:
            raise ValueError("log_ref: required when kl_coef > 0")
        log_mu = check_log_policy("log_ref", log_ref, (S, A))
    else:
        log_mu = uniform_log_policy(S, A)  # not read (β = 0)
    thr = _vi_threshold(tol, mdp.gamma)
    q = np.array(mdp.R, dtype=np.float64)
    q_next = np.empty((S, A))
    log_pi = np.empty((S, A))
    v = np.empty(S)
    res_hist = []
    converged = False
    for _ in range(max_iter):
        sweep(mdp, q, log_mu, lam, tau, log_pi, v, q_next)
        res = float(np.max(np.abs(q_next - q)))
        res_hist.append(res)
        q, q_next = q_next, q
        if res < thr or res <= _ROUNDING_FLOOR * max(1.0, float(np.max(np.abs(q)))):
            converged = True
            break
    greedy_rows(q, log_mu, lam, tau, log_pi, v)
    return SolveResult(
        q=q.copy(),
        v=v.copy(),
        log_policy=log_pi.copy(),
        converged=converged,
        num_iter=len(res_hist),
        residual=res_hist[-1],
        history={"bellman_residual": np.asarray(res_hist)},
        algorithm="soft_value_iteration",
        params={"entropy_coef": tau, "kl_coef": lam, "tol": tol, "max_iter": max_iter},
    )
