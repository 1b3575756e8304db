"""Munchausen value iteration M-VI(α, τ), Tsallis MVI(q), and the exact Tsallis-KL iteration.

Spec ``kl-regularized-dp.md`` §5 and §6; papers [MRL] (Vieillard, Pietquin & Geist, *Munchausen
Reinforcement Learning*, NeurIPS 2020, arXiv:2007.14430) and [TKL] (Zhu, Chen, Schlegel & White,
*Generalized Munchausen Reinforcement Learning using Tsallis KL Divergence*, NeurIPS 2023, arXiv:2301.11476).

Conventions (``docs/notation.md``, ``docs/munchausen.md``):

* C1: π_0 is uniform and q_0 = 0 unless ``q0`` is given.
* C8: injected errors ε_k = σ z_k with z_k ~ N(0, I) of shape (S, A), drawn in order k = 1, 2, … from
  ``numpy.random.default_rng(seed)`` (``rng.standard_normal((S, A))``), identical to ``klsim.dp.md_vi``.
* Histories are indexed like ``klsim.dp.md_vi``: entry k−1 belongs to iteration k = 1..K.
  ``error_to_opt[k−1]`` = ‖q* − q^{π_k}‖∞ (exact evaluation, §9), ``action_gap[k−1, s]`` =
  max_b q_k(s,b) − (second-largest q_k(s,·)), ``support_size[k−1, s]`` = |supp π_k(·|s)|,
  ``bellman_residual[k−1]`` = ‖q_k − q_{k−1}‖∞, ``error_avg[k−1]`` = ‖E_k/k‖∞ (noisy runs).
  π_{k+1} is the greedy policy of q_k, so π_k depends on ε_1..ε_{k−1}.
"""

from __future__ import annotations

import numpy as np

from klsim._kernels.munchausen import munchausen_bonus_rows
from klsim._validation import (
    as_float_array,
    check_finite,
    check_in_closed_interval,
    check_int,
    check_nonnegative_scalar,
    check_positive,
    check_shape,
)
from klsim.divergences import (
    _check_log_ref,
    _check_tsallis_index,
    _tsallis_step,
    log_softmax,
    logsumexp,
    tsallis_entropy,
    tsallis_kl,
)
from klsim.dp import error_source, optimal_q, policy_evaluation, soft_value_iteration
from klsim.dp._core import sweep
from klsim.mdp import TabularMDP
from klsim.results import SolveResult

__all__ = [
    "munchausen_vi",
    "advantage_learning",
    "mvi_q",
    "tsallis_kl_vi",
    "munchausen_limit",
    "action_gap_ratio",
]


# ---------------------------------------------------------------------------------------------- helpers


def _check_mdp(mdp) -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
    return mdp


def _initial_q(q0, S: int, A: int) -> np.ndarray:
    if q0 is None:
        return np.zeros((S, A))
    q = as_float_array("q0", q0).copy()
    check_shape("q0", q, (S, A))
    check_finite("q0", q, ("s", "a"))
    return q


def _top2_gap(q: np.ndarray) -> np.ndarray:
    """max_b q(s,b) − second-largest q(s,·), per state (0 when A = 1)."""
    if q.shape[1] < 2:
        return np.zeros(q.shape[0])
    part = np.partition(q, q.shape[1] - 2, axis=1)
    return part[:, -1] - part[:, -2]


