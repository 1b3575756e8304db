"""Exact best-of-N and KL-RL laws on reward levels (spec ``best-of-n-vs-kl-rl.md`` §1–§3, §9).

Two layers:

* **plain level functions** on arrays (``bon_level_log_probs``, ``tilt_level_log_probs``, ``log_partition``,
  ``solve_kl_coef``, ``bond_reward_from_cdf``, ``beirami_kl_estimate``, ``win_rate_levels``) that
  ``klsim_llm`` reuses on empirical levels;
* **distribution functions** taking a :class:`FiniteDist` or a :class:`MemorylessLM` (whose levels are the
  values of the sequence reward S_n) and N as ``n_samples=`` or ``log_n_samples=``.

Both laws are "a function of the reward level × p" (BoN with the uniform tie rule, §3.1; the tilt), so every
divergence between them reduces to an O(K) sum over levels.  References: Beirami et al. (2024),
arXiv:2401.01879 (Thm 1, Lemma 1, eq. for the estimator); Yang et al. (2024), arXiv:2404.01730 (§3); Sessa et
al. (2024, BOND), arXiv:2407.14622 (Thm 1); Korbak et al. (2022), arXiv:2205.11275 (§3).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from klsim._kernels.bon import bon_kl_levels, bon_level_law, kl_from_logs_1d, tilt_kl_level
from klsim._validation import as_float_array, check_finite, check_nonnegative_scalar, check_positive
from klsim.best_of_n.data import (
    FiniteDist,
    Levels,
    MemorylessLM,
    as_levels,
    parse_log_n,
    token_levels,
)
from klsim.divergences import logsumexp
from klsim.results import BoNResult

__all__ = [
    "bon_level_log_probs",
    "bon_level_law_full",
    "log_partition",
    "tilt_level_log_probs",
    "tilt_moments",
    "tilt_kl",
    "solve_kl_coef",
    "win_rate_levels",
    "bond_reward_from_cdf",
    "beirami_kl_estimate",
    "bon_kl_formula",
    "bon_distribution",
    "bon_kl",
    "bon_kl_bound",
    "bon_expected_reward",
    "bon_win_rate",
    "bon_expected_estimator",
    "bon_renyi",
    "bond_reward",
    "sample_bon",
    "kl_rl_tilt",
    "bon_kl_to_tilt",
    "log_tilt_kl_to_bon",
    "tilt_kl_identity",
    "win_rate",
    "korbak_elbo",
]

_EPS4 = 4.0 * np.finfo(np.float64).eps


# ----------------------------------------------------------------------------------------------------------
# plain level functions
# ----------------------------------------------------------------------------------------------------------


def _check_log_mass(log_mass) -> np.ndarray:
    lm = as_float_array("level_log_mass", log_mass, ndim=1)
    if lm.size == 0:
        raise ValueError("level_log_mass: empty")
    if np.isnan(lm).any() or np.isposinf(lm).any():
        i = int(np.flatnonzero(np.isnan(lm) | np.isposinf(lm))[0])
        raise ValueError(f"level_log_mass: NaN or +inf at {i}")
    tot = logsumexp(lm)
    if not abs(tot) <= 1e-10:
        raise ValueError(f"level_log_mass: masses sum to exp({tot!r}) (must be 1 within 1e-10)")
    return lm - tot


def bon_level_law_full(level_log_mass: np.ndarray, log_n: float) -> dict[str, np.ndarray]:
    """All arrays of the §3.2 algorithm: ln F, ln T, ln A, ln Q and ℓ = ln(−ln Q), shape (K,) each.

    ``level_log_mass`` must be normalized, finite and sorted by increasing reward; ``log_n`` = ln N ≥ 0.
    """
    K = level_log_mass.shape[0]
    bufs = {name: np.empty(K) for name in ("log_cdf", "log_tail", "log_a", "log_q", "ell")}
    bon_level_law(
        np.ascontiguousarray(level_log_mass, dtype=np.float64),
        float(log_n),
        bufs["log_cdf"],
        bufs["log_tail"],
        bufs["log_a"],
        bufs["log_q"],
        bufs["ell"],
    )
    if log_n == 0.0:  # N = 1: the law is p itself, exactly
        bufs["log_q"][:] = level_log_mass
        with np.errstate(divide="ignore"):
            bufs["ell"][:] = np.log(-level_log_mass)
    return bufs


def bon_level_log_probs(
    level_log_mass: np.ndarray, *, n_samples: float | None = None, log_n_samples: float | None = None
) -> np.ndarray:
    """ln Q_k, Q_k = F_k^N − F_{k−1}^N: the best-of-N law of the reward levels (spec §3.1–3.2).

    Parameters
    ----------
    level_log_mass : ndarray, shape (K,)
        ln P_k of the levels, sorted by increasing reward (normalized within 1e-10).
    n_samples, log_n_samples : float
        N ≥ 1 (real allowed) or ln N ≥ 0; stable for ln N up to 1e4 (N is never formed).

    Returns
    -------
    ndarray, shape (K,)
        ln Q_k (−inf only where Q_k underflows below e^{−1e308}; ℓ_k of :func:`bon_level_law_full` stays
        finite there).
    """
    lm = _check_log_mass(level_log_mass)
    return bon_level_law_full(lm, parse_log_n(n_samples, log_n_samples))["log_q"]


def log_partition(values: np.ndarray, level_log_mass: np.ndarray, theta: float) -> float:
    """K(θ) = ln Σ_k P_k e^{θ v_k}, max-shifted (spec §1)."""
    return float(logsumexp(level_log_mass + theta * values))


def _tilt_parts(
    values: np.ndarray, log_mass: np.ndarray, theta: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """(ln Φ, ln Φ − ln P computed without ln P, K(θ)) with the shift v_ref = v_K (θ ≥ 0) or v_1 (θ < 0)."""
    vref = values[-1] if theta >= 0 else values[0]
    d = theta * (values - vref)
    c = float(logsumexp(log_mass + d))
    rel = d - c
    return log_mass + rel, rel, theta * vref + c


def top_log_mass(values: np.ndarray, level_log_mass: np.ndarray) -> float:
    """ln P(r = max r): the top-level log-mass (summed over levels a tie-break key split; spec §2 Δ_max)."""
    return float(logsumexp(level_log_mass[values == values[-1]]))


def tilt_level_log_probs(values: np.ndarray, level_log_mass: np.ndarray, kl_coef: float) -> np.ndarray:
    """ln Φ_k = ln P_k + λ v_k − K(λ) (spec §1); λ = +inf gives p conditioned on the top level (§2)."""
    if kl_coef == np.inf:
        top = values == values[-1]  # several levels when a tie-break key split the top reward
        out = np.full(values.shape[0], -np.inf)
        out[top] = level_log_mass[top] - logsumexp(level_log_mass[top])
        return out
    return _tilt_parts(values, level_log_mass, float(kl_coef))[0]


def tilt_moments(values: np.ndarray, level_log_mass: np.ndarray, theta: float) -> tuple[float, float, float]:
    """(K'(θ), K''(θ), K'''(θ)) = mean, variance and third central moment of r under φ_θ (spec §1, §5)."""
    lphi = tilt_level_log_probs(values, level_log_mass, theta)
    w = np.exp(lphi)
    m1 = float(np.dot(w, values))
    c = values - m1
    return m1, float(np.dot(w, c * c)), float(np.dot(w, c * c * c))


def tilt_kl(values: np.ndarray, level_log_mass: np.ndarray, theta: float) -> float:
    """D(φ_θ‖p) = Σ_k Φ_k[θ(v_k − v_ref) − (K − θ v_ref)], cancellation-free (spec §1); θ = inf: ln 1/P_K."""
    if theta == np.inf:
        return -top_log_mass(values, level_log_mass)
    return float(
        tilt_kl_level(
            np.ascontiguousarray(values, dtype=np.float64),
            np.ascontiguousarray(level_log_mass, dtype=np.float64),
            float(theta),
        )
    )


def solve_kl_coef(values: np.ndarray, level_log_mass: np.ndarray, kl_budget: float) -> float:
    """λ ≥ 0 with D(φ_λ‖p) = Δ (spec §2, ``solve_lambda``).

    Δ = 0 or a constant reward gives 0; Δ ≥ Δ_max = ln(1/P_K) gives +inf (p conditioned on the top level);
    otherwise the bracket [0, θ_hi] is found by doubling from 1 and the root by Brent
    (xtol = 1e-14·max(1, θ)); D is increasing in θ ≥ 0 (derivative θK'').
    """
    delta = check_nonnegative_scalar("kl_budget", kl_budget)
    if delta == 0.0 or values.shape[0] == 1:
        return 0.0
    if delta >= -top_log_mass(values, level_log_mass):
        return np.inf

    v = np.ascontiguousarray(values, dtype=np.float64)
    lm = np.ascontiguousarray(level_log_mass, dtype=np.float64)

    def f(t: float) -> float:
        return tilt_kl_level(v, lm, t) - delta

    lo, hi = 0.0, 1.0
    while f(hi) < 0.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e300:  # pragma: no cover - Δ within rounding of Δ_max
            return np.inf
    return float(brentq(f, lo, hi, xtol=1e-14 * max(1.0, lo), rtol=_EPS4, maxiter=500))


def win_rate_levels(log_probs_a: np.ndarray, log_probs_b: np.ndarray) -> float:
    """W(a ≻ b) = Σ_k a_k (B_{k−1} + ½ b_k) on common sorted levels; ties count ½ (spec §3.7)."""
    a = np.exp(np.asarray(log_probs_a, dtype=np.float64))
    b = np.exp(np.asarray(log_probs_b, dtype=np.float64))
    below = np.concatenate(([0.0], np.cumsum(b)[:-1]))
    return float(np.dot(a, below + 0.5 * b))


def bond_reward_from_cdf(
    log_cdf: np.ndarray,
    log_cdf_strict: np.ndarray,
    *,
    n_samples: float | None = None,
    log_n_samples: float | None = None,
) -> np.ndarray:
    """BOND reward r_BOND = (1/(N−1)) ln[(F^N − F_<^N)/(F − F_<)] (spec §3.4; Sessa et al. Thm 1).

    Parameters
    ----------
    log_cdf, log_cdf_strict : ndarray, shape (M,)
        ln p_≤(r(y)) and ln p_<(r(y)) (−inf allowed for the strict CDF); empirical CDFs are fine.
    n_samples, log_n_samples : float
        N > 1.

    Returns
    -------
    ndarray, shape (M,)
        r_BOND; with β = 1/(N−1), p·e^{(N−1) r_BOND} is the BoN law and its partition function is 1.
        A zero-mass step (F = F_<) gives the limit ln F + ln N/(N−1).
    """
    from klsim._kernels.bon import h_log1mexpexp

    ln = parse_log_n(n_samples, log_n_samples)
    if ln == 0.0:
        raise ValueError("n_samples: BOND needs N > 1 (β = 1/(N−1))")
    lf = as_float_array("log_cdf", log_cdf, ndim=1)
    ls = as_float_array("log_cdf_strict", log_cdf_strict, ndim=1)
    if lf.shape != ls.shape:
        raise ValueError(f"log_cdf_strict: expected shape {lf.shape}, got {ls.shape}")
    check_finite("log_cdf", lf)
    if (lf > 0).any() or (ls > lf).any():
        raise ValueError("log_cdf: must satisfy log_cdf_strict <= log_cdf <= 0")
    nm1 = math.expm1(ln)
    out = np.empty_like(lf)
    for i in range(lf.size):
        d = lf[i] - ls[i]
        if d == 0.0:
            out[i] = lf[i] + ln / nm1
            continue
        ld = math.log(d) if d < np.inf else np.inf
        out[i] = lf[i] + (h_log1mexpexp(ln + ld) - h_log1mexpexp(ld)) / nm1
    return out


def beirami_kl_estimate(
    eps: np.ndarray | float, *, n_samples: float | None = None, log_n_samples: float | None = None
) -> np.ndarray:
    """Beirami et al.'s KL estimator D̂(ε) for a selected outcome of mass ε (spec §3.6).

    D̂(ε) = (1−ε)^N [ln N + (N−1) ln(1−ε) − (N−1)/N] + (1 − (1−ε)^N) ln[(1 − (1−ε)^N)/ε]: the exact BoN KL of
    one top atom of mass ε plus an atomless remainder.  D̂(1) = 0 and D̂(0+) = ln N − (N−1)/N.

    Parameters
    ----------
    eps : float or ndarray
        ε ∈ (0, 1].
    """
    ln = parse_log_n(n_samples, log_n_samples)
    e = np.atleast_1d(as_float_array("eps", eps))
    if not np.all((e > 0) & (e <= 1)):
        i = int(np.flatnonzero(~((e > 0) & (e <= 1)))[0])
        raise ValueError(f"eps: must lie in (0, 1], got {e[i]!r} at {i}")
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        l1m = np.log1p(-e)  # ln(1−ε) ≤ 0
        log_a = -np.exp(ln + np.log(-l1m))  # N ln(1−ε)
        log_a = np.where(l1m == 0.0, 0.0, log_a)
        a = np.exp(log_a)
        frac = -math.expm1(-ln)  # (N−1)/N
        first = np.where(a > 0, a * (ln + (log_a - l1m) - frac), 0.0)
        one_m_a = -np.expm1(log_a)
        second = np.where(one_m_a > 0, one_m_a * (np.log(one_m_a) - np.log(e)), 0.0)
    out = first + second
    return out if np.ndim(eps) else out[:1]


def bon_kl_formula(log_n: float) -> float:
    """ln N − (N−1)/N = ln N + expm1(−ln N) (Stiennon et al.; exact only for atomless p, spec §3.5)."""
    return float(log_n + math.expm1(-log_n))


# ----------------------------------------------------------------------------------------------------------
# distribution functions
# ----------------------------------------------------------------------------------------------------------


def _bon_core(dist, n_samples, log_n_samples) -> tuple[Levels, float, dict[str, np.ndarray]]:
    lev = as_levels(dist)
    ln = parse_log_n(n_samples, log_n_samples)
    return lev, ln, bon_level_law_full(lev.log_mass, ln)


def _bon_reward_from_tail(values: np.ndarray, log_a: np.ndarray) -> float:
    """E r = v_K − Σ_{k<K} (v_{k+1} − v_k) e^{−A_k} (positive terms, spec §3.3)."""
    if values.shape[0] == 1:
        return float(values[0])
    with np.errstate(over="ignore"):
        a = np.exp(log_a[:-1])
    return float(values[-1] - np.dot(np.diff(values), np.exp(-a)))


def _outcome_law(dist, level_log_probs: np.ndarray) -> np.ndarray:
    if isinstance(dist, FiniteDist):
        return dist.outcome_log_probs(level_log_probs)
    return level_log_probs


def _mid_cdf(lev: Levels) -> np.ndarray:
    p = lev.mass
    return np.concatenate(([0.0], np.cumsum(p)[:-1])) + 0.5 * p


def bon_distribution(
    dist: FiniteDist | MemorylessLM, *, n_samples: float | None = None, log_n_samples: float | None = None
) -> BoNResult:
    """Exact best-of-N law π_N(y) = p(y) Q_k / P_k with uniform tie-breaking (spec §3.1–3.3).

    Parameters
    ----------
    dist : FiniteDist or MemorylessLM
        For a memoryless LM the law is returned on the levels of S_n (``log_probs`` = ``level_log_probs``).
    n_samples, log_n_samples : float
        N ≥ 1 (real N: the law of Q(U^{1/N})) or ln N ≥ 0.

    Returns
    -------
    BoNResult
        ``log_probs`` (outcomes for a FiniteDist), ``kl`` = D(π_N‖p), ``expected_reward``, ``win_rate`` vs p,
        and ``details`` with ``log_cdf``, ``log_tail``, ``log_a``, ``ell`` (ℓ_k = ln(−ln Q_k)) and
        ``kl_bound`` = ln N − (N−1)/N.
    """
    lev, ln, law = _bon_core(dist, n_samples, log_n_samples)
    lq = law["log_q"]
    kl = max(0.0, kl_from_logs_1d(lq, lev.log_mass))
    er = _bon_reward_from_tail(lev.values, law["log_a"])
    wr = float(np.dot(np.exp(lq), _mid_cdf(lev)))
    details = {k: law[k] for k in ("log_cdf", "log_tail", "log_a", "ell")}
    details["kl_bound"] = bon_kl_formula(ln)
    return BoNResult(
        log_probs=_outcome_law(dist, lq),
        log_n_samples=ln,
        kl=kl,
        expected_reward=er,
        details=details,
        kind="bon",
        level_values=lev.values,
        level_log_probs=lq,
        win_rate=wr,
    )


def bon_kl(
    dist: FiniteDist | MemorylessLM, *, n_samples: float | None = None, log_n_samples: float | None = None
) -> float:
    """Exact D(π_N‖p) = Σ_k Q_k (ln Q_k − ln P_k) (spec §3.3), O(K) after the levels are known."""
    lev = as_levels(dist)
    ln = parse_log_n(n_samples, log_n_samples)
    if ln == 0.0:
        return 0.0
    return max(0.0, bon_kl_levels(lev.log_mass, ln, np.empty(lev.n_levels)))


def bon_kl_bound(
    dist: FiniteDist | MemorylessLM | None = None,
    *,
    n_samples: float | None = None,
    log_n_samples: float | None = None,
) -> float:
    """ln N − (N−1)/N: an upper bound on D(π_N‖p), tight iff N = 1 or no level carries mass (spec §3.5).

    ``dist`` is accepted for a uniform signature and ignored (the bound does not depend on p).
    """
    if dist is not None and not isinstance(dist, (FiniteDist, MemorylessLM)):
        raise ValueError(f"dist: expected FiniteDist or MemorylessLM, got {type(dist).__name__}")
    return bon_kl_formula(parse_log_n(n_samples, log_n_samples))


def bon_expected_reward(
    dist: FiniteDist | MemorylessLM, *, n_samples: float | None = None, log_n_samples: float | None = None
) -> float:
    """E_{π_N}[r] = v_K − Σ_{k<K}(v_{k+1} − v_k) F_k^N (spec §3.3); for an LM, E[S_n]."""
    lev, _, law = _bon_core(dist, n_samples, log_n_samples)
    return _bon_reward_from_tail(lev.values, law["log_a"])


def bon_win_rate(
    dist: FiniteDist | MemorylessLM, *, n_samples: float | None = None, log_n_samples: float | None = None
) -> float:
    """W(π_N ≻ p) = Σ_k Q_k C_k with C_k = F_{k−1} + P_k/2 (ties ½, spec §3.7); ≤ N/(N+1)."""
    lev, _, law = _bon_core(dist, n_samples, log_n_samples)
    return float(np.dot(np.exp(law["log_q"]), _mid_cdf(lev)))


def bon_renyi(
    dist: FiniteDist | MemorylessLM,
    alpha: float,
    *,
    n_samples: float | None = None,
    log_n_samples: float | None = None,
) -> float:
    """D_α(π_N‖p) = (1/(α−1)) ln Σ_k Q_k^α P_k^{1−α} on levels (α > 0, α ≠ 1; spec §3.3, §6)."""
    a = check_positive("alpha", alpha)
    if a == 1.0:
        return bon_kl(dist, n_samples=n_samples, log_n_samples=log_n_samples)
    lev, _, law = _bon_core(dist, n_samples, log_n_samples)
    return float(logsumexp(a * law["log_q"] + (1.0 - a) * lev.log_mass) / (a - 1.0))


def bon_expected_estimator(
    dist: FiniteDist, *, n_samples: float | None = None, log_n_samples: float | None = None
) -> float:
    """Exact E_{y∼π_N}[D̂(p(y))] of Beirami's estimator (spec §3.6); a FiniteDist only."""
    if not isinstance(dist, FiniteDist):
        raise ValueError("dist: the estimator needs outcome masses p(y); pass a FiniteDist")
    res = bon_distribution(dist, n_samples=n_samples, log_n_samples=log_n_samples)
    pos = dist.probs > 0
    dh = beirami_kl_estimate(dist.probs[pos], log_n_samples=res.log_n_samples)
    return float(np.dot(np.exp(res.log_probs[pos]), dh))


