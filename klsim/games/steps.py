"""Plain per-step targets of the preference-game algorithms, on raw arrays (spec §2).

These are the exact klsim forms that the LLM objectives (``klsim_llm``) are checked against: each takes
log-policies of shape (n,) or (C, n), a preference matrix (n, n) or (C, n, n) or an already evaluated
preference vector ``pref`` = P π_opp, and returns normalized log-policies.  Units: c = η/(1 + η)
(Nash-MP units; MMD η = η_m·β, INPO c = η_I·β, EGPO c = 4·lr/n, one natural-PG step c = lr).
"""

from __future__ import annotations

import numpy as np

from klsim.divergences import log_softmax

__all__ = [
    "query",
    "prox_step",
    "mirror_descent_step",
    "nash_mp_step",
    "nash_md_step",
    "geometric_mixture",
    "mwu_step",
    "egpo_loss",
    "egpo_grad",
    "egpo_sgd_step",
    "prox_objective_grad",
]


def query(preferences: np.ndarray, log_opponent: np.ndarray) -> np.ndarray:
    """P π_opp (one preference query), shapes (n, n)·(n,) or (C, n, n)·(C, n)."""
    P = np.asarray(preferences, dtype=np.float64)
    pi = np.exp(np.asarray(log_opponent, dtype=np.float64))
    return np.matmul(P, pi[..., None])[..., 0]


def prox_step(log_center, log_ref, pref, beta: float, eta: float) -> np.ndarray:
    """argmax_π (1/β)⟨π, pref⟩ − KL(π‖π_ref) − (1/η)KL(π‖π_center).

    = normalize((1 − c)·θ_center + c·(θ_ref + pref/β)), c = η/(1 + η): the geometric mixture
    π_center^{1/(1+η)} π_ref^{η/(1+η)} exp(η·pref/(β(1+η))) (Tiapkin et al. 2025, eq. (7); spec §2).
    With pref = Pπ_center it is the magnetic-mirror-descent step (Sokota et al. 2023), INPO's target
    (Zhang et al. 2025) and the exact online-IPO step.
    """
    c = eta / (1.0 + eta)
    return log_softmax(
        (1.0 - c) * np.asarray(log_center) + c * (np.asarray(log_ref) + np.asarray(pref) / beta)
    )


def mirror_descent_step(preferences, log_pi, log_ref, beta: float, eta: float) -> np.ndarray:
    """One MMD / INPO / online-IPO step: :func:`prox_step` centred at π with opponent π (1 query)."""
    return prox_step(log_pi, log_ref, query(preferences, log_pi), beta, eta)


def nash_mp_step(preferences, log_pi, log_ref, beta: float, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """One Nash mirror-prox iteration (2 queries); both prox steps are centred at π_k.

    π_{k+½} = prox(π_k; opponent π_k), π_{k+1} = prox(π_k; opponent π_{k+½}) (Tiapkin et al. 2025,
    Algorithm 1).  Returns (log π_{k+½}, log π_{k+1}).
    """
    half = prox_step(log_pi, log_ref, query(preferences, log_pi), beta, eta)
    nxt = prox_step(log_pi, log_ref, query(preferences, half), beta, eta)
    return half, nxt


def geometric_mixture(log_pi, log_ref, weight: float) -> np.ndarray:
    """normalize((1 − w)·log π + w·log π_ref): the Nash-MD mixture π^{1−w} π_ref^{w} (w = η_t β)."""
    return log_softmax((1.0 - weight) * np.asarray(log_pi) + weight * np.asarray(log_ref))


def nash_md_step(preferences, log_pi, log_ref, beta: float, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """One Nash-MD step (Munos et al. 2024, eq. (10)); requires 0 < ηβ ≤ 1.

    θ^μ = normalize((1 − ηβ)θ + ηβ θ_ref); θ_next = normalize(θ^μ + η P π^μ).  Returns (log π^μ, log π_next).
    """
    if not (0.0 < eta * beta <= 1.0):
        raise ValueError(f"eta: need 0 < eta*beta <= 1, got eta*beta={eta * beta!r}")
    mix = geometric_mixture(log_pi, log_ref, eta * beta)
    return mix, log_softmax(mix + eta * query(preferences, mix))


def mwu_step(log_pi, pref, eta: float) -> np.ndarray:
    """Multiplicative weights / SPPO step normalize(θ + η·pref) (β = 0; Wu et al. 2024)."""
    return log_softmax(np.asarray(log_pi) + eta * np.asarray(pref))


def egpo_loss(theta, log_ref, pref, beta: float) -> np.ndarray:
    """Tabular EGPO loss L(θ; π_opp) = n⁻² Σ_{y,y'} (u_y − u_y')², u = θ − θ_ref − pref/β (raw logits)."""
    u = np.asarray(theta) - np.asarray(log_ref) - np.asarray(pref) / beta
    n = u.shape[-1]
    d = u[..., :, None] - u[..., None, :]
    return (d * d).sum(axis=(-1, -2)) / n**2


def egpo_grad(theta, log_ref, pref, beta: float) -> np.ndarray:
    """∇_θ of :func:`egpo_loss`: (4/n)(u − ū) (Zhou, Fazel & Du 2025, tabular case; spec §2)."""
    u = np.asarray(theta) - np.asarray(log_ref) - np.asarray(pref) / beta
    return (4.0 / u.shape[-1]) * (u - u.mean(axis=-1, keepdims=True))


def egpo_sgd_step(theta, log_ref, pref, beta: float, lr: float) -> np.ndarray:
    """One plain SGD step θ − lr·∇L on raw logits; equals :func:`prox_step` with c = 4·lr/n up to gauge."""
    return np.asarray(theta) - lr * egpo_grad(theta, log_ref, pref, beta)


def prox_objective_grad(
    theta, log_ref, log_center, pref, beta: float, eta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of J(θ) = −(1/β)⟨π_θ, pref⟩ + KL(π_θ‖π_ref) + (1/η)KL(π_θ‖π_center) w.r.t. logits θ.

    Returns (vanilla, natural): π⊙(g − ⟨π, g⟩) and g − ⟨π, g⟩ with
    g = −pref/β + (log π_θ − θ_ref) + (log π_θ − log π_center)/η (spec §2, approximate variants).
    """
    lp = log_softmax(np.asarray(theta))
    pi = np.exp(lp)
    g = -np.asarray(pref) / beta + (lp - np.asarray(log_ref)) + (lp - np.asarray(log_center)) / eta
    nat = g - (pi * g).sum(axis=-1, keepdims=True)
    return pi * nat, nat