class _Tracker:
    """Per-iteration histories, indexed like ``klsim.dp.md_vi``: entry k−1 belongs to iteration k = 1..K."""

    def __init__(self, mdp: TabularMDP, n_iter: int, track_error: bool, record_iterates: bool, q0, log_pi0):
        S, A = mdp.n_states, mdp.n_actions
        self.mdp = mdp
        self.gap = np.empty((n_iter, S))
        self.support = np.empty((n_iter, S), dtype=np.int64)
        self.residual = np.empty(n_iter)
        self.err_avg = np.zeros(n_iter)
        self.track_error = bool(track_error)
        self.record = bool(record_iterates)
        if self.track_error:
            self.q_star = optimal_q(mdp)[0]
            self.error = np.empty(n_iter)
        if self.record:
            self.log_pis = np.empty((n_iter + 1, S, A))
            self.qs = np.empty((n_iter + 1, S, A))
            self.log_pis[0] = log_pi0
            self.qs[0] = q0
        self._E = np.zeros((S, A))
        self.noisy = False

    def step(
        self, k: int, log_pi: np.ndarray, q_prev: np.ndarray, q: np.ndarray, gap: np.ndarray | None = None
    ):
        """Record iteration k: π_k, q_k (and q_{k−1} for the residual); ``gap`` = action gap of q_k if known."""
        i = k - 1
        self.support[i] = np.count_nonzero(log_pi > -np.inf, axis=1)
        if gap is not None:
            self.gap[i] = gap
        self.residual[i] = float(np.max(np.abs(q - q_prev)))
        if self.track_error:
            q_pi = policy_evaluation(self.mdp, log_pi)[0]
            self.error[i] = float(np.max(np.abs(self.q_star - q_pi)))
        if self.record:
            self.log_pis[k] = log_pi
            self.qs[k] = q

    def noise(self, k: int, eps: np.ndarray) -> None:
        """Record ‖E_k/k‖∞ with E_k = Σ_{j≤k} ε_j."""
        self.noisy = True
        self._E += eps
        self.err_avg[k - 1] = float(np.max(np.abs(self._E))) / k

    def history(self) -> dict[str, np.ndarray]:
        h = {"action_gap": self.gap, "support_size": self.support, "bellman_residual": self.residual}
        if self.noisy:
            h["error_avg"] = self.err_avg
        if self.track_error:
            h["error_to_opt"] = self.error
        if self.record:
            h["log_policy"] = self.log_pis
            h["q"] = self.qs
        return h


def _check_tau(tau: float) -> float:
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"tau: expected a float, got {tau!r}") from None
    if not (np.isfinite(t) and t > 0.0):
        raise ValueError(
            f"tau: must be a finite number > 0 (for tau -> 0 use advantage_learning), got {tau!r}"
        )
    return t


def _uniform_log_policy(S: int, A: int) -> np.ndarray:
    return np.full((S, A), -np.log(A))


def _start(mdp, K, q0, errors, noise_std, seed, track_error, record_iterates, log_policy0=None):
    """Validated (q_0, ln π_0, error source, tracker); ln π_0 is uniform (C1) unless ``log_policy0``."""
    S, A = mdp.n_states, mdp.n_actions
    q = _initial_q(q0, S, A)
    if log_policy0 is None:
        log_pi = _uniform_log_policy(S, A)
    else:
        log_pi = np.array(_check_log_ref(as_float_array("log_policy0", log_policy0), (S, A), "log_policy0"))
    err = error_source(errors, noise_std, seed, K, (S, A))
    return q, log_pi, err, _Tracker(mdp, K, track_error, record_iterates, q, log_pi)


def _inject_error(err, tr: _Tracker, k: int, q_new: np.ndarray) -> None:
    """q_{k} += ε_k in place (C8) and record ‖E_k/k‖∞, when errors are injected."""
    if err is not None:
        eps = err(k)
        q_new += eps
        tr.noise(k, eps)


def _result(algorithm: str, q, v, log_pi, tr: _Tracker, params: dict) -> SolveResult:
    return SolveResult(
        q=np.array(q),
        v=np.array(v, dtype=np.float64),
        log_policy=np.array(log_pi),
        converged=True,
        num_iter=int(tr.residual.shape[0]),
        residual=float(tr.residual[-1]),
        history=tr.history(),
        algorithm=algorithm,
        params=params,
    )


# ---------------------------------------------------------------------------------------------- M-VI