def bond_reward(
    dist: FiniteDist | MemorylessLM, *, n_samples: float | None = None, log_n_samples: float | None = None
) -> np.ndarray:
    """r_BOND per outcome (per level for an LM): (1/(N−1)) ln(Q_k/P_k) (spec §3.4), N > 1."""
    lev, ln, law = _bon_core(dist, n_samples, log_n_samples)
    if ln == 0.0:
        raise ValueError("n_samples: BOND needs N > 1 (β = 1/(N−1))")
    r_lev = (law["log_q"] - lev.log_mass) / math.expm1(ln)
    if isinstance(dist, FiniteDist):
        out = np.full(dist.n_outcomes, np.nan)
        ok = lev.outcome_level >= 0
        out[ok] = r_lev[lev.outcome_level[ok]]
        return out
    return r_lev


def sample_bon(
    dist: FiniteDist | MemorylessLM,
    size: int,
    rng: np.random.Generator,
    *,
    n_samples: float | None = None,
    log_n_samples: float | None = None,
) -> np.ndarray:
    """Draw ``size`` best-of-N samples as Q(U^{1/N}) (spec §3.1): outcome indices (levels for an LM).

    The level is found from ln U / N against ln F_k; the outcome inside a level is drawn ∝ p.
    """
    lev, ln, law = _bon_core(dist, n_samples, log_n_samples)
    u = rng.random(int(size))
    log_u = np.log(u) * math.exp(-ln)
    k = np.searchsorted(law["log_cdf"], log_u, side="left")
    k = np.minimum(k, lev.n_levels - 1)
    if not isinstance(dist, FiniteDist):
        return k
    # inside level k, pick the outcome at cumulative position F_{k−1} + V·P_k of the level-sorted outcomes
    ok = np.flatnonzero(lev.outcome_level >= 0)
    order = ok[np.argsort(lev.outcome_level[ok], kind="stable")]
    cum = np.cumsum(dist.probs[order])
    level_start = np.concatenate(([0.0], np.cumsum(lev.mass)[:-1]))
    target = level_start[k] + rng.random(k.size) * lev.mass[k]
    pos = np.minimum(np.searchsorted(cum, target, side="right"), order.size - 1)
    # keep the draw inside its level even where rounding of the cumsum crosses a boundary
    first = np.searchsorted(lev.outcome_level[order], k, side="left")
    last = np.searchsorted(lev.outcome_level[order], k, side="right") - 1
    return order[np.clip(pos, first, last)]


