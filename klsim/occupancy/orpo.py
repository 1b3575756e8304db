"""Occupancy-regularized policy optimization (ORPO), tabular and sample-based (spec §3.1 and §5).

Why it works: J is linear in μ, so ∇_θ[J(π_θ, R̃) − λ D(μ_θ)] = ∇_θ J(π_θ, R̃ − λ ∇_μ D(μ_θ)).  On supp μ_b,
∇χ² = 2(μ/μ_b − 1), ∇√χ² = (μ/μ_b − 1)/√χ², ∇KL = log(μ/μ_b) + 1.

* :func:`frank_wolfe` — Frank–Wolfe over K_b with an exact oracle (policy iteration over actions with
  π_b > 0) for χ² and KL; the gap ⟨ν − μ, g⟩ certifies F* − F(μ) ≤ gap (O(1/k)).
* :func:`exact_penalty_orpo` — discriminator-free ORPO: exact μ_k, R' = R̃ − λ∇D(μ_k), then the tabular
  natural-gradient step π ← π e^{η A_{R'}}/Z.
* :func:`discriminator_logits`, :func:`orpo_penalty`, :func:`sample_orpo` — the sample-based algorithm on a
  Gymnasium environment: rollouts, a (tabular-logit) discriminator trained with the class-normalized,
  discount-weighted logistic loss (optimum d* = log(μ_π/μ_b)), penalized rewards, policy step.

Reference: Laidlaw, Singhal, Dragan, ICLR 2025, arXiv:2403.03185, §5 (ORPO, Algorithm 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from klsim._validation import (
    check_choice,
    check_gamma,
    check_int,
    check_nonnegative_scalar,
    check_positive,
)
from klsim.occupancy.measures import _occupancy, advantage
from klsim.occupancy.problem import OccupancyProblem, finalize
from klsim.occupancy.regularized import greedy_policy
from klsim.results import OccupancyResult

__all__ = [
    "divergence_gradient",
    "frank_wolfe",
    "exact_penalty_orpo",
    "discriminator_logits",
    "orpo_penalty",
    "collect_rollouts",
    "sample_orpo",
]


def _objective(prob: OccupancyProblem, mu: np.ndarray, coef: float, divergence: str) -> float:
    m = prob.support
    mb = prob.mu_b[m]
    x = mu[m]
    if divergence == "chi2":
        D = float(np.sum((x - mb) ** 2 / mb))
    else:
        pos = x > 0
        D = float(np.sum(x[pos] * np.log(x[pos] / mb[pos])))
    return float(np.sum(mu * prob.proxy_reward)) - coef * D


def divergence_gradient(prob: OccupancyProblem, mu: np.ndarray, divergence: str) -> np.ndarray:
    """∇_μ D(μ‖μ_b) on the support (0 elsewhere), shape (S, A) (spec §3.1).

    ``"chi2"``: 2(μ/μ_b − 1); ``"sqrt_chi2"``: (μ/μ_b − 1)/√χ² (0 at μ = μ_b); ``"kl"``: log(μ/μ_b) + 1
    (−∞ where μ = 0 on the support).
    """
    check_choice("divergence", divergence, ("chi2", "sqrt_chi2", "kl"))
    m = prob.support
    out = np.zeros_like(prob.mu_b)
    ratio = mu[m] / prob.mu_b[m]
    if divergence == "chi2":
        out[m] = 2.0 * (ratio - 1.0)
    elif divergence == "sqrt_chi2":
        c2 = float(np.sum(prob.mu_b[m] * (ratio - 1.0) ** 2))
        out[m] = (ratio - 1.0) / np.sqrt(c2) if c2 > 0 else 0.0
    else:
        with np.errstate(divide="ignore"):
            out[m] = np.log(ratio) + 1.0
    return out


def frank_wolfe(
    prob: OccupancyProblem,
    coef: float,
    *,
    divergence: str = "chi2",
    n_iter: int = 1000,
    step: str = "harmonic",
    tol: float = 0.0,
) -> OccupancyResult:
    """Frank–Wolfe on max_{μ ∈ K_b} ⟨μ, R̃⟩ − coef·D(μ‖μ_b) with an exact linear oracle (spec §3.1).

    ::

        μ = μ_b
        for k = 0, 1, ...:
            g   = R̃ − coef ∇D(μ)
            ν   = occupancy(greedy(g))        # exact policy iteration over actions with π_b(a|s) > 0
            gap = ⟨ν − μ, g⟩                  # certifies F* − F(μ) ≤ gap
            μ   = μ + η_k (ν − μ)

    Parameters
    ----------
    prob : OccupancyProblem
    coef : float
        λ > 0.
    divergence : {"chi2", "kl"}
        Not √χ² (non-smooth at μ_b).
    n_iter : int
        Maximum iterations.
    step : {"harmonic", "line_search"}
        η_k = 2/(k+2) (χ²) or 2/(k+3) (KL, so μ_b keeps positive weight and ∇KL stays finite); or the exact
        closed-form line search for χ² (η = gap/(2 coef Σ (ν−μ)²/μ_b), clipped to [0, 1]).
    tol : float
        Stop when the gap is ≤ tol.

    Returns
    -------
    OccupancyResult
        ``history["gap"]``, ``history["objective"]`` per iteration (objective at μ_k before the step).
    """
    coef = check_positive("coef", coef)
    check_choice("divergence", divergence, ("chi2", "kl"))
    check_choice("step", step, ("harmonic", "line_search"))
    n_iter = check_int("n_iter", n_iter, 1)
    tol = check_nonnegative_scalar("tol", tol)
    if step == "line_search" and divergence != "chi2":
        raise ValueError("step: 'line_search' is available for divergence='chi2' only")
    mdp = prob.mdp
    mask = prob.base_policy > 0
    S, A = mdp.n_states, mdp.n_actions
    mu = prob.mu_b.copy()
    acts = None
    gaps, objs = [], []
    for k in range(n_iter):
        g = prob.proxy_reward - coef * divergence_gradient(prob, mu, divergence)
        acts, _ = greedy_policy(mdp, np.where(prob.support, g, prob.proxy_reward), mask, init=acts)
        pi = np.zeros((S, A))
        pi[np.arange(S), acts] = 1.0
        nu = _occupancy(mdp, pi, check=False)
        d = nu - mu
        gap = float(np.sum(d[prob.support] * g[prob.support]))
        gaps.append(gap)
        objs.append(_objective(prob, mu, coef, divergence))
        if gap <= tol:
            break
        if step == "line_search":
            curv = 2.0 * coef * float(np.sum(d[prob.support] ** 2 / prob.mu_b[prob.support]))
            eta = 1.0 if curv <= 0 else min(1.0, max(0.0, gap / curv))
        else:
            eta = 2.0 / (k + 2) if divergence == "chi2" else 2.0 / (k + 3)
        mu = mu + eta * d
    res = finalize(
        prob,
        mu,
        regularizer=divergence,
        coef=coef,
        method=f"frank_wolfe_{step}",
        history={"gap": np.asarray(gaps), "objective": np.asarray(objs)},
        diagnostics={"final_gap": gaps[-1], "n_iter": len(gaps)},
    )
    return res


def exact_penalty_orpo(
    prob: OccupancyProblem,
    coef: float,
    *,
    divergence: str = "chi2",
    step_size: float = 0.1,
    n_iter: int = 500,
    averaging: bool = False,
) -> OccupancyResult:
    """Discriminator-free ORPO with exact occupancies (spec §3.1, exact-penalty mode).

    From π_0 = π_b: μ_k = occupancy(π_k); R' = R̃ − coef ∇D(μ_k); π_{k+1} ∝ π_k e^{η A^{π_k}_{R'}}.  A large
    fixed η oscillates; the default is a small η.  ``averaging`` reports the running mean of μ_k instead of
    the last iterate (it stays in K, which is convex).

    Returns
    -------
    OccupancyResult
        ``history["objective"]``, ``history["chi2"]``.
    """
    coef = check_positive("coef", coef)
    check_choice("divergence", divergence, ("chi2", "sqrt_chi2", "kl"))
    eta = check_positive("step_size", step_size)
    n_iter = check_int("n_iter", n_iter, 1)
    mdp = prob.mdp
    pi = prob.base_policy.copy()
    mu_avg = np.zeros_like(pi)
    objs, chis = [], []
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi)
    for k in range(n_iter):
        mu = _occupancy(mdp, pi, check=False)
        mu_avg += (mu - mu_avg) / (k + 1)
        m = prob.support
        chis.append(float(np.sum((mu[m] - prob.mu_b[m]) ** 2 / prob.mu_b[m])))
        D = chis[-1] if divergence == "chi2" else (np.sqrt(chis[-1]) if divergence == "sqrt_chi2" else None)
        if D is None:
            pos = mu[m] > 0
            D = float(np.sum(mu[m][pos] * np.log(mu[m][pos] / prob.mu_b[m][pos])))
        objs.append(float(np.sum(mu * prob.proxy_reward)) - coef * D)
        Rpen = prob.proxy_reward - coef * divergence_gradient(prob, mu, divergence)
        Adv = advantage(mdp, pi, np.where(np.isfinite(Rpen), Rpen, -1e300))
        log_pi = np.where(np.isneginf(log_pi), -np.inf, log_pi + eta * Adv)
        log_pi -= np.max(log_pi, axis=1, keepdims=True)
        pi = np.exp(log_pi)
        pi /= pi.sum(axis=1, keepdims=True)
    out_mu = mu_avg if averaging else _occupancy(mdp, pi)
    return finalize(
        prob,
        out_mu,
        regularizer=divergence,
        coef=coef,
        method="exact_penalty_orpo",
        history={"objective": np.asarray(objs), "chi2": np.asarray(chis)},
        policy=None if averaging else pi,
    )


# ------------------------------------------------------------------------------------- sample-based
def discriminator_logits(
    pi_data: tuple[np.ndarray, np.ndarray, np.ndarray],
    base_data: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_states: int,
    n_actions: int,
    gamma: float,
    *,
    discount_weighting: bool = True,
    pseudo_count: float = 0.0,
    clamp: float = 20.0,
) -> np.ndarray:
    """Tabular state-action discriminator d(s, a), the exact minimizer of the ORPO logistic loss (spec §5).

    Loss: Σ_π w_t softplus(−d)/W_π + Σ_b w_t softplus(d)/W_b with w_t = γ^t (``discount_weighting``; the
    paper's code omits it: ``False``) and class totals W.  With one logit per (s, a) the loss separates, and
    its minimizer is d = log(p_π(s, a)/p_b(s, a)), the log-ratio of the weighted empirical occupancies, whose
    population limit is log(μ_π/μ_b).  ``pseudo_count`` adds that weight to every cell of both classes;
    the result is clamped to ±``clamp``.

    Parameters
    ----------
    pi_data, base_data : (states, actions, times)
        Integer arrays of equal length: visited states, actions and time steps t within the episode.
    """
    gamma = check_gamma(gamma)

    def weighted(data):
        s, a, t = (np.asarray(x, dtype=np.int64) for x in data)
        w = gamma ** t.astype(np.float64) if discount_weighting else np.ones(t.size)
        m = np.zeros((n_states, n_actions))
        np.add.at(m, (s, a), w)
        m += pseudo_count
        tot = m.sum()
        if tot <= 0:
            raise ValueError("pi_data/base_data: no samples")
        return m / tot

    p, q = weighted(pi_data), weighted(base_data)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(p) - np.log(q)
    d = np.where(np.isnan(d), 0.0, d)
    return np.clip(d, -clamp, clamp)


def orpo_penalty(d: np.ndarray, coef: float, divergence: str = "chi2", *, trim: float = 0.01) -> np.ndarray:
    """Per-sample penalty c subtracted from the proxy reward, in klsim λ units (spec §5, step 3).

    * ``"kl"``: c = coef·d;
    * ``"chi2"``: c = 2 coef (e^d − 1)   (the paper code's coefficient is 2·coef);
    * ``"sqrt_chi2"``: c = coef (e^d − 1)/√χ̂²_trim, χ̂²_trim the batch mean of e^d − 1 trimmed ``trim`` per
      tail; if χ̂²_trim ≤ 0, c = coef (e^d − 1).

    d is clamped to ±20 before exponentiating; non-finite d raises (never silently zeroed).
    """
    d = np.asarray(d, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError("d: non-finite discriminator logits")
    coef = check_nonnegative_scalar("coef", coef)
    check_choice("divergence", divergence, ("kl", "chi2", "sqrt_chi2"))
    dc = np.clip(d, -20.0, 20.0)
    if divergence == "kl":
        return coef * dc
    ratio_m1 = np.expm1(dc)
    if divergence == "chi2":
        return 2.0 * coef * ratio_m1
    flat = np.sort(ratio_m1.ravel())
    k = int(np.floor(trim * flat.size))
    core = flat[k : flat.size - k] if flat.size - 2 * k > 0 else flat
    chi = float(core.mean())
    return coef * ratio_m1 / np.sqrt(chi) if chi > 0 else coef * ratio_m1


def _state_of(obs, info) -> int:
    if isinstance(info, dict) and "state_index" in info:
        return int(info["state_index"])
    return int(obs)


def collect_rollouts(
    env: Any, policy: np.ndarray, n_episodes: int, rng: np.random.Generator, max_steps: int = 1000
) -> dict[str, np.ndarray]:
    """Roll out a tabular policy in a Gymnasium env whose state index is ``info["state_index"]`` or ``obs``.

    Returns arrays ``s, a, r, t, episode`` (one entry per step; r is the env's reward).
    """
    out: dict[str, list] = {"s": [], "a": [], "r": [], "t": [], "episode": []}
    for ep in range(n_episodes):
        obs, info = env.reset(seed=int(rng.integers(2**31)))
        s = _state_of(obs, info)
        for t in range(max_steps):
            a = int(rng.choice(policy.shape[1], p=policy[s]))
            obs, r, term, trunc, info = env.step(a)
            for k, v in zip(("s", "a", "r", "t", "episode"), (s, a, r, t, ep)):
                out[k].append(v)
            s = _state_of(obs, info)
            if term or trunc:
                break
    return {k: np.asarray(v) for k, v in out.items()}


def _returns_to_go(r: np.ndarray, ep: np.ndarray, gamma: float) -> np.ndarray:
    G = np.zeros(r.size)
    acc = 0.0
    for i in range(r.size - 1, -1, -1):
        if i == r.size - 1 or ep[i + 1] != ep[i]:
            acc = 0.0
        acc = r[i] + gamma * acc
        G[i] = acc
    return G


def sample_orpo(
    env: Any,
    base_policy: np.ndarray,
    coef: float,
    *,
    divergence: str = "chi2",
    gamma: float = 0.99,
    n_iter: int = 20,
    episodes: int = 20,
    base_episodes: int | None = None,
    step_size: float = 1.0,
    clip: float = 1.0,
    pseudo_count: float = 0.5,
    discount_weighting: bool = True,
    init_policy: np.ndarray | None = None,
    prob: OccupancyProblem | None = None,
    seed: int = 0,
) -> OccupancyResult | dict:
    """Sample-based ORPO on a Gymnasium env with a tabular policy (spec §5; paper Algorithm 1).

    Each iteration: roll out π (the base rollouts are sampled once and cached; ``base_episodes`` defaults to
    ``episodes``, i.e. base_fraction = 0.5), fit the tabular discriminator (:func:`discriminator_logits`),
    set R' = clip(r − c(d), ±clip) with c from :func:`orpo_penalty`, estimate Q by discounted Monte-Carlo
    returns-to-go of R', and take π ← π e^{η (Q̂ − Σ_a π Q̂)}/Z on the visited pairs.

    Parameters
    ----------
    env : gymnasium.Env
        Discrete actions; the state index comes from ``info["state_index"]`` or a ``Discrete`` observation.
    base_policy : ndarray, shape (S, A)
    coef : float
        λ ≥ 0 (0 = unregularized policy gradient on the env reward).
    prob : OccupancyProblem, optional
        If given (same state indexing), the exact J(π_k, R), J(π_k, R̃) and χ² of every iterate are recorded
        and an :class:`OccupancyResult` is returned; otherwise ``{"policy", "history"}``.
    """
    coef = check_nonnegative_scalar("coef", coef)
    check_choice("divergence", divergence, ("kl", "chi2", "sqrt_chi2"))
    gamma = check_gamma(gamma)
    n_iter = check_int("n_iter", n_iter, 1)
    episodes = check_int("episodes", episodes, 1)
    pb = np.asarray(base_policy, dtype=np.float64)
    S, A = pb.shape
    rng = np.random.default_rng(seed)
    base = collect_rollouts(env, pb, base_episodes or episodes, rng)
    base_data = (base["s"], base["a"], base["t"])
    pi = pb.copy() if init_policy is None else np.asarray(init_policy, dtype=np.float64).copy()
    hist: dict[str, list] = {"true_return": [], "proxy_return": [], "chi2": [], "penalty_mean": []}
    for _ in range(n_iter):
        ro = collect_rollouts(env, pi, episodes, rng)
        if coef > 0:
            d = discriminator_logits(
                (ro["s"], ro["a"], ro["t"]),
                base_data,
                S,
                A,
                gamma,
                discount_weighting=discount_weighting,
                pseudo_count=pseudo_count,
            )
            c = orpo_penalty(d[ro["s"], ro["a"]], coef, divergence)
        else:
            c = np.zeros(ro["r"].size)
        r_pen = np.clip(ro["r"] - c, -clip, clip)
        G = _returns_to_go(r_pen, ro["episode"], gamma)
        Qsum = np.zeros((S, A))
        cnt = np.zeros((S, A))
        np.add.at(Qsum, (ro["s"], ro["a"]), G)
        np.add.at(cnt, (ro["s"], ro["a"]), 1.0)
        seen = cnt > 0
        Q = np.where(seen, Qsum / np.maximum(cnt, 1.0), 0.0)
        w = np.where(seen, pi, 0.0)
        ws = w.sum(axis=1, keepdims=True)
        base_line = np.where(ws > 0, (w * Q).sum(axis=1, keepdims=True) / np.where(ws > 0, ws, 1.0), 0.0)
        Adv = np.where(seen, Q - base_line, 0.0)
        with np.errstate(divide="ignore"):
            log_pi = np.log(pi) + step_size * Adv
        log_pi -= log_pi.max(axis=1, keepdims=True)
        pi = np.exp(log_pi)
        pi /= pi.sum(axis=1, keepdims=True)
        hist["penalty_mean"].append(float(np.mean(c)))
        if prob is not None:
            mu = _occupancy(prob.mdp, pi)
            hist["true_return"].append(float(np.sum(mu * prob.true_reward)))
            hist["proxy_return"].append(float(np.sum(mu * prob.proxy_reward)))
            m = prob.support
            off = bool(np.any((mu > 0) & ~m))
            hist["chi2"].append(
                float("inf") if off else float(np.sum((mu[m] - prob.mu_b[m]) ** 2 / prob.mu_b[m]))
            )
    history = {k: np.asarray(v) for k, v in hist.items() if v}
    if prob is None:
        return {"policy": pi, "history": history}
    return finalize(
        prob,
        _occupancy(prob.mdp, pi),
        regularizer="chi2",
        coef=coef,
        method="sample_orpo",
        history=history,
        policy=pi,
        diagnostics={"divergence": divergence},
    )