def munchausen_vi(
    mdp: TabularMDP,
    *,
    alpha: float,
    tau: float,
    n_iter: int,
    clip: float | None = None,
    noise_std: float = 0.0,
    seed: int | None = None,
    errors=None,
    q0: np.ndarray | None = None,
    track_error: bool = True,
    record_iterates: bool = False,
) -> SolveResult:
    """Munchausen value iteration M-VI(α, τ) in its stable form ([MRL] Eq. (2)–(3); spec §5).

    With ℓ_k := τ ln π_{k+1} = q_k − τ lse(q_k/τ) (max-shifted, never the log of a probability):

        π_{k+1} = sm(q_k/τ)
        q_{k+1} = r + α ℓ_k + γ P[τ lse(q_k/τ)] + ε_{k+1}
                = r + α τ ln π_{k+1} + γ P ⟨π_{k+1}, q_k − τ ln π_{k+1}⟩ + ε_{k+1}

    Parameters
    ----------
    mdp : TabularMDP
        Dense (S, A, S) or CSR layout.
    alpha : float
        Munchausen scaling α ∈ [0, 1] (α = 0 is soft VI).
    tau : float
        Temperature τ > 0 (for τ → 0 use :func:`advantage_learning`).
    n_iter : int
        Number K >= 1 of sweeps (no stopping rule).
    clip : float, optional
        l_0 ≤ 0: use the deep-RL bonus α·clip(ℓ_k, l_0, 0) (typically l_0 = −1).  ``None`` (default) is exact.
        **Clipped M-VI is NOT MD-VI**: the equivalence below holds only without a clip.
    noise_std, seed : float, int
        ε_k = σ z_k (C8), the same draws as ``klsim.dp.md_vi`` (via ``klsim.dp.error_source``).
    errors : ndarray (K, S, A) or callable ``(k, rng) -> (S, A)``, optional
        Explicit errors ε_1..ε_K instead of ``noise_std``.
    q0 : ndarray, shape (S, A), optional
        Initial q_0 (default 0; C1).
    track_error : bool
        Record ``error_to_opt[k]`` = ‖q* − q^{π_k}‖∞ (one S×S solve per iteration).
    record_iterates : bool
        Record ``history["log_policy"]`` (K+1, S, A) = ln π_0..ln π_K and ``history["q"]`` = q_0..q_K.

    Returns
    -------
    SolveResult
        ``q`` = q_K, ``log_policy`` = ln π_K = ln sm(q_{K−1}/τ), ``v`` = τ lse(q_{K−1}/τ) (the value backed up
        last), ``residual`` = ‖q_K − q_{K−1}‖∞; history (entry k−1 ↔ iteration k) ``action_gap`` (K, S),
        ``support_size`` (K, S), ``bellman_residual`` (K,), ``error_to_opt`` (K,) when tracked, ``error_avg``
        (K,) when noisy.

    Notes
    -----
    Equivalence ([MRL] Thm 1; spec §5): with q'_k := q_k − ατ ln π_k, unclipped M-VI(α, τ) has exactly the
    policies of MD-VI(λ = ατ, τ_ent = (1−α)τ) started from π_0 uniform and q'_0 = q_0 + ατ ln|A|, with the
    same errors, and q' follows MD-VI's iterates.  α = 1 is MD-VI(τ, 0) (Theorem 1 of [LtA]); then
    q_k → −∞ on suboptimal actions, so use q' or π for diagnostics.  Fixed point for α < 1 without errors:
    q_∞ = (q*_{τ'} − α v*_{τ'})/(1−α), τ' = (1−α)τ (:func:`munchausen_limit`).
    """
    mdp = _check_mdp(mdp)
    a = check_in_closed_interval("alpha", alpha, 0.0, 1.0)
    t = _check_tau(tau)
    K = check_int("n_iter", n_iter, 1)
    if clip is None:
        clip_lo = -np.inf
    else:
        clip_lo = float(clip)
        if not (np.isfinite(clip_lo) and clip_lo <= 0.0):
            raise ValueError(f"clip: the log-policy clip l0 must be a finite number <= 0, got {clip!r}")
    S, A = mdp.n_states, mdp.n_actions
    q, _, err, tr = _start(mdp, K, q0, errors, noise_std, seed, track_error, record_iterates)
    log_pi = np.empty((S, A))
    v = np.empty(S)
    gap = np.empty(S)
    q_new = np.empty((S, A))
    for k in range(K):
        # entropy sweep of klsim.dp (β = 0, temperature τ): log π_{k+1} = q/τ − L, v = τL, q_new = R + γPv
        sweep(mdp, q, q, 0.0, t, log_pi, v, q_new)
        munchausen_bonus_rows(q, v, a, clip_lo, q_new, gap)  # q_new += α clip(q − v); gap of q_k
        if k > 0:
            tr.gap[k - 1] = gap
        _inject_error(err, tr, k + 1, q_new)
        tr.step(k + 1, log_pi, q, q_new)
        q, q_new = q_new, q
    tr.gap[K - 1] = _top2_gap(q)
    params = {"alpha": a, "tau": t, "n_iter": K, "clip": clip, "noise_std": float(noise_std), "seed": seed}
    return _result("munchausen_vi", q, v, log_pi, tr, params)