def _tilt_on_levels(dist, kl_budget: float | None, kl_coef: float | None) -> tuple[Levels, float, np.ndarray]:
    """(levels, λ, ln Φ on those levels) for a FiniteDist or an LM (per-token λ by tensorization, §4)."""
    lev = as_levels(dist)
    tok, n = token_levels(dist)
    if (kl_budget is None) == (kl_coef is None):
        raise ValueError("kl_budget: give exactly one of kl_budget= or kl_coef=")
    if kl_coef is None:
        delta = check_nonnegative_scalar("kl_budget", kl_budget)
        lam = solve_kl_coef(tok.values, tok.log_mass, delta / n)
    else:
        lam = float(kl_coef)
        if not (lam >= 0):
            raise ValueError(f"kl_coef: must be >= 0 (or inf), got {kl_coef!r}")
    if lam == np.inf:
        return lev, lam, tilt_level_log_probs(lev.values, lev.log_mass, np.inf)
    lphi = _tilt_parts(lev.values, lev.log_mass, lam)[0]
    return lev, lam, lphi


def kl_rl_tilt(
    dist: FiniteDist | MemorylessLM, kl_budget: float | None = None, *, kl_coef: float | None = None
) -> BoNResult:
    """The KL-constrained RL optimum φ_λ ∝ p e^{λr} with D(φ_λ‖p) = Δ (spec §2).

    Parameters
    ----------
    dist : FiniteDist or MemorylessLM
        For an LM, Δ is the sequence budget nδ and λ = λ(δ) per token (tensorization, §4); the law is
        returned on the levels of S_n.
    kl_budget : float
        Δ ≥ 0.  Δ ≥ ln(1/P_K) (top-level mass) returns λ = inf and p conditioned on the top level.
    kl_coef : float, optional
        Give λ directly instead of Δ.

    Returns
    -------
    BoNResult
        ``kind="tilt"``, ``kl_coef`` = λ, ``kl`` = D(φ‖p), ``expected_reward`` = E_φ r, ``win_rate`` vs p,
        ``details["log_partition"]`` = K(λ) of the (sequence) levels, ``details["var"]`` = Var_φ r.
    """
    lev, lam, lphi = _tilt_on_levels(dist, kl_budget, kl_coef)
    if lam == np.inf:
        kl = -top_log_mass(lev.values, lev.log_mass)
        logz = np.inf
    else:
        kl = tilt_kl(lev.values, lev.log_mass, lam)
        logz = log_partition(lev.values, lev.log_mass, lam)
    w = np.exp(lphi)
    er = float(np.dot(w, lev.values))
    details = {"log_partition": logz, "var": float(np.dot(w, (lev.values - er) ** 2))}
    if isinstance(dist, MemorylessLM):
        tok = dist.token_dist
        details["token_log_probs"] = tok.outcome_log_probs(
            tilt_level_log_probs(tok.levels.values, tok.levels.log_mass, lam)
        )
    return BoNResult(
        log_probs=_outcome_law(dist, lphi),
        log_n_samples=float("nan"),
        kl=kl,
        expected_reward=er,
        details=details,
        kind="tilt",
        kl_coef=lam,
        level_values=lev.values,
        level_log_probs=lphi,
        win_rate=float(np.dot(w, _mid_cdf(lev))),
    )


