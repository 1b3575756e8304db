"""Log-space primitives and divergences between finite distributions.

Conventions (``docs/notation.md``):

* C2: ``logsumexp`` is unweighted and always max-shifted; an all-(−inf) slice gives −inf, not NaN.
* C11: 0·ln 0 = 0; a term with π(a) = μ(a) = 0 contributes 0; KL = +inf if π(a) > 0 = μ(a).

Distributions are passed as **log-probabilities** where they can underflow (``log_p``), with −inf for
probability 0.  All reductions run over the last axis.

The Tsallis primitives (``log_q``, ``exp_q``, S_q, D_q, ``tsallis_policy``) are defined below in their own
section (spec ``kl-regularized-dp.md`` §6).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "logsumexp",
    "log_softmax",
    "softmax",
    "kl_divergence",
    "entropy",
    "chi2_divergence",
    "js_divergence",
    "alpha_divergence",
    "f_divergence",
]


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Max-shifted ln Σ_a exp(x_a) along ``axis``.

    Parameters
    ----------
    x : ndarray, shape (..., A)
    axis : int

    Returns
    -------
    ndarray, shape (...)
        −inf where the whole slice is −inf (never NaN); +inf if any entry is +inf.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m_safe), axis=axis, keepdims=True)) + m_safe
    out = np.where(np.isposinf(m), np.inf, out)
    return np.squeeze(out, axis=axis)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """ln sm(x) = x − lse(x) along ``axis`` (an all-(−inf) slice gives an all-(−inf) result)."""
    x = np.asarray(x, dtype=np.float64)
    L = np.expand_dims(logsumexp(x, axis=axis), axis)
    with np.errstate(invalid="ignore"):
        out = x - L
    return np.where(np.isneginf(x), -np.inf, out)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """sm(x) = exp(x − lse(x)) along ``axis``."""
    return np.exp(log_softmax(x, axis=axis))


def _xlogy_terms(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        t = p * (log_p - log_q)
    t = np.where(np.isneginf(log_p), 0.0, t)  # 0·ln 0 = 0 (C11)
    return np.where(np.isneginf(log_q) & ~np.isneginf(log_p), np.inf, t)


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray, axis: int = -1) -> np.ndarray:
    """KL(p‖q) = Σ p (ln p − ln q) from log-probabilities, with convention C11.

    Parameters
    ----------
    log_p, log_q : ndarray, shape (..., A)
        Log-probabilities (−inf = 0).

    Returns
    -------
    ndarray, shape (...)
        +inf where p puts mass outside supp q.
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    if log_p.shape != log_q.shape:
        raise ValueError(f"kl_divergence: shape mismatch log_p {log_p.shape} vs log_q {log_q.shape}")
    return np.sum(_xlogy_terms(log_p, log_q), axis=axis)


def entropy(log_p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy H(p) = −Σ p ln p from log-probabilities (0·ln 0 = 0)."""
    log_p = np.asarray(log_p, dtype=np.float64)
    return -np.sum(np.where(np.isneginf(log_p), 0.0, np.exp(log_p) * np.where(np.isneginf(log_p), 0.0, log_p)),
                   axis=axis)


def chi2_divergence(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson χ²(p‖q) = Σ (p − q)²/q (probabilities; terms with p = q = 0 are 0, p > 0 = q gives +inf)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(q > 0, (p - q) ** 2 / np.where(q > 0, q, 1.0), np.where(p > 0, np.inf, 0.0))
    return np.sum(t, axis=axis)


def js_divergence(log_p: np.ndarray, log_q: np.ndarray, beta: float = 0.5, axis: int = -1) -> np.ndarray:
    """Generalized Jensen-Shannon JSD_β(p‖q) = β KL(p‖m) + (1−β) KL(q‖m), m = βp + (1−β)q, β ∈ (0, 1)."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta: must lie in (0, 1), got {beta!r}")
    log_p = np.asarray(log_p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    log_m = np.logaddexp(np.log(beta) + log_p, np.log1p(-beta) + log_q)
    return beta * kl_divergence(log_p, log_m, axis) + (1 - beta) * kl_divergence(log_q, log_m, axis)


def alpha_divergence(log_p: np.ndarray, log_q: np.ndarray, alpha: float, axis: int = -1) -> np.ndarray:
    """Amari α-divergence D_α(p‖q) = (1 − Σ p^α q^{1−α}) / (α(1−α)); α → 1 gives KL(p‖q), α → 0 KL(q‖p)."""
    if alpha in (0.0, 1.0):
        return kl_divergence(log_p, log_q, axis) if alpha == 1.0 else kl_divergence(log_q, log_p, axis)
    log_p = np.asarray(log_p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    s = np.exp(logsumexp(alpha * log_p + (1 - alpha) * log_q, axis=axis))
    return (1.0 - s) / (alpha * (1.0 - alpha))


def f_divergence(p: np.ndarray, q: np.ndarray, f, axis: int = -1) -> np.ndarray:
    """Generic D_f(p‖q) = Σ_a q(a) f(p(a)/q(a)) over the support of q (probabilities; f convex, f(1) = 0)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(q > 0, q * f(np.where(q > 0, p / np.where(q > 0, q, 1.0), 1.0)), 0.0)
    return np.sum(t, axis=axis)


# --- Tsallis section (spec §6) ------------------------------------------------------------------
