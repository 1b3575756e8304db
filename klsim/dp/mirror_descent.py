"""MD-VI / MD-MPI and its dual-averaging twin DA-VI / DA-MPI, with injected errors (spec §3, [LtA]).

Both functions share one driver, so the error draws, the extra MPI sweeps, and the history are
computed identically; only the policy step differs (mirror-descent form vs dual-averaging form).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from klsim._kernels.common import kl_rows_from_logs
from klsim._kernels.dp import soft_greedy_rows
from klsim._validation import as_float_array, check_int, check_nonnegative_scalar
from klsim.dp._core import backup, check_coefs, check_mdp, check_q, policy_value, sweep, uniform_log_policy
from klsim.dp.evaluation import policy_evaluation
from klsim.dp.solvers import optimal_q, soft_value_iteration
from klsim.mdp import TabularMDP
from klsim.results import SolveResult

__all__ = ["md_vi", "da_vi", "error_source", "GaussianErrors"]


@dataclass(frozen=True)
class GaussianErrors:
    """Gaussian injected errors ε_k = σ z_k of convention C8 (spec §3): ``errors=GaussianErrors(σ, seed)`` is
    the same as ``noise_std=σ, seed=seed``.

    Attributes
    ----------
    sigma : float
        σ ≥ 0.
    seed : int or None
        Seed of ``numpy.random.default_rng``; z_k ~ N(0, I_{S×A}) are drawn in order k = 1, 2, ….
    """

    sigma: float
    seed: int | None = None

    def __post_init__(self) -> None:
        check_nonnegative_scalar("sigma", self.sigma)


ErrorsArg = np.ndarray | Callable[[int, np.random.Generator], np.ndarray] | GaussianErrors | None


def error_source(
    errors: ErrorsArg, noise_std: float, seed: int | None, n_iter: int, shape: tuple[int, int]
) -> Callable[[int], np.ndarray] | None:
    r"""The map k ↦ ε_k (k = 1..K) of convention C8, or None when there are no errors.

    * ``errors=None, noise_std=σ > 0`` (or ``errors=GaussianErrors(σ, seed)``): ε_k = σ z_k, with z_k ~ N(0, I)
      of shape (S, A) drawn in order k = 1, 2, … from ``numpy.random.default_rng(seed)`` (identical across
      algorithms);
    * ``errors`` an array of shape (K, S, A): ε_k = errors[k − 1];
    * ``errors`` a callable ``(k, rng) -> (S, A)`` with ``rng = default_rng(seed)``, called in order k = 1..K.
    """
    sigma = check_nonnegative_scalar("noise_std", noise_std)
    if isinstance(errors, GaussianErrors):
        if sigma != 0.0 or seed is not None:
            raise ValueError("errors: GaussianErrors carries sigma and seed; leave noise_std and seed unset")
        sigma, seed, errors = float(errors.sigma), errors.seed, None
    if errors is None:
        if sigma == 0.0:
            return None
        rng = np.random.default_rng(seed)
        return lambda k: sigma * rng.standard_normal(shape)
    if sigma != 0.0:
        raise ValueError("noise_std: give either errors or noise_std > 0, not both")
    if callable(errors):
        rng = np.random.default_rng(seed)

        def from_callable(k: int) -> np.ndarray:
            e = as_float_array("errors", errors(k, rng))
            if e.shape != shape:
                raise ValueError(f"errors: callable returned shape {e.shape} at k={k}, expected {shape}")
            if not np.isfinite(e).all():
                raise ValueError(f"errors: callable returned a non-finite value at k={k}")
            return e

        return from_callable
    arr = as_float_array("errors", errors)
    if arr.shape != (n_iter, *shape):
        raise ValueError(f"errors: expected shape (n_iter, S, A) = {(n_iter, *shape)}, got {arr.shape}")
    if not np.isfinite(arr).all():
        k = int(np.flatnonzero(~np.isfinite(arr).reshape(n_iter, -1).all(axis=1))[0])
        raise ValueError(f"errors: non-finite value in errors[{k}] (iteration k={k + 1})")
    return lambda k: arr[k - 1]


def _drive(
    mdp: TabularMDP,
    step: Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    observe: Callable[[int, np.ndarray], None],
    *,
    algorithm: str,
    lam: float,
    tau: float,
    n_iter: int,
    eval_steps: int,
    noise_std: float,
    seed: int | None,
    errors: ErrorsArg,
    q0: np.ndarray | None,
    track_error: bool,
    record_iterates: bool,
) -> SolveResult:
    """Shared loop: policy step, m − 1 extra sweeps, error injection, history."""
    S, A = mdp.n_states, mdp.n_actions
    eps_of = error_source(errors, noise_std, seed, n_iter, (S, A))
    q = np.zeros((S, A)) if q0 is None else check_q("q0", q0, (S, A)).copy()
    log_pi = uniform_log_policy(S, A)
    temp = lam + tau
    beta = lam / temp if temp > 0 else 0.0
    K = n_iter
    hist = {name: np.empty(K) for name in ("kl_step", "bellman_residual", "error_avg", "q_norm")}
    if tau > 0.0:
        hist["error_ema"] = np.empty(K)
    if track_error:
        q_star, _ = optimal_q(mdp)
        hist["error_to_opt"] = np.empty(K)
        if tau > 0.0:
            q_star_tau = soft_value_iteration(mdp, entropy_coef=tau).q
            hist["error_to_soft_opt"] = np.empty(K)
    if record_iterates:
        it_pi = np.empty((K + 1, S, A))
        it_q = np.empty((K + 1, S, A))
        it_pi[0], it_q[0] = log_pi, q
    E = np.zeros((S, A))
    E_ema = np.zeros((S, A))
    zeros = np.zeros((S, A))
    kl = np.empty(S)
    v = np.zeros(S)
    for k in range(K):
        log_pi_new, v, q_next = step(k, q, log_pi)
        if eval_steps > 1:
            c = policy_value(log_pi_new, zeros, log_pi, lam, tau)  # −λKL(π_{k+1}‖π_k) + τH(π_{k+1}), once
            buf = np.empty((S, A))
            for _ in range(eval_steps - 1):
                w = policy_value(log_pi_new, q_next, None, 0.0, 0.0) + c
                backup(mdp, w, buf)
                q_next, buf = buf, q_next
        if eps_of is not None:
            eps = eps_of(k + 1)
            q_next = q_next + eps
            E += eps
            E_ema = beta * E_ema + (1.0 - beta) * eps
        hist["kl_step"][k] = float(np.max(kl_rows_from_logs(log_pi_new, log_pi, kl)))
        hist["bellman_residual"][k] = float(np.max(np.abs(q_next - q)))
        hist["error_avg"][k] = float(np.max(np.abs(E))) / (k + 1)
        hist["q_norm"][k] = float(np.max(np.abs(q_next)))
        if tau > 0.0:
            hist["error_ema"][k] = float(np.max(np.abs(E_ema)))
        if track_error:
            q_pi, _ = policy_evaluation(mdp, log_pi_new)
            hist["error_to_opt"][k] = float(np.max(np.abs(q_star - q_pi)))
            if tau > 0.0:
                q_pi_tau, _ = policy_evaluation(mdp, log_pi_new, entropy_coef=tau)
                hist["error_to_soft_opt"][k] = float(np.max(np.abs(q_star_tau - q_pi_tau)))
        observe(k, q_next)
        q, log_pi = q_next, log_pi_new
        if record_iterates:
            it_pi[k + 1], it_q[k + 1] = log_pi, q
    if record_iterates:
        hist["log_policy"] = it_pi
        hist["q"] = it_q
    params = {
        "kl_coef": lam,
        "entropy_coef": tau,
        "n_iter": K,
        "eval_steps": eval_steps,
        "noise_std": noise_std,
        "seed": seed,
        "errors": None
        if errors is None
        else (
            repr(errors)
            if isinstance(errors, GaussianErrors)
            else "callable"
            if callable(errors)
            else "array"
        ),
    }
    return SolveResult(
        q=q.copy(),
        v=np.asarray(v, dtype=np.float64).copy(),
        log_policy=log_pi.copy(),
        converged=True,
        num_iter=K,
        residual=float(hist["bellman_residual"][-1]) if K else 0.0,
        history=hist,
        algorithm=algorithm,
        params=params,
    )


def _check_common(mdp, kl_coef, entropy_coef, n_iter, eval_steps):
    check_mdp(mdp)
    lam, tau = check_coefs(kl_coef, entropy_coef)
    K = check_int("n_iter", n_iter, 1)
    m = check_int("eval_steps", eval_steps, 1)
    return lam, tau, K, m


def md_vi(
    mdp: TabularMDP,
    *,
    kl_coef: float,
    entropy_coef: float,
    n_iter: int,
    eval_steps: int = 1,
    noise_std: float = 0.0,
    seed: int | None = None,
    errors: ErrorsArg = None,
    q0: np.ndarray | None = None,
    track_error: bool = False,
    record_iterates: bool = False,
) -> SolveResult:
    r"""MD-VI / MD-MPI(λ, τ, m) in log space ([LtA] eq. (4); spec §3).

    For k = 0, 1, …, K−1::

        π_{k+1} = G^{λ,τ}_{π_k}(q_k) = sm(β ln π_k + q_k/(λ+τ)),            β = λ/(λ+τ)
        q_{k+1} = (T^{λ,τ}_{π_{k+1}|π_k})^m q_k + ε_{k+1}
        T^{λ,τ}_{π|μ} q = r + γP(⟨π,q⟩ − λKL(π‖μ) + τH(π))

    m = 1 is MD-VI: q_{k+1} = r + γP[(λ+τ) lse(β ln π_k + q_k/(λ+τ))] + ε_{k+1} (one fused sweep).
    λ = τ = 0 is approximate VI / MPI (exact hard greedy, ties to the lowest index).

    Parameters
    ----------
    mdp : TabularMDP
        Dense or sparse layout.
    kl_coef, entropy_coef : float
        λ ≥ 0 and τ ≥ 0.
    n_iter : int
        K ≥ 1 (fixed; research runs use no stopping rule).
    eval_steps : int
        m ≥ 1 (later sweeps reuse −λKL(π_{k+1}‖π_k) + τH(π_{k+1}), computed once per iteration).
    noise_std, seed : float, int
        Gaussian errors ε_k = σ z_k, z_k ~ N(0, I_{S×A}) drawn in order k = 1, 2, … from
        ``numpy.random.default_rng(seed)`` (convention C8), identical across algorithms.
    errors : GaussianErrors, ndarray (K, S, A) or callable ``(k, rng) -> (S, A)``, optional
        Errors instead of ``noise_std`` (the callable gets ``rng = default_rng(seed)``).
    q0 : ndarray, shape (S, A), optional
        q_0 (default 0, C1).
    track_error : bool
        Record ``error_to_opt`` = ‖q* − q^{π_k}‖∞ by exact evaluation (and, when τ > 0,
        ``error_to_soft_opt`` = ‖q*_τ − q^{π_k}_τ‖∞).
    record_iterates : bool
        Also record ``history["log_policy"]`` = log π_0..log π_K and ``history["q"]`` = q_0..q_K, (K+1, S, A).

    Returns
    -------
    SolveResult
        ``q`` = q_K, ``log_policy`` = log π_K, ``v`` = the regularized value of the last update.  History
        arrays have length K; entry k−1 belongs to iteration k (π_k and ε_1..ε_k): ``kl_step`` =
        max_s KL(π_k‖π_{k−1}), ``bellman_residual`` = ‖q_k − q_{k−1}‖∞, ``error_avg`` = ‖E_k/k‖∞ with
        E_k = Σ_{j≤k} ε_j, ``q_norm`` = ‖q_k‖∞ (Theorem 1 assumes ‖q_k‖∞ ≤ v^λ_max; not enforced, so
        violations are visible here), ``error_ema`` = ‖E^β_k‖∞ (τ > 0; E^β_k = βE^β_{k−1} + (1−β)ε_k), and the tracked
        errors.  This pairs π_k with E_k as Theorem 1 is written.

    Notes
    -----
    Conventions C1 (π_0 uniform, q_0 = 0), C2 (unweighted lse), C7, C8.  Policies are kept as
    log-probabilities: no log of a probability is taken, so π_k(a) may underflow without NaN (spec §2).
    ``kl_step`` is +inf when a hard (λ = τ = 0) policy switches action.

    Examples
    --------
    >>> from klsim.mdp import garnet
    >>> res = md_vi(garnet(30, 4, 3, seed=0), kl_coef=1.0, entropy_coef=0.0, n_iter=50, noise_std=1.0, seed=0)
    >>> res.history["error_avg"].shape
    (50,)
    """
    lam, tau, K, m = _check_common(mdp, kl_coef, entropy_coef, n_iter, eval_steps)
    S, A = mdp.n_states, mdp.n_actions

    def step(k, q, log_pi):
        log_pi_new, v, q_next = np.empty((S, A)), np.empty(S), np.empty((S, A))
        sweep(mdp, q, log_pi, lam, tau, log_pi_new, v, q_next)
        return log_pi_new, v, q_next

    return _drive(
        mdp, step, lambda k, q: None, algorithm="md_vi", lam=lam, tau=tau, n_iter=K, eval_steps=m,
        noise_std=noise_std, seed=seed, errors=errors, q0=q0, track_error=track_error,
        record_iterates=record_iterates,
    )  # fmt: skip


def da_vi(
    mdp: TabularMDP,
    *,
    kl_coef: float,
    entropy_coef: float,
    n_iter: int,
    eval_steps: int = 1,
    noise_std: float = 0.0,
    seed: int | None = None,
    errors: ErrorsArg = None,
    q0: np.ndarray | None = None,
    track_error: bool = False,
    record_iterates: bool = False,
) -> SolveResult:
    r"""DA-VI / DA-MPI(λ, τ, m), the dual-averaging form of MD-VI ([LtA] Prop. 1; spec §3).

    ::

        π_{k+1} = sm(h_k / t_k),     t_k = λ/(k+1) if τ = 0, else τ
        q_{k+1} = (T^{λ,τ}_{π_{k+1}|π_k})^m q_k + ε_{k+1}
        h_{k+1} = ((k+1) h_k + q_{k+1})/(k+2) if τ = 0, else β h_k + (1−β) q_{k+1}

    with h_0 = q_0 if τ = 0 and h_0 = (1−β) q_0 if τ > 0 (convention C3: h_{−1} = 0).  Under C1 and C3
    this equals :func:`md_vi` exactly (same policies and q iterates, to rounding).  The update evaluates
    the bracket ⟨π_{k+1}, q_k⟩ − λKL(π_{k+1}‖π_k) + τH(π_{k+1}) explicitly, not through the lse identity.

    Parameters and Returns are those of :func:`md_vi`; λ + τ > 0 is required.

    Notes
    -----
    h_0 = q_0 (instead of C3) would add a decaying transient β^{k+1} q_0.  The dual average h_k is a plain
    running mean for τ = 0 and an exponential moving average for τ > 0.
    """
    lam, tau, K, m = _check_common(mdp, kl_coef, entropy_coef, n_iter, eval_steps)
    if lam + tau == 0.0:
        raise ValueError("kl_coef: da_vi needs kl_coef + entropy_coef > 0 (λ = τ = 0 is plain VI: use md_vi)")
    S, A = mdp.n_states, mdp.n_actions
    beta = lam / (lam + tau)
    q_init = np.zeros((S, A)) if q0 is None else check_q("q0", q0, (S, A))
    state = {"h": q_init.copy() if tau == 0.0 else (1.0 - beta) * q_init}
    dummy = np.zeros((S, A))

    def step(k, q, log_pi):
        t = lam / (k + 1) if tau == 0.0 else tau
        log_pi_new = np.empty((S, A))
        soft_greedy_rows(state["h"], dummy, 0.0, t, log_pi_new, np.empty(S))
        v = policy_value(log_pi_new, q, log_pi, lam, tau)
        return log_pi_new, v, backup(mdp, v, np.empty((S, A)))

    def observe(k, q_next):
        h = state["h"]
        state["h"] = ((k + 1) * h + q_next) / (k + 2) if tau == 0.0 else beta * h + (1.0 - beta) * q_next

    return _drive(
        mdp, step, observe, algorithm="da_vi", lam=lam, tau=tau, n_iter=K, eval_steps=m,
        noise_std=noise_std, seed=seed, errors=errors, q0=q0, track_error=track_error,
        record_iterates=record_iterates,
    )  # fmt: skip
