"""Data containers of the best-of-N family: :class:`FiniteDist`, :class:`MemorylessLM`, reward levels.

Every computation of :mod:`klsim.best_of_n` runs on *reward levels* (spec ``best-of-n-vs-kl-rl.md`` §1):
the distinct rewards v_1 < … < v_K with log-masses ln P_k.  A :class:`FiniteDist` merges equal rewards
(exactly by default, or within ``tie_tol``); a :class:`MemorylessLM` turns into the law of its sequence
reward S_n = Σ_i r(y_i) (spec §4), computed by a log-space lattice DP or by type classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from klsim._kernels.bon import composition_types, group_logsumexp, lattice_log_law
from klsim._validation import (
    as_float_array,
    check_distribution,
    check_finite,
    check_int,
    check_nonnegative_scalar,
)
from klsim.divergences import logsumexp

__all__ = [
    "Levels",
    "FiniteDist",
    "MemorylessLM",
    "as_levels",
    "token_levels",
    "merge_levels",
    "sequence_reward_law",
    "lattice_span",
    "parse_log_n",
]

#: Largest number of type classes :func:`sequence_reward_law` enumerates before refusing.
MAX_TYPE_CLASSES = 20_000_000


@dataclass(frozen=True)
class Levels:
    """Distinct reward levels v_1 < … < v_K with normalized log-masses ln P_k (internal currency).

    Attributes
    ----------
    values : ndarray, shape (K,)
        Strictly increasing rewards.
    log_mass : ndarray, shape (K,)
        ln P_k, normalized so that logsumexp = 0; every entry finite.
    outcome_level : ndarray of int64, shape (M,) or None
        For a :class:`FiniteDist`, the level of each outcome (−1 for outcomes of probability 0).
    tie_broken : bool
        True when a secondary tie-break key split equal rewards into ordered levels (values then only
        non-decreasing).
    """

    values: np.ndarray
    log_mass: np.ndarray
    outcome_level: np.ndarray | None = None
    tie_broken: bool = False

    def __post_init__(self) -> None:
        v = as_float_array("values", self.values, ndim=1)
        lm = as_float_array("log_mass", self.log_mass, ndim=1)
        if v.size == 0 or lm.shape != v.shape:
            raise ValueError(f"log_mass: expected a non-empty shape {v.shape} like values, got {lm.shape}")
        check_finite("values", v)
        check_finite("log_mass", lm)
        if v.size > 1 and not (np.all(np.diff(v) >= 0) if self.tie_broken else np.all(np.diff(v) > 0)):
            raise ValueError(
                f"values: must be strictly increasing (first violation at {int(np.argmin(np.diff(v) > 0)) + 1})"
            )
        tot = float(logsumexp(lm))
        if not abs(tot) <= 1e-10:
            raise ValueError(f"log_mass: masses sum to exp({tot!r}) (must be 1 within 1e-10)")
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "log_mass", lm)

    @property
    def n_levels(self) -> int:
        """K."""
        return int(self.values.shape[0])

    @property
    def mass(self) -> np.ndarray:
        """P_k."""
        return np.exp(self.log_mass)


def merge_levels(
    values: np.ndarray, log_w: np.ndarray, tie_tol: float = 0.0, secondary: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Sort ``values`` and merge entries whose gap to the previous one is ≤ ``tie_tol · max(1, |v|)``.

    With ``secondary`` (a tie-break key), entries are sorted by (value, key) and only entries with equal
    value *and* equal key are merged: the identity-dependent tie-break of spec §3.1 as a finer reward.

    Parameters
    ----------
    values : ndarray, shape (M,)
    log_w : ndarray, shape (M,)
        Log-weights (−inf allowed; such entries are dropped from the levels).
    tie_tol : float
        Relative merge tolerance; 0 merges exactly equal values only.  A merged level takes the value of its
        smallest member.

    Returns
    -------
    level_values : ndarray, shape (K,)
    level_log_w : ndarray, shape (K,)
        logsumexp of the weights in each level.
    outcome_level : ndarray of int64, shape (M,)
        Level index of each entry, −1 for dropped (−inf weight) entries.
    """
    keep = log_w > -np.inf
    idx = np.flatnonzero(keep)
    if secondary is None:
        order = idx[np.argsort(values[idx], kind="stable")]
    else:
        order = idx[np.lexsort((secondary[idx], values[idx]))]
    v = values[order]
    if v.size == 0:
        raise ValueError("probs: no outcome has positive probability")
    gaps = np.diff(v)
    new = gaps > tie_tol * np.maximum(1.0, np.abs(v[1:]))
    if secondary is not None:
        new |= np.diff(secondary[order]) != 0
    starts = np.concatenate(([0], np.flatnonzero(new) + 1, [v.size])).astype(np.int64)
    out = np.empty(starts.size - 1)
    group_logsumexp(np.ascontiguousarray(log_w[order]), starts, out)
    level_of_sorted = np.repeat(np.arange(starts.size - 1, dtype=np.int64), np.diff(starts))
    outcome_level = np.full(values.shape[0], -1, dtype=np.int64)
    outcome_level[order] = level_of_sorted
    return np.ascontiguousarray(v[starts[:-1]]), out, outcome_level