def advantage_learning(
    mdp: TabularMDP,
    *,
    alpha: float,
    n_iter: int,
    noise_std: float = 0.0,
    seed: int | None = None,
    errors=None,
    q0: np.ndarray | None = None,
    track_error: bool = True,
    record_iterates: bool = False,
) -> SolveResult:
    """Advantage Learning, the τ → 0 limit of M-VI (spec §5, "special cases"; [MRL] §3).

        π_{k+1} = hard argmax of q_k (ties toward the lowest index, C7)
        q_{k+1} = r + γ P max_b q_k(·, b) + α (q_k − max_b q_k) + ε_{k+1}

    This is the exact hard-max branch, never a tiny temperature.  Parameters, conventions and history as in
    :func:`munchausen_vi` (``support_size`` is 1 everywhere).
    """
    mdp = _check_mdp(mdp)
    a = check_in_closed_interval("alpha", alpha, 0.0, 1.0)
    K = check_int("n_iter", n_iter, 1)
    S, A = mdp.n_states, mdp.n_actions
    q, _, err, tr = _start(mdp, K, q0, errors, noise_std, seed, track_error, record_iterates)
    rows = np.arange(S)
    for k in range(K):
        best = np.argmax(q, axis=1)
        vmax = q[rows, best]
        log_pi = np.full((S, A), -np.inf)
        log_pi[rows, best] = 0.0
        q_new = mdp.R + mdp.gamma * mdp.expected_next(vmax) + a * (q - vmax[:, None])
        _inject_error(err, tr, k + 1, q_new)
        tr.step(k + 1, log_pi, q, q_new, _top2_gap(q_new))
        q = q_new
    params = {"alpha": a, "n_iter": K, "noise_std": float(noise_std), "seed": seed}
    return _result("advantage_learning", q, vmax, log_pi, tr, params)


# ---------------------------------------------------------------------------------------------- MVI(q)


def mvi_q(
    mdp: TabularMDP,
    *,
    tsallis_q: float,
    alpha: float,
    tau: float,
    n_iter: int,
    noise_std: float = 0.0,
    seed: int | None = None,
    errors=None,
    q0: np.ndarray | None = None,
    track_error: bool = True,
    record_iterates: bool = False,
) -> SolveResult:
    """Tsallis Munchausen VI, MVI(q) ([TKL] Eq. (10); spec §6).

        π_{k+1} = argmax_π ⟨π, Q_k⟩ + τ S_q(π)
        Q_{k+1} = r + α (Q_k − M_{q,τ}(Q_k)) + γ P[⟨π_{k+1}, Q_k⟩ + τ S_q(π_{k+1})] + ε_{k+1}

    Parameters
    ----------
    mdp : TabularMDP
    tsallis_q : float
        q >= 1.  q = 1 dispatches to :func:`munchausen_vi` (MVI(1) ≡ M-VI(α, τ)).
    alpha, tau, n_iter, noise_std, seed, errors, q0, track_error, record_iterates
        As in :func:`munchausen_vi`.

    Returns
    -------
    SolveResult
        As :func:`munchausen_vi`: ``log_policy`` = ln π_K (the greedy step of Q_{K−1}), ``v`` =
        ⟨π_K, Q_{K−1}⟩ + τ S_q(π_K).

    Notes
    -----
    C6: M_{q,τ}(Q) := ν', the normalizer with Q − ν' = qτ ln^L_q π_{k+1} on the support
    (:func:`klsim.divergences.tsallis_normalizer`).  The bonus α(Q − ν') is finite for every action, so no
    clip is needed.  Approximation ([TKL] §4): ln_q is only pseudo-additive, so the Munchausen identity
    ln(π_{k+1}/π_k) = ln π_{k+1} − ln π_k acquires a (1−q)·ln_q·ln_q residual that the paper drops.  For
    q ≠ 1 MVI(q) is therefore Tsallis-KL + Tsallis-entropy regularized VI only up to that residual; no
    equivalence is claimed and deviations are measured (``papers_repro/tsallis_mvi.py``).  MVI(q)
    re-sparsifies from Q_k at every step, so actions can return to the support.
    """
    qv = _check_tsallis_index(tsallis_q, 1.0)
    if qv == 1.0:
        res = munchausen_vi(
            mdp,
            alpha=alpha,
            tau=tau,
            n_iter=n_iter,
            noise_std=noise_std,
            seed=seed,
            errors=errors,
            q0=q0,
            track_error=track_error,
            record_iterates=record_iterates,
        )
        return SolveResult(
            q=res.q,
            v=res.v,
            log_policy=res.log_policy,
            converged=res.converged,
            num_iter=res.num_iter,
            residual=res.residual,
            history=res.history,
            algorithm="mvi_q",
            params={**res.params, "tsallis_q": 1.0},
        )
    mdp = _check_mdp(mdp)
    a = check_in_closed_interval("alpha", alpha, 0.0, 1.0)
    t = _check_tau(tau)
    K = check_int("n_iter", n_iter, 1)
    q, _, err, tr = _start(mdp, K, q0, errors, noise_std, seed, track_error, record_iterates)
    shift = qv * t / (qv - 1.0)
    for k in range(K):
        log_pi, nu = _tsallis_step(q, qv, 0.0, t, None)
        v = _tsallis_value(log_pi, q, qv, t)
        q_new = mdp.R + a * (q - (nu + shift)[:, None]) + mdp.gamma * mdp.expected_next(v)
        _inject_error(err, tr, k + 1, q_new)
        tr.step(k + 1, log_pi, q, q_new, _top2_gap(q_new))
        q = q_new
    params = {"tsallis_q": qv, "alpha": a, "tau": t, "n_iter": K, "noise_std": float(noise_std), "seed": seed}
    return _result("mvi_q", q, v, log_pi, tr, params)