def bon_kl_to_tilt(
    dist: FiniteDist | MemorylessLM,
    kl_budget: float | None = None,
    *,
    kl_coef: float | None = None,
    n_samples: float | None = None,
    log_n_samples: float | None = None,
) -> float:
    """Exact D(π_N‖φ_λ) = Σ_k Q_k (ln Q_k − ln Φ_k) (spec §3.3); +inf when λ = inf and BoN leaves the top."""
    lev, _, lphi = _tilt_on_levels(dist, kl_budget, kl_coef)
    law = bon_level_law_full(lev.log_mass, parse_log_n(n_samples, log_n_samples))
    return max(0.0, kl_from_logs_1d(law["log_q"], lphi))


def log_tilt_kl_to_bon(
    dist: FiniteDist | MemorylessLM,
    kl_budget: float | None = None,
    *,
    kl_coef: float | None = None,
    n_samples: float | None = None,
    log_n_samples: float | None = None,
) -> float:
    """ln D(φ_λ‖π_N), with D = Σ Φ_k ln Φ_k + exp(logsumexp(ln Φ_k + ℓ_k)) (spec §3.3, reverse KL).

    It grows exponentially in n for memoryless LMs (spec §4), hence the log.
    """
    lev, _, lphi = _tilt_on_levels(dist, kl_budget, kl_coef)
    law = bon_level_law_full(lev.log_mass, parse_log_n(n_samples, log_n_samples))
    ok = lphi > -np.inf
    neg_ent = float(np.dot(np.exp(lphi[ok]), lphi[ok]))
    l2 = float(logsumexp(lphi[ok] + law["ell"][ok]))
    if l2 > 30.0:
        return l2 + math.log1p(neg_ent * math.exp(-l2))
    val = math.exp(l2) + neg_ent
    return math.log(val) if val > 0 else -np.inf