@dataclass(frozen=True)
class FiniteDist:
    """A reference pmf p on a finite space Y with a reward per outcome (spec §1); ties allowed.

    Parameters
    ----------
    probs : array_like, shape (M,)
        p(y) ≥ 0, summing to 1 within 1e-10.  Outcomes with p(y) = 0 get probability 0 under every law.
    rewards : array_like, shape (M,)
        r(y), finite.  Equal rewards form one level (BoN breaks ties uniformly, spec §3.1).
    tie_tol : float, default 0
        Relative tolerance for merging nearly equal rewards into one level (0: exact equality only).
    tie_break : array_like, shape (M,), optional
        Secondary sort key (spec §3.1): among equal rewards, a larger key wins.  This is a finer, tie-free
        reward; levels become the distinct (reward, key) pairs and win rates use the same order.

    Raises
    ------
    ValueError
        Negative, NaN or unnormalized ``probs``; non-finite ``rewards``; shape mismatch; ``tie_tol < 0``.
    """

    probs: np.ndarray
    rewards: np.ndarray
    tie_tol: float = 0.0
    tie_break: np.ndarray | None = None

    def __post_init__(self) -> None:
        p = as_float_array("probs", self.probs, ndim=1)
        r = as_float_array("rewards", self.rewards, ndim=1)
        if self.tie_break is not None:
            tb = as_float_array("tie_break", self.tie_break, ndim=1)
            if tb.shape != p.shape:
                raise ValueError(f"tie_break: expected shape {p.shape} (like probs), got {tb.shape}")
            check_finite("tie_break", tb)
            object.__setattr__(self, "tie_break", tb)
        if p.size == 0:
            raise ValueError("probs: must hold at least one outcome")
        if r.shape != p.shape:
            raise ValueError(f"rewards: expected shape {p.shape} (like probs), got {r.shape}")
        check_distribution("probs", p)
        check_finite("rewards", r)
        check_nonnegative_scalar("tie_tol", self.tie_tol)
        object.__setattr__(self, "probs", p)
        object.__setattr__(self, "rewards", r)

    @property
    def n_outcomes(self) -> int:
        """M = |Y|."""
        return int(self.probs.shape[0])

    @cached_property
    def levels(self) -> Levels:
        """The merged reward levels (computed once)."""
        with np.errstate(divide="ignore"):
            log_p = np.log(self.probs)
        v, lw, ol = merge_levels(self.rewards, log_p, self.tie_tol, self.tie_break)
        lw = lw - logsumexp(lw)
        return Levels(v, lw, ol, tie_broken=self.tie_break is not None)

    def outcome_log_probs(self, level_log_probs: np.ndarray) -> np.ndarray:
        """Spread a level law Q over outcomes ∝ p within each level: ln p(y) + ln Q_k − ln P_k."""
        lev = self.levels
        out = np.full(self.n_outcomes, -np.inf)
        ok = lev.outcome_level >= 0
        k = lev.outcome_level[ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[ok] = np.log(self.probs[ok]) + level_log_probs[k] - lev.log_mass[k]
        out[ok & np.isnan(out)] = -np.inf
        return out

    def level_log_probs(self, log_probs: np.ndarray, name: str = "log_probs") -> np.ndarray:
        """Aggregate an outcome law (log-probabilities, shape (M,)) onto the reward levels."""
        lp = as_float_array(name, log_probs, ndim=1)
        if lp.shape != self.probs.shape:
            raise ValueError(f"{name}: expected shape {self.probs.shape}, got {lp.shape}")
        if np.isnan(lp).any() or np.isposinf(lp).any():
            raise ValueError(
                f"{name}: NaN or +inf at {int(np.flatnonzero(np.isnan(lp) | np.isposinf(lp))[0])}"
            )
        lev = self.levels
        if (np.isfinite(lp) & (lev.outcome_level < 0)).any():
            i = int(np.flatnonzero(np.isfinite(lp) & (lev.outcome_level < 0))[0])
            raise ValueError(f"{name}: positive mass at index {i} where probs is 0")
        out = np.full(lev.n_levels, -np.inf)
        ok = lev.outcome_level >= 0
        np.logaddexp.at(out, lev.outcome_level[ok], lp[ok])
        return out


@dataclass(frozen=True)
class MemorylessLM:
    """Memoryless language model: ``length`` i.i.d. tokens from p with additive reward (spec §4).

    Parameters
    ----------
    token_probs : array_like, shape (k,)
        Per-token pmf p (sums to 1 within 1e-10).
    token_rewards : array_like, shape (k,)
        Per-token reward r(x); the sequence reward is S_n = Σ_i r(y_i).
    length : int
        Sequence length n ≥ 1.
    tie_tol : float, default 1e-9
        Relative tolerance for merging sequence sums computed in floating point (type-class path only;
        the lattice path is exact).
    """

    token_probs: np.ndarray
    token_rewards: np.ndarray
    length: int
    tie_tol: float = 1e-9

    def __post_init__(self) -> None:
        p = as_float_array("token_probs", self.token_probs, ndim=1)
        r = as_float_array("token_rewards", self.token_rewards, ndim=1)
        if r.shape != p.shape:
            raise ValueError(f"token_rewards: expected shape {p.shape} (like token_probs), got {r.shape}")
        check_distribution("token_probs", p)
        check_finite("token_rewards", r)
        check_int("length", self.length, minimum=1)
        check_nonnegative_scalar("tie_tol", self.tie_tol)
        object.__setattr__(self, "token_probs", p)
        object.__setattr__(self, "token_rewards", r)
        object.__setattr__(self, "length", int(self.length))

    @cached_property
    def token_dist(self) -> FiniteDist:
        """The one-token distribution as a :class:`FiniteDist`."""
        return FiniteDist(self.token_probs, self.token_rewards)

    @cached_property
    def levels(self) -> Levels:
        """Levels of the sequence reward S_n (see :func:`sequence_reward_law`)."""
        v, lw = sequence_reward_law(self)
        return Levels(v, lw, None)


def lattice_span(
    values: np.ndarray, max_denominator: int = 64, tol: float = 1e-9
) -> tuple[float, np.ndarray] | None:
    """Find h > 0 and integers m ≥ 0 with values = min(values) + h·m (within ``tol``), or None.

    Tries h = g / j for j = 1..``max_denominator`` where g is the smallest positive gap; returns the largest
    such span (the lattice span used by the Bahadur-Rao correction).
    """
    v = np.unique(np.asarray(values, dtype=np.float64))
    if v.size == 1:
        return 1.0, np.zeros(np.asarray(values).shape, dtype=np.int64)
    g = float(np.min(np.diff(v)))
    base = float(v[0])
    scale = max(1.0, float(np.max(np.abs(v))))
    for j in range(1, max_denominator + 1):
        h = g / j
        m = (np.asarray(values, dtype=np.float64) - base) / h
        mi = np.rint(m)
        if np.all(np.abs(m - mi) * h <= tol * scale):
            # refine h by least squares on the integer grid so that the values are reproduced exactly
            mu = np.unique(mi)
            if mu.size > 1:
                d = 0
                for x in mu.astype(np.int64) - int(mu[0]):
                    d = math.gcd(d, int(x))
                if d > 1:
                    h *= d
                    mi = np.rint((np.asarray(values, dtype=np.float64) - base) / h)
            return h, mi.astype(np.int64)
    return None


def sequence_reward_law(lm: MemorylessLM) -> tuple[np.ndarray, np.ndarray]:
    """Exact law of S_n = Σ_{i≤n} r(y_i) under p^{⊗n}, as levels (values, ln P_n) (spec §4).

    * **Lattice rewards** (r = a + h·m with integers m ≥ 0, detected by :func:`lattice_span`): log-space DP
      ``lattice_log_law``, O(n² · k · max m) time and O(n · max m) memory; values a·n + h·s.  For k = 4,
      max m = 3, n = 2000 this is ≈ 2.4·10⁷ log-sum-exp terms (well under a second).  No FFT (it destroys
      tail accuracy near e^{−2000}).
    * **Generic rewards**: type classes (c_1..c_k) with lgamma multinomials, C(n+k−1, k−1) classes
      (47,905 for n = 64, k = 4), sums merged within ``lm.tie_tol`` (relative).

    Returns
    -------
    values : ndarray, shape (L,)
        Increasing attainable values of S_n.
    log_mass : ndarray, shape (L,)
        ln P(S_n = value), normalized.
    """
    p, r, n = lm.token_probs, lm.token_rewards, lm.length
    pos = p > 0
    p, r = p[pos], r[pos]
    log_p = np.log(p)
    lat = lattice_span(r)
    if lat is not None:
        h, m = lat
        mmax = int(m.max())
        if n * mmax + 1 <= 50_000_000:
            out = np.empty(n * mmax + 1)
            lattice_log_law(np.ascontiguousarray(log_p), np.ascontiguousarray(m, dtype=np.int64), n, out)
            s = np.arange(out.size, dtype=np.float64)
            ok = out > -np.inf
            values = n * float(r.min()) + h * s[ok]
            lw = out[ok]
            return values, lw - logsumexp(lw)
    k = p.size
    n_types = math.comb(n + k - 1, k - 1)
    if n_types > MAX_TYPE_CLASSES:
        raise ValueError(
            f"length: {n_types} type classes for k={k}, n={n} exceed {MAX_TYPE_CLASSES}; use lattice rewards"
        )
    lw = np.empty(n_types)
    sums = np.empty(n_types)
    composition_types(np.ascontiguousarray(log_p), np.ascontiguousarray(r), n, lw, sums)
    v, lvl, _ = merge_levels(sums, lw, lm.tie_tol)
    return v, lvl - logsumexp(lvl)


def as_levels(dist: FiniteDist | MemorylessLM | Levels) -> Levels:
    """The reward levels of ``dist`` (a :class:`FiniteDist`, :class:`MemorylessLM` or :class:`Levels`)."""
    if isinstance(dist, (FiniteDist, MemorylessLM)):
        return dist.levels
    if isinstance(dist, Levels):
        return dist
    raise ValueError(f"dist: expected FiniteDist or MemorylessLM, got {type(dist).__name__}")


def token_levels(dist: FiniteDist | MemorylessLM) -> tuple[Levels, int]:
    """(per-token levels, n): the levels of one token and the length (n = 1 for a FiniteDist)."""
    if isinstance(dist, MemorylessLM):
        return dist.token_dist.levels, dist.length
    return as_levels(dist), 1


def parse_log_n(n_samples: float | None, log_n_samples: float | None) -> float:
    """Return ln N from exactly one of ``n_samples`` (N ≥ 1, real) or ``log_n_samples`` (ln N ≥ 0)."""
    if (n_samples is None) == (log_n_samples is None):
        raise ValueError("n_samples: give exactly one of n_samples= or log_n_samples=")
    if n_samples is not None:
        try:
            n = float(n_samples)
        except (TypeError, ValueError):
            raise ValueError(f"n_samples: expected a number, got {n_samples!r}") from None
        if not (np.isfinite(n) and n >= 1.0):
            raise ValueError(f"n_samples: must be a finite number >= 1, got {n_samples!r}")
        return math.log(n)
    try:
        ln = float(log_n_samples)
    except (TypeError, ValueError):
        raise ValueError(f"log_n_samples: expected a number, got {log_n_samples!r}") from None
    if not (np.isfinite(ln) and ln >= 0.0):
        raise ValueError(f"log_n_samples: must be a finite number >= 0 (N >= 1), got {log_n_samples!r}")
    return ln