def _tsallis_value(log_pi: np.ndarray, q: np.ndarray, qv: float, tau: float) -> np.ndarray:
    """⟨π, Q⟩ + τ S_q(π) per state (π = 0 terms contribute 0)."""
    return np.sum(np.exp(log_pi) * q, axis=1) + tau * tsallis_entropy(log_pi, qv)


# ---------------------------------------------------------------------------------------------- Tsallis-KL VI


def tsallis_kl_vi(
    mdp: TabularMDP,
    *,
    tsallis_q: float,
    kl_coef: float,
    entropy_coef: float = 0.0,
    n_iter: int,
    noise_std: float = 0.0,
    seed: int | None = None,
    errors=None,
    q0: np.ndarray | None = None,
    log_policy0: np.ndarray | None = None,
    track_error: bool = True,
    record_iterates: bool = False,
) -> SolveResult:
    """The exact Tsallis-KL mirror-descent iteration (spec §6, "support collapse"; [TKL] §3).

        π_{k+1} = argmax_π ⟨π, Q_k⟩ − λ D_q(π‖π_k) + τ S_q(π)
        Q_{k+1} = r + γ P[⟨π_{k+1}, Q_k⟩ − λ D_q(π_{k+1}‖π_k) + τ S_q(π_{k+1})] + ε_{k+1}

    Parameters
    ----------
    mdp : TabularMDP
    tsallis_q : float
        q >= 1; q = 1 is MD-VI(λ, τ) (Shannon step of spec §2).
    kl_coef : float
        λ > 0.
    entropy_coef : float
        τ >= 0 (τ = 0 is the pure Tsallis-KL step).
    log_policy0 : ndarray, shape (S, A), optional
        ln π_0 (default uniform, C1).  Zeros of π_0 are hard constraints.
    n_iter, noise_std, seed, errors, q0, track_error, record_iterates
        As in :func:`munchausen_vi`.

    Returns
    -------
    SolveResult
        ``log_policy`` = ln π_K, ``q`` = Q_K, ``v`` = the regularized value backed up last; history as in
        :func:`munchausen_vi`.

    Notes
    -----
    For q > 1 and λ > 0, supp π_{k+1} ⊆ supp π_k: an action cut once never returns, so early noise locks in
    (spec §12, pitfall 6).  Unrolled, π_{k+1} ∝ π_0 Π_j [·]_+^{1/(q−1)} mixes sums and products of past Q's:
    there is no averaging identity for q ≠ 1.
    """
    mdp = _check_mdp(mdp)
    qv = _check_tsallis_index(tsallis_q, 1.0)
    lam = check_positive("kl_coef", kl_coef)
    tau = check_nonnegative_scalar("entropy_coef", entropy_coef)
    K = check_int("n_iter", n_iter, 1)
    q, log_pi, err, tr = _start(
        mdp, K, q0, errors, noise_std, seed, track_error, record_iterates, log_policy0
    )
    beta = lam / (lam + tau)
    for k in range(K):
        if qv == 1.0:
            with np.errstate(invalid="ignore"):
                z = beta * log_pi + q / (lam + tau)
            new_log_pi = log_softmax(np.where(np.isneginf(log_pi), -np.inf, z))
        else:
            new_log_pi = _tsallis_step(q, qv, lam, tau, log_pi)[0]
        v = np.sum(np.where(np.isneginf(new_log_pi), 0.0, np.exp(new_log_pi) * q), axis=1)
        v = v - lam * tsallis_kl(new_log_pi, log_pi, qv) + tau * tsallis_entropy(new_log_pi, qv)
        q_new = mdp.R + mdp.gamma * mdp.expected_next(v)
        _inject_error(err, tr, k + 1, q_new)
        tr.step(k + 1, new_log_pi, q, q_new, _top2_gap(q_new))
        log_pi, q = new_log_pi, q_new
    params = {
        "tsallis_q": qv,
        "kl_coef": lam,
        "entropy_coef": tau,
        "n_iter": K,
        "noise_std": float(noise_std),
        "seed": seed,
    }
    return _result("tsallis_kl_vi", q, v, log_pi, tr, params)


