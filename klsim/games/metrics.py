"""Exploitability, duality gap, span and the other diagnostics of a β-regularized preference game.

Spec nash-preference-games §1.  For a batch of games, exploitability, gap and KL are ρ-averaged over
contexts and span is the maximum over contexts (pass ``per_context=True`` for the per-context values).
All formulas are evaluated in log space.
"""

from __future__ import annotations

import numpy as np

from klsim._kernels.games import game_metrics
from klsim._validation import check_positive
from klsim.divergences import logsumexp
from klsim.games.game import PreferenceGame, pref_matvec

__all__ = [
    "preference_against",
    "best_response_logits",
    "phi",
    "exploitability",
    "duality_gap",
    "unregularized_exploitability",
    "span",
    "kl_stable",
    "win_probability",
    "regularized_value",
]


def _log_batch(game: PreferenceGame, log_policy, name: str = "log_policy") -> np.ndarray:
    x = np.asarray(log_policy, dtype=np.float64)
    if x.shape != game.log_ref.shape:
        raise ValueError(f"{name}: expected shape {game.log_ref.shape}, got {x.shape}")
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError(f"{name}: NaN or +inf entry")
    return np.ascontiguousarray(x if game.is_batched else x[None])


def _reduce(game: PreferenceGame, per_ctx: np.ndarray, per_context: bool, how: str = "mean"):
    if per_context:
        return game.unbatch(per_ctx) if game.is_batched else float(per_ctx[0])
    if how == "max":
        return float(np.max(per_ctx))
    return float(np.dot(game.weights, per_ctx))


def preference_against(game: PreferenceGame, log_opponent) -> np.ndarray:
    """One preference query: y ↦ P(y ≻ π_opp) = (P π_opp)_y, shape (n,) or (C, n)."""
    lo = _log_batch(game, log_opponent, "log_opponent")
    out = np.empty_like(lo)
    pref_matvec(game.P3, np.exp(lo), out)
    return game.unbatch(out)


def best_response_logits(game: PreferenceGame, log_opponent, beta: float) -> np.ndarray:
    """b(π') = θ_ref + P π'/β (unnormalized best-response logits; spec §1)."""
    beta = check_positive("beta", beta)
    return game.log_ref + preference_against(game, log_opponent) / beta


def phi(game: PreferenceGame, log_policy, beta: float, *, per_context: bool = False):
    """φ(π) = β·logsumexp(θ_ref + P π/β) (the convex potential of spec §1; ∇φ(π) = Pᵀ π_br)."""
    beta = check_positive("beta", beta)
    b = best_response_logits(game, log_policy, beta)
    return _reduce(
        game, np.atleast_1d(beta * logsumexp(b if game.is_batched else b[None], axis=-1)), per_context
    )


def kl_stable(log_p, log_q) -> np.ndarray:
    """KL(p‖q) = Σ p·(expm1(δ) − δ), δ = log q − log p, over the last axis.

    Every term is ≥ 0 and the sum keeps full relative accuracy when p ≈ q (the usual Σ p·(log p − log q)
    loses it below ~1e-16·|log p|).  0·ln 0 = 0; +inf where p > 0 = q.
    """
    lp = np.asarray(log_p, dtype=np.float64)
    lq = np.asarray(log_q, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        d = lq - lp
        terms = np.where(np.isneginf(lp), 0.0, np.exp(lp) * (np.expm1(d) - d))
    terms = np.where(np.isneginf(lq) & ~np.isneginf(lp), np.inf, terms)
    return terms.sum(axis=-1)


def exploitability(game: PreferenceGame, log_policy, beta: float, *, per_context: bool = False):
    """β-exploitability Expl(π) = max_{π'} P_β(π' ≻ π) − ½ = φ(π) + βKL(π‖π_ref) − ½ ≥ 0.

    Evaluated as the Jensen gap β·log E_π[e^{u − E_π u}] with u = θ_ref + Aπ/β − log π (it uses πᵀAπ = 0),
    which is ≥ 0 up to rounding and exact near π*.

    Parameters
    ----------
    game : PreferenceGame
    log_policy : ndarray, shape (n,) or (C, n)
    beta : float > 0
    per_context : bool
        Return the per-context values instead of the ρ-average.

    Notes
    -----
    Spec §1 (Munos et al. 2024; Tiapkin et al. 2025, §2).
    """
    beta = check_positive("beta", beta)
    lp = _log_batch(game, log_policy)
    g = np.empty_like(lp)
    pref_matvec(game.P3, np.exp(lp), g)
    C = lp.shape[0]
    kl, ex, sp, spr = np.empty(C), np.empty(C), np.empty(C), np.empty(C)
    game_metrics(lp, lp, game.log_ref2, g, beta, kl, ex, sp, spr)
    return _reduce(game, ex, per_context)


def duality_gap(game: PreferenceGame, log_policy, beta: float, *, per_context: bool = False):
    """max_{π'} P_β(π' ≻ π) − min_{π'} P_β(π ≻ π') (= 2·Expl), evaluated directly from P and Pᵀ.

    = β·lse(θ_ref + Pπ/β) + β·lse(θ_ref − Pᵀπ/β) + 2βKL(π‖π_ref); both best responses in closed form.
    """
    beta = check_positive("beta", beta)
    lp = _log_batch(game, log_policy)
    pi = np.exp(lp)
    P = game.P3
    Ppi = np.einsum("cij,cj->ci", P, pi)
    PTpi = np.einsum("cji,cj->ci", P, pi)
    ref = game.log_ref2
    kl = kl_stable(lp, ref)
    gap = (
        beta * logsumexp(ref + Ppi / beta, axis=-1)
        + beta * logsumexp(ref - PTpi / beta, axis=-1)
        + 2 * beta * kl
    )
    return _reduce(game, np.atleast_1d(gap), per_context)


def unregularized_exploitability(game: PreferenceGame, log_policy, *, per_context: bool = False):
    """Expl₀(π) = max_y (Pπ)_y − ½ (β = 0; spec §1)."""
    lp = _log_batch(game, log_policy)
    g = np.empty_like(lp)
    pref_matvec(game.P3, np.exp(lp), g)
    return _reduce(game, g.max(axis=1) - 0.5, per_context)


def span(x, *, axis: int = -1):
    """Span semi-norm ‖f‖_span = max f − min f over ``axis``; the maximum over any leading (context) axes.

    Use ``span(log_pi - log_opt)`` for the error metric of spec §1.
    """
    x = np.asarray(x, dtype=np.float64)
    s = np.max(x, axis=axis) - np.min(x, axis=axis)
    return float(np.max(s))


def win_probability(game: PreferenceGame, log_p, log_q, *, per_context: bool = False):
    """P(π ≻ π') = πᵀ P π' (ρ-averaged over contexts)."""
    lp = _log_batch(game, log_p, "log_p")
    lq = _log_batch(game, log_q, "log_q")
    g = np.empty_like(lq)
    pref_matvec(game.P3, np.exp(lq), g)
    return _reduce(game, np.einsum("ci,ci->c", np.exp(lp), g), per_context)


def regularized_value(game: PreferenceGame, log_p, log_q, beta: float, *, per_context: bool = False):
    """P_β(π ≻ π') = πᵀPπ' − βKL(π‖π_ref) + βKL(π'‖π_ref) (spec §1)."""
    beta = check_positive("beta", beta)
    wp = win_probability(game, log_p, log_q, per_context=True)
    ref = game.log_ref
    v = np.asarray(wp) - beta * kl_stable(log_p, ref) + beta * kl_stable(log_q, ref)
    return _reduce(game, np.atleast_1d(v), per_context)
