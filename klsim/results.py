"""Result dataclasses.  Every algorithm returns one of these; each carries its per-iteration history.

``history`` maps a name to a 1-d array indexed by iteration (or a stacked array whose first axis is the
iteration).  Names used across the library:

* ``"error_to_opt"``: ‖q* − q^{π_k}‖∞ (exact evaluation, when asked for);
* ``"kl_step"``: max_s KL(π_{k+1}‖π_k);
* ``"bellman_residual"``: ‖q_{k+1} − q_k‖∞;
* ``"error_avg"``: ‖E_k/k‖∞, the running average of injected errors;
* ``"exploitability"``, ``"kl_to_opt"``, ``"span"``, ``"queries"``: preference games.

Each family owns its own result class below; add fields only to your own family's class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SolveResult", "GameResult", "BoNResult", "OccupancyResult"]


@dataclass(frozen=True)
class SolveResult:
    """Result of a tabular dynamic-programming solver (``klsim.dp``, ``klsim.munchausen``).

    Attributes
    ----------
    q : ndarray, shape (S, A)
        Final action values (the last iterate, or the exact q^π for exact methods).
    v : ndarray, shape (S,)
        Final state values.
    log_policy : ndarray, shape (S, A)
        Final policy as log-probabilities (``-inf`` = probability 0).
    converged : bool
        Whether the stopping rule fired (always ``True`` for fixed-``n_iter`` research runs that completed).
    num_iter : int
        Iterations performed.
    residual : float
        Final ‖T q − q‖∞ (or the stopping-rule statistic for VI/MPI).
    history : dict of str to ndarray
        Per-iteration diagnostics (see module docstring).
    algorithm : str
        Name of the producing function.
    params : dict
        The parameters it was called with.
    """

    q: np.ndarray
    v: np.ndarray
    log_policy: np.ndarray
    converged: bool
    num_iter: int
    residual: float
    history: dict[str, np.ndarray] = field(default_factory=dict)
    algorithm: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> np.ndarray:
        """Policy probabilities, shape (S, A)."""
        return np.exp(self.log_policy)

    @property
    def greedy_actions(self) -> np.ndarray:
        """Argmax of the final policy per state (ties toward the lowest index), shape (S,)."""
        return np.argmax(self.log_policy, axis=1)


@dataclass(frozen=True)
class GameResult:
    """Result of a preference-game algorithm (``klsim.games``).

    Attributes
    ----------
    log_policy : ndarray, shape (A,) or (C, A)
        Final (last-iterate) log-policy; a batch of contexts has a leading axis.
    num_iter : int
        Iterations performed.
    converged : bool
        Whether the requested tolerance was reached.
    history : dict of str to ndarray
        ``kl_to_opt``, ``exploitability``, ``span``, ``queries`` (cumulative preference queries), ...
    algorithm : str
        Name of the producing function.
    params : dict
        Call parameters.
    log_policy_avg : ndarray or None
        Log of the probability-space average of the iterates (β = 0 methods: SPPO/MWU, EG-MWU, OMWU).
    details : dict
        Non-per-iteration outputs, e.g. the certificate of ``regularized_nash`` (per-context final
        exploitability and residual span).
    """

    log_policy: np.ndarray
    num_iter: int
    converged: bool
    history: dict[str, np.ndarray] = field(default_factory=dict)
    algorithm: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    log_policy_avg: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> np.ndarray:
        """Policy probabilities."""
        return np.exp(self.log_policy)


@dataclass(frozen=True)
class BoNResult:
    """Exact best-of-N law and its derived quantities (``klsim.best_of_n``).

    Attributes
    ----------
    log_probs : ndarray, shape (K,)
        Log-probabilities of the best-of-N law over the outcomes (or reward levels) of the base distribution.
    log_n_samples : float
        log N.
    kl : float
        KL(BoN ‖ p).
    expected_reward : float
        E_BoN[r].
    details : dict
        Anything else the computation produced (levels, tie masses, bounds).
    kind : str
        ``"bon"`` for a best-of-N law, ``"tilt"`` for a KL-RL optimum φ_λ (then ``log_n_samples`` is NaN).
    kl_coef : float
        λ of a tilt (``inf`` for the conditioning edge case; NaN for best-of-N).
    level_values : ndarray, shape (L,)
        The reward levels v_1 < … < v_L the law was computed on (for a memoryless LM, the values of S_n).
    level_log_probs : ndarray, shape (L,)
        Log-probabilities of the law on those levels.
    win_rate : float
        W(law ≻ p) with ties counting ½.
    """

    log_probs: np.ndarray
    log_n_samples: float
    kl: float
    expected_reward: float
    details: dict[str, Any] = field(default_factory=dict)
    kind: str = "bon"
    kl_coef: float = float("nan")
    level_values: np.ndarray | None = None
    level_log_probs: np.ndarray | None = None
    win_rate: float = float("nan")

    @property
    def probs(self) -> np.ndarray:
        """Probabilities of the best-of-N law."""
        return np.exp(self.log_probs)


@dataclass(frozen=True)
class OccupancyResult:
    """Result of an occupancy-regularized solver (``klsim.occupancy``).

    Attributes
    ----------
    policy : ndarray, shape (S, A)
        The optimal (regularized) policy.
    occupancy : ndarray, shape (S, A)
        Its normalized discounted state-action occupancy μ_π.
    true_return : float
        J(π, R) = ⟨μ_π, R_true⟩, the normalized return (1−γ)E[Σγ^t R_t] (``docs/occupancy.md``).
    proxy_return : float
        Same for the proxy reward.
    divergence : float
        Value of the regularizer at the solution.
    status : str
        Solver status string (``"optimal"`` or the solver's own).
    history : dict of str to ndarray
        Per-iteration diagnostics for iterative methods (Frank-Wolfe gap, ...).
    params : dict
        Call parameters.
    objective : float
        J(π, R̃) − coef · divergence at the re-evaluated occupancy.
    method : str
        The solver that produced the result (after any ``method="auto"`` fallback).
    chi2 : float
        χ²(μ_π‖μ_b), reported for every regularizer.
    lambda_0 : float
        Saturation threshold ‖Π_N(√μ_b ⊙ R̃)‖₂ (μ_b is √χ²-optimal iff coef ≥ lambda_0).
    sigma_proxy : float
        Standard deviation of R̃ under μ_b.
    lambda_star : float
        Theory coefficient σ_R̃ √(1 − r²) (NaN when r is undefined).
    diagnostics : dict
        ``solver_mu_gap`` = ‖μ_solver − μ‖∞ (re-evaluation rule), flow residuals, duality gaps, ...
    """

    policy: np.ndarray
    occupancy: np.ndarray
    true_return: float
    proxy_return: float
    divergence: float
    status: str
    history: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    objective: float = float("nan")
    method: str = ""
    chi2: float = float("nan")
    lambda_0: float = float("nan")
    sigma_proxy: float = float("nan")
    lambda_star: float = float("nan")
    diagnostics: dict[str, Any] = field(default_factory=dict)