# ---------------------------------------------------------------------------------------------- limits


def munchausen_limit(
    mdp: TabularMDP, *, alpha: float, tau: float, tol: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form limit of error-free M-VI(α < 1, τ) (spec §5, "fixed point"; [MRL] §3).

    With τ' = (1−α)τ, q*_{τ'} the fixed point of q = r + γ P τ' lse(q/τ') and v*_{τ'} = τ' lse(q*_{τ'}/τ'):

        π_∞ = sm(q*_{τ'}/τ'),   q'_∞ = q*_{τ'},   q_∞ = (q*_{τ'} − α v*_{τ'}) / (1 − α)

    Parameters
    ----------
    mdp : TabularMDP
    alpha : float
        α ∈ [0, 1) (for α = 1, q_k → −∞ on suboptimal actions and there is no finite limit).
    tau : float
        τ > 0.
    tol : float
        VI tolerance for q*_{τ'} (spec §9: 1e-12).

    Returns
    -------
    (q_inf, q_soft) : ndarray, ndarray, each shape (S, A)
        The predicted limit q_∞ and q*_{τ'}.
    """
    mdp = _check_mdp(mdp)
    a = check_in_closed_interval("alpha", alpha, 0.0, 1.0)
    if a >= 1.0:
        raise ValueError("alpha: the M-VI limit exists only for alpha < 1")
    t = _check_tau(tau)
    tp = (1.0 - a) * t
    q_soft = np.asarray(soft_value_iteration(mdp, entropy_coef=tp, tol=tol).q)
    v_soft = tp * logsumexp(q_soft / tp)
    return (q_soft - a * v_soft[:, None]) / (1.0 - a), q_soft


def action_gap_ratio(q: np.ndarray, q_ref: np.ndarray, threshold: float = 1e-9) -> np.ndarray:
    """Per-(s, a) ratio δ_q(s,a)/δ_{q_ref}(s,a), δ_q(s,a) = max_b q(s,b) − q(s,a) (spec §5, "action gap").

    Only pairs with δ_{q_ref}(s,a) > ``threshold`` are returned (a flat array); the library reports the
    measured ratio and does not assume 1/(1−α) or (1+α)/(1−α).
    """
    q = as_float_array("q", q, ndim=2)
    q_ref = as_float_array("q_ref", q_ref, ndim=2)
    if q.shape != q_ref.shape:
        raise ValueError(f"q_ref: shape {q_ref.shape} does not match q {q.shape}")
    d = q.max(axis=1, keepdims=True) - q
    d_ref = q_ref.max(axis=1, keepdims=True) - q_ref
    mask = d_ref > threshold
    return d[mask] / d_ref[mask]
