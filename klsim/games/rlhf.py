"""Reward-based RLHF on a preference game: a Bradley-Terry fit and its KL-regularized optimum (spec §4.4)."""

from __future__ import annotations

import numpy as np

from klsim._validation import as_float_array, check_int, check_positive
from klsim.divergences import log_softmax
from klsim.games.game import PreferenceGame

__all__ = ["bradley_terry_fit", "rlhf_policy"]


def bradley_terry_fit(
    game: PreferenceGame, *, pair_weights: np.ndarray | None = None, max_iter: int = 100, tol: float = 1e-13
) -> np.ndarray:
    """Bradley-Terry MLE scores s (gauge Σ s = 0) from a preference matrix, by Newton's method.

    Maximizes Σ_{i≠j} W_ij [P_ij log σ(s_i − s_j)] (pair (i, j) shown with weight W_ij and won by i at
    frequency P_ij).  The default W is the uniform pair design (all ordered pairs equal); a π_ref⊗π_ref
    design is ``pair_weights = outer(π_ref, π_ref)``.  The log-likelihood is concave; its gradient at
    s is Σ_j (W_ij + W_ji)/2·... (for uniform W and s = 0 it is the row sums of A = P − ½).

    Parameters
    ----------
    game : PreferenceGame
        A single game.
    pair_weights : ndarray, shape (n, n), optional
        Symmetric non-negative design weights.

    Returns
    -------
    ndarray, shape (n,)
        Centred scores.

    Notes
    -----
    Bradley & Terry (1952); spec nash-preference-games §4.4 (the RLHF-blind cycle).
    """
    if game.is_batched:
        raise ValueError("game: bradley_terry_fit takes a single game")
    max_iter = check_int("max_iter", max_iter, 1)
    P = game.preferences
    n = P.shape[0]
    W = np.ones((n, n)) if pair_weights is None else as_float_array("pair_weights", pair_weights, ndim=2)
    if W.shape != (n, n):
        raise ValueError(f"pair_weights: expected shape ({n}, {n}), got {W.shape}")
    if (W < 0).any() or not np.allclose(W, W.T, rtol=0, atol=1e-14):
        raise ValueError("pair_weights: must be symmetric and non-negative")
    W = W.copy()
    np.fill_diagonal(W, 0.0)
    s = np.zeros(n)
    for _ in range(max_iter):
        d = s[:, None] - s[None, :]
        sig = 0.5 * (1.0 + np.tanh(0.5 * d))
        grad = (W * (P - sig)).sum(axis=1)  # ∂/∂s_i of Σ W_ij [P_ij log σ + P_ji log σ(−)]
        if np.abs(grad).max() <= tol:
            break
        H = W * sig * (1.0 - sig)
        Hess = np.diag(H.sum(axis=1)) - H  # negative Hessian (graph Laplacian), PSD with null space 1
        K = np.zeros((n + 1, n + 1))
        K[:n, :n] = Hess
        K[:n, n] = 1.0
        K[n, :n] = 1.0
        step = np.linalg.solve(K, np.concatenate([grad, [0.0]]))[:n]
        s = s + step
    return s - s.mean()


def rlhf_policy(log_ref: np.ndarray, scores: np.ndarray, beta: float) -> np.ndarray:
    """KL-regularized RLHF optimum argmax_π E_π[s] − β KL(π‖π_ref) = log_softmax(θ_ref + s/β)."""
    beta = check_positive("beta", beta)
    return log_softmax(np.asarray(log_ref, dtype=np.float64) + np.asarray(scores, dtype=np.float64) / beta)