def _check_policy(dist, log_probs) -> tuple[Levels, np.ndarray]:
    """Level law of a policy given on outcomes (FiniteDist) or on levels (LM)."""
    lev = as_levels(dist)
    if isinstance(dist, FiniteDist):
        lq = dist.level_log_probs(log_probs)
    else:
        lq = as_float_array("log_probs", log_probs, ndim=1)
        if lq.shape != lev.values.shape:
            raise ValueError(f"log_probs: expected shape {lev.values.shape}, got {lq.shape}")
    tot = logsumexp(lq)
    if not abs(tot) <= 1e-10:
        raise ValueError(f"log_probs: sums to exp({tot!r}) (must be 1 within 1e-10)")
    return lev, lq


def _kl_outcomes(log_probs: np.ndarray, log_ref: np.ndarray) -> float:
    return max(0.0, kl_from_logs_1d(np.ascontiguousarray(log_probs), np.ascontiguousarray(log_ref)))


def tilt_kl_identity(
    dist: FiniteDist | MemorylessLM, log_probs: np.ndarray, kl_budget: float
) -> tuple[float, float]:
    """Both sides of D(π‖φ_λ) = D(π‖p) − Δ + λ(E_φ r − E_π r) (spec §2, exact for finite λ).

    Parameters
    ----------
    log_probs : ndarray
        ln π on the outcomes (FiniteDist) or on the levels of S_n (LM).

    Returns
    -------
    (lhs, rhs) : tuple of float
        lhs = D(π‖φ) computed directly; rhs from the identity.  For λ = inf, rhs = D(π‖p) − Δ_max when π
        lives on the top level, +inf otherwise.
    """
    tilt = kl_rl_tilt(dist, kl_budget)
    _check_policy(dist, log_probs)
    lp = np.asarray(log_probs, dtype=np.float64)
    if isinstance(dist, FiniteDist):
        with np.errstate(divide="ignore"):
            ref = np.log(dist.probs)
        r = dist.rewards
    else:
        ref = as_levels(dist).log_mass
        r = as_levels(dist).values
    lhs = _kl_outcomes(lp, tilt.log_probs)
    d_pi = _kl_outcomes(lp, ref)
    e_pi = float(np.dot(np.exp(lp), r))
    lam = tilt.kl_coef
    if lam == np.inf:
        return lhs, (d_pi - tilt.kl if np.isfinite(lhs) else np.inf)
    return lhs, d_pi - tilt.kl + lam * (tilt.expected_reward - e_pi)


