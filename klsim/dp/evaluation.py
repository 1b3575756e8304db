"""The regularized greedy step and exact (regularized) policy evaluation (spec ``kl-regularized-dp.md`` §2, §9)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from klsim._validation import as_float_array
from klsim.dp._core import (
    backup,
    check_coefs,
    check_log_policy,
    check_mdp,
    greedy_rows,
    policy_transition,
    policy_value,
)
from klsim.mdp import TabularMDP

__all__ = ["regularized_greedy", "policy_evaluation", "EVAL_RESIDUAL_RTOL"]

EVAL_RESIDUAL_RTOL = 1e-12
"""Exact evaluation warns when ‖(I − γP^π)v − b‖∞ > 1e-12 (‖b‖∞ + ‖v‖∞) (spec §9)."""


def regularized_greedy(
    q: np.ndarray, log_mu: np.ndarray | None, *, kl_coef: float, entropy_coef: float
) -> tuple[np.ndarray, np.ndarray]:
    r"""Regularized greedy step G^{λ,τ}_μ(q) in log space, and its value.

    For λ + τ > 0 (spec §2, [LtA] eq. (2); [GSP] §3)::

        G^{λ,τ}_μ(q) = argmax_π ⟨π,q⟩ − λ KL(π‖μ) + τ H(π) = sm(β ln μ + q/(λ+τ)),   β = λ/(λ+τ)
        v = max_π [...] = (λ+τ) lse(β ln μ + q/(λ+τ))

    For λ = τ = 0 it is the exact hard greedy step: probability 1 on the first maximizer (ties to the
    lowest index, convention C7) and v = max_a q.

    Parameters
    ----------
    q : ndarray, shape (S, A) or (A,)
        Action values.
    log_mu : ndarray, shape like ``q``, or None
        Log-probabilities of the KL anchor μ (−inf = probability 0, a hard constraint).  Not read, and
        may be None, when ``kl_coef == 0``.
    kl_coef, entropy_coef : float
        λ ≥ 0 and τ ≥ 0.

    Returns
    -------
    log_pi : ndarray, shape like ``q``
        log G^{λ,τ}_μ(q).
    v : ndarray, shape (S,) (or a 0-d array for 1-d input)
        The maximized bracket ⟨π,q⟩ − λKL(π‖μ) + τH(π).

    Notes
    -----
    Computed as z = β log μ + q/(λ+τ), L = lse(z), log π = z − L, v = (λ+τ)L: no log of a probability
    is ever taken, so π(a) may underflow without NaN.  The β·log μ term is dropped when β = 0.

    Examples
    --------
    >>> import numpy as np
    >>> log_pi, v = regularized_greedy(np.array([[1.0, 0.0]]), None, kl_coef=0.0, entropy_coef=1.0)
    >>> np.round(np.exp(log_pi), 4).tolist(), round(float(v[0]), 6)
    ([[0.7311, 0.2689]], 1.313262)
    """
    lam, tau = check_coefs(kl_coef, entropy_coef)
    qa = as_float_array("q", q)
    one_d = qa.ndim == 1
    q2 = np.atleast_2d(qa)
    if q2.ndim != 2:
        raise ValueError(f"q: expected shape (S, A) or (A,), got {qa.shape}")
    if np.isnan(q2).any() or np.isposinf(q2).any():
        s, a = np.unravel_index(int(np.flatnonzero((np.isnan(q2) | np.isposinf(q2)).ravel())[0]), q2.shape)
        raise ValueError(f"q: NaN or +inf at (s={s}, a={a})")
    if lam > 0.0:
        if log_mu is None:
            raise ValueError("log_mu: required when kl_coef > 0")
        mu2 = check_log_policy("log_mu", np.atleast_2d(as_float_array("log_mu", log_mu)), q2.shape)
    else:
        mu2 = q2  # never read
    log_pi = np.empty_like(q2)
    v = np.empty(q2.shape[0])
    greedy_rows(q2, mu2, lam, tau, log_pi, v)
    if one_d:
        return log_pi[0], np.asarray(v[0])
    return log_pi, v


def policy_evaluation(
    mdp: TabularMDP,
    log_policy: np.ndarray,
    *,
    entropy_coef: float = 0.0,
    kl_coef: float = 0.0,
    log_ref: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact (regularized) policy evaluation by one S×S linear solve (spec §9).

    Solves::

        (I − γ P^π) v = ⟨π, r⟩ + τ H(π) − λ KL(π‖μ),      q = r + γ P v

    with P^π[s, s'] = Σ_a π(a|s) P(s'|s, a), μ = exp(``log_ref``).  λ = τ = 0 gives q^π.

    Parameters
    ----------
    mdp : TabularMDP
        Dense layout: ``numpy.linalg.solve`` (LU).  Sparse layout: ``scipy.sparse.linalg.spsolve``.
    log_policy : ndarray, shape (S, A)
        log π (−inf = probability 0); rows must be normalized within 1e-10.
    entropy_coef, kl_coef : float
        τ ≥ 0 and λ ≥ 0.
    log_ref : ndarray, shape (S, A), optional
        log μ; required when ``kl_coef > 0``.

    Returns
    -------
    q : ndarray, shape (S, A)
    v : ndarray, shape (S,)

    Raises
    ------
    ValueError
        Bad shapes or non-normalized policies; KL(π‖μ) = +inf at some state (π puts mass where μ has none).

    Warns
    -----
    RuntimeWarning
        When the residual ‖(I − γP^π)v − b‖∞ exceeds 1e-12 (‖b‖∞ + ‖v‖∞).

    Notes
    -----
    κ∞(I − γP^π) ≤ (1+γ)/(1−γ), so the solve is accurate to about κ∞·2⁻⁵³·‖v‖∞ (≲ 1e-13 relative for
    γ ≤ 0.99).  C11: actions with π(a|s) = 0 contribute nothing.

    Examples
    --------
    >>> import numpy as np
    >>> from klsim.mdp import puterman_two_state
    >>> mdp = puterman_two_state()
    >>> q, v = policy_evaluation(mdp, np.log(np.array([[1.0, 0.0], [1.0, 0.0]])))
    >>> np.round(v, 6).tolist()
    [-8.571429, -20.0]
    """
    check_mdp(mdp)
    lam, tau = check_coefs(kl_coef, entropy_coef)
    S, A = mdp.n_states, mdp.n_actions
    log_pi = check_log_policy("log_policy", log_policy, (S, A))
    log_mu = None
    if lam > 0.0:
        if log_ref is None:
            raise ValueError("log_ref: required when kl_coef > 0")
        log_mu = check_log_policy("log_ref", log_ref, (S, A))
    b = policy_value(log_pi, mdp.R, log_mu, lam, tau)
    if np.isneginf(b).any():
        s = int(np.flatnonzero(np.isneginf(b))[0])
        raise ValueError(f"log_policy: KL(π‖π_ref) = +inf at state s={s} (π puts mass where log_ref is -inf)")
    v = solve_policy_system(mdp, np.exp(log_pi), b)
    q = backup(mdp, v, np.empty((S, A)))
    return q, v


def solve_policy_system(mdp: TabularMDP, policy: np.ndarray, b: np.ndarray) -> np.ndarray:
    """v = (I − γ P^π)⁻¹ b with a residual check (dense LU or sparse LU)."""
    S = mdp.n_states
    Ppi = policy_transition(mdp, policy)
    if sp.issparse(Ppi):
        M = (sp.identity(S, format="csc") - mdp.gamma * Ppi).tocsc()
        v = np.asarray(spla.spsolve(M, b), dtype=np.float64).reshape(S)
    else:
        M = np.eye(S) - mdp.gamma * Ppi
        v = np.linalg.solve(M, b)
    res = float(np.max(np.abs(M @ v - b))) if S else 0.0
    scale = float(np.max(np.abs(b)) + np.max(np.abs(v))) if S else 0.0
    if not np.isfinite(res) or res > EVAL_RESIDUAL_RTOL * scale:
        warnings.warn(
            f"policy_evaluation: residual {res:.3g} exceeds 1e-12·(‖b‖∞ + ‖v‖∞) = {EVAL_RESIDUAL_RTOL * scale:.3g}",
            RuntimeWarning,
            stacklevel=3,
        )
    return v