def win_rate(
    dist: FiniteDist | MemorylessLM, log_probs: np.ndarray, log_probs_ref: np.ndarray | None = None
) -> float:
    """W(π ≻ π') = P(r(Y) > r(Y')) + ½ P(r(Y) = r(Y')) (spec §3.7); π' defaults to p.

    ``log_probs`` are on outcomes (FiniteDist) or on the levels of S_n (LM).
    """
    lev, la = _check_policy(dist, log_probs)
    lb = lev.log_mass if log_probs_ref is None else _check_policy(dist, log_probs_ref)[1]
    return win_rate_levels(la, lb)


def korbak_elbo(dist: FiniteDist, log_probs: np.ndarray, beta: float) -> dict[str, float]:
    """Korbak et al.'s identity J(q) = β ln Z − β D(q‖π*) for J(q) = E_q r − β D(q‖π0) (spec §9).

    π* = π0 e^{r/β}/Z, Z = Σ π0 e^{r/β}; so ln Z ≥ J/β (the ELBO) with gap D(q‖π*).

    Returns
    -------
    dict
        ``objective`` J(q), ``log_partition`` ln Z, ``kl_to_posterior`` D(q‖π*), ``elbo`` J/β.
    """
    if not isinstance(dist, FiniteDist):
        raise ValueError("dist: korbak_elbo needs a FiniteDist")
    b = check_positive("beta", beta)
    _check_policy(dist, log_probs)
    lq = np.asarray(log_probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        l0 = np.log(dist.probs)
    z = l0 + dist.rewards / b
    log_z = float(logsumexp(z))
    lstar = z - log_z
    q = np.exp(lq)
    j = float(np.dot(q, dist.rewards)) - b * _kl_outcomes(lq, l0)
    return {
        "objective": j,
        "log_partition": log_z,
        "kl_to_posterior": _kl_outcomes(lq, lstar),
        "elbo": j / b,
    }
