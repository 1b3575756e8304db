"""The preference game container and its generators (spec nash-preference-games §1, §5).

A game over n responses is a preference matrix P ∈ [0, 1]^{n×n} with P + Pᵀ = 11ᵀ (so diag P = ½ and
A := P − ½11ᵀ is antisymmetric) plus a full-support reference log-policy θ_ref = log π_ref.  A
*contextual* game is a batch of C such games, one per prompt: P has shape (C, n, n), ``log_ref`` (C, n)
and the contexts carry weights ρ (uniform by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from klsim._validation import as_float_array, check_choice, check_finite, check_int, first_bad_index
from klsim.divergences import log_softmax, logsumexp

__all__ = [
    "PreferenceGame",
    "random_game",
    "tournament",
    "cyclic_game",
    "rps3",
    "bradley_terry_game",
    "stack_games",
    "pref_matvec",
]

#: |P + Pᵀ − 1| tolerance of the validation (spec §5).
SKEW_TOL = 1e-12
#: |logsumexp(log_ref)| tolerance.
NORM_TOL = 1e-10


def pref_matvec(P: np.ndarray, pi: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[c] = P[c] @ pi[c] for P (C, n, n), pi and out (C, n): one batched BLAS product (no context loop)."""
    np.matmul(P, pi[:, :, None], out=out[:, :, None])
    return out


def _fmt_ctx(c: int, batched: bool) -> str:
    return f"context {c}, " if batched else ""


@dataclass(frozen=True)
class PreferenceGame:
    """A (batch of) preference game(s) with a reference policy, validated once.

    Parameters
    ----------
    preferences : array_like, shape (n, n) or (C, n, n)
        P_ij = P(y_i ≻ y_j) ∈ [0, 1] with P + Pᵀ = 1 within 1e-12.  It is stored in the canonical form
        ½ + (P − Pᵀ)/2, which differs from the input by at most that tolerance and makes A = P − ½
        exactly antisymmetric (every kernel relies on it).
    log_ref : array_like, shape (n,) or (C, n)
        Reference log-policy θ_ref = log π_ref (finite: full support; normalized within 1e-10).
    context_weights : array_like, shape (C,), optional
        Context distribution ρ (uniform by default); only for a batch.

    Raises
    ------
    ValueError
        Naming the offending ``(i, j)`` (and context) for out-of-range, non-finite or non-skew entries,
        or the index of a bad ``log_ref`` entry.

    Notes
    -----
    Munos et al. (2024), "Nash Learning from Human Feedback", §3; spec §1.
    """

    preferences: np.ndarray
    log_ref: np.ndarray
    context_weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        P = as_float_array("preferences", self.preferences)
        if P.ndim not in (2, 3) or P.shape[-1] != P.shape[-2] or P.shape[-1] < 1:
            raise ValueError(f"preferences: expected shape (n, n) or (C, n, n), got {P.shape}")
        batched = P.ndim == 3
        P3 = P if batched else P[None]
        names = ("c", "i", "j") if batched else ("i", "j")
        check_finite("preferences", P, names)
        bad = (P3 < 0.0) | (P3 > 1.0)
        if bad.any():
            c, i, j = first_bad_index(bad)
            raise ValueError(
                f"preferences: entry ({_fmt_ctx(c, batched)}i={i}, j={j}) = {P3[c, i, j]!r} outside [0, 1]"
            )
        skew = np.abs(P3 + np.swapaxes(P3, 1, 2) - 1.0)
        bad = skew > SKEW_TOL
        if bad.any():
            c, i, j = first_bad_index(bad)
            raise ValueError(
                f"preferences: P + P^T != 1 at ({_fmt_ctx(c, batched)}i={i}, j={j}): "
                f"P[i,j] + P[j,i] = {P3[c, i, j] + P3[c, j, i]!r} (tolerance {SKEW_TOL:g})"
            )
        del skew, bad
        canon = np.ascontiguousarray(0.5 + 0.5 * (P3 - np.swapaxes(P3, 1, 2)))
        C, n = P3.shape[0], P3.shape[1]
        lr = as_float_array("log_ref", self.log_ref)
        want = (C, n) if batched else (n,)
        if lr.shape != want:
            raise ValueError(f"log_ref: expected shape {want}, got {lr.shape}")
        check_finite("log_ref", lr, ("c", "a") if batched else None)
        lz = np.atleast_1d(logsumexp(lr.reshape(C, n), axis=1))
        badz = np.abs(lz) > NORM_TOL
        if badz.any():
            c = int(np.flatnonzero(badz)[0])
            where = f" (context {c})" if batched else ""
            raise ValueError(
                f"log_ref{where}: probabilities sum to {np.exp(lz[c])!r} (must be 1 within {NORM_TOL:g})"
            )
        w = self.context_weights
        if w is not None:
            if not batched:
                raise ValueError("context_weights: only allowed for a batch of games (3-d preferences)")
            w = as_float_array("context_weights", w, ndim=1)
            if w.shape != (C,):
                raise ValueError(f"context_weights: expected shape ({C},), got {w.shape}")
            check_finite("context_weights", w)
            if (w < 0).any():
                raise ValueError(f"context_weights: negative entry at {int(np.flatnonzero(w < 0)[0])}")
            if abs(w.sum() - 1.0) > 1e-10:
                raise ValueError(f"context_weights: sums to {w.sum()!r} (must be 1 within 1e-10)")
        object.__setattr__(self, "preferences", canon if batched else canon[0])
        object.__setattr__(self, "log_ref", np.ascontiguousarray(lr))
        object.__setattr__(self, "context_weights", w)

    # -- shapes -------------------------------------------------------------------------------------------
    @property
    def is_batched(self) -> bool:
        """True for a contextual game (3-d preferences)."""
        return self.preferences.ndim == 3

    @property
    def n_actions(self) -> int:
        """Number of responses n."""
        return int(self.preferences.shape[-1])

    @property
    def n_contexts(self) -> int:
        """Number of contexts C (1 for a single game)."""
        return int(self.preferences.shape[0]) if self.is_batched else 1

    @property
    def P3(self) -> np.ndarray:
        """Preferences as a (C, n, n) view."""
        return self.preferences if self.is_batched else self.preferences[None]

    @property
    def log_ref2(self) -> np.ndarray:
        """Reference log-policy as a (C, n) view."""
        return self.log_ref if self.is_batched else self.log_ref[None]

    @property
    def weights(self) -> np.ndarray:
        """Context weights ρ, shape (C,) (uniform when not given)."""
        if self.context_weights is not None:
            return self.context_weights
        C = self.n_contexts
        return np.full(C, 1.0 / C)

    @property
    def ref_policy(self) -> np.ndarray:
        """π_ref = exp(log_ref)."""
        return np.exp(self.log_ref)

    @property
    def antisymmetric(self) -> np.ndarray:
        """A = P − ½ (exactly antisymmetric), same shape as ``preferences``."""
        return self.preferences - 0.5

    def with_ref(self, log_ref: np.ndarray) -> PreferenceGame:
        """The same preferences with another reference log-policy."""
        return PreferenceGame(self.preferences, log_ref, self.context_weights)

    def context(self, c: int) -> PreferenceGame:
        """Context ``c`` of a batch as a single game."""
        if not self.is_batched:
            raise ValueError("context: the game is not a batch")
        c = check_int("c", c, 0)
        if c >= self.n_contexts:
            raise ValueError(f"c: must be < {self.n_contexts}, got {c}")
        return PreferenceGame(self.preferences[c], self.log_ref[c])

    def as_batch(self, pi: np.ndarray) -> np.ndarray:
        """Reshape a policy-like array (n,) or (C, n) to (C, n) (validating the shape)."""
        x = np.asarray(pi, dtype=np.float64)
        want = self.log_ref.shape
        if x.shape != want:
            raise ValueError(f"policy: expected shape {want}, got {x.shape}")
        return x if self.is_batched else x[None]

    def unbatch(self, x2: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`as_batch` (drops the context axis of a single game)."""
        return x2 if self.is_batched else x2[0]


# -- generators ---------------------------------------------------------------------------------------------
def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng: expected a numpy.random.Generator or an int seed, got {rng!r}")


def _skew_from_lower(L: np.ndarray) -> np.ndarray:
    """P with P_ij = L_ij for i > j, P_ji = 1 − P_ij, P_ii = ½ (spec §5.1)."""
    n = L.shape[0]
    lower = np.tril(L, -1)
    P = lower + np.tril(1.0 - L, -1).T
    P[np.diag_indices(n)] = 0.5
    return P


def _random_like(n: int, rng, n_contexts: int | None, log_ref, binary: bool) -> PreferenceGame:
    n = check_int("n", n, 1)
    rng = _as_rng(rng)
    C = 1 if n_contexts is None else check_int("n_contexts", n_contexts, 1)
    Ps = np.empty((C, n, n))
    refs = np.empty((C, n))
    for c in range(C):  # contexts are drawn in sequence: P then log_ref (spec §5)
        L = rng.random((n, n))
        if binary:
            L = (L < 0.5).astype(np.float64)
        Ps[c] = _skew_from_lower(L)
        refs[c] = log_softmax(rng.normal(size=n)) if log_ref is None else 0.0
    if log_ref is not None:
        lr = as_float_array("log_ref", log_ref)
        refs[:] = lr if lr.ndim == 1 else lr
    if n_contexts is None:
        return PreferenceGame(Ps[0], refs[0])
    return PreferenceGame(Ps, refs)


def random_game(n: int, rng, *, n_contexts: int | None = None, log_ref=None) -> PreferenceGame:
    """Random preference game: L = rng.random((n, n)); P_ij = L_ij (i > j), P_ji = 1 − P_ij, P_ii = ½.

    Parameters
    ----------
    n : int
        Number of responses.
    rng : numpy.random.Generator or int
        Source of randomness (the draw order is normative: P, then log_ref, context after context).
    n_contexts : int, optional
        Return a batch of this many games (shape (C, n, n)).
    log_ref : array_like, optional
        Reference log-policy; default log_softmax(rng.normal(size=n)) drawn after P.

    Returns
    -------
    PreferenceGame

    Notes
    -----
    Spec nash-preference-games §5.1.
    """
    return _random_like(n, rng, n_contexts, log_ref, binary=False)


def tournament(n: int, rng, *, n_contexts: int | None = None, log_ref=None) -> PreferenceGame:
    """Random 0/1 tournament: as :func:`random_game` with P_ij = 1[L_ij < ½] for i > j (spec §5.2)."""
    return _random_like(n, rng, n_contexts, log_ref, binary=True)


def _uniform_ref(n: int) -> np.ndarray:
    return np.full(n, -np.log(n))


def cyclic_game(n: int, margin: float = 0.5, *, log_ref=None) -> PreferenceGame:
    """Circulant cyclic game (rock-paper-scissors generalization), spec §5.3.

    With d = (j − i) mod n and h = ⌊(n − 1)/2⌋: A_ij = +margin for 1 ≤ d ≤ h, −margin for d ≥ n − h,
    else 0; P = ½ + A.  Each response beats the next h responses.  Default π_ref uniform (then π*_β is
    uniform for every β).

    Parameters
    ----------
    n : int
        Number of responses (≥ 1).
    margin : float
        In [0, ½].
    log_ref : array_like, optional
    """
    n = check_int("n", n, 1)
    m = float(margin)
    if not (0.0 <= m <= 0.5):
        raise ValueError(f"margin: must lie in [0, 0.5], got {margin!r}")
    h = (n - 1) // 2
    d = (np.arange(n)[None, :] - np.arange(n)[:, None]) % n
    A = np.where((d >= 1) & (d <= h), m, 0.0) + np.where((d >= n - h) & (d >= 1), -m, 0.0)
    return PreferenceGame(0.5 + A, _uniform_ref(n) if log_ref is None else log_ref)


def rps3(a: float = 0.3, b: float = 0.2, c: float = 0.45, *, log_ref=None) -> PreferenceGame:
    """Generalized rock-paper-scissors: A = [[0, a, −b], [−a, 0, c], [b, −c, 0]], P = ½ + A (spec §4.3).

    The unregularized Nash equilibrium is ∝ (c, b, a).  Default π_ref uniform.
    """
    for name, v in (("a", a), ("b", b), ("c", c)):
        if not (-0.5 <= float(v) <= 0.5):
            raise ValueError(f"{name}: must lie in [-0.5, 0.5], got {v!r}")
    A = np.array([[0.0, a, -b], [-a, 0.0, c], [b, -c, 0.0]], dtype=np.float64)
    return PreferenceGame(0.5 + A, _uniform_ref(3) if log_ref is None else log_ref)


def bradley_terry_game(scores, link: str = "logistic", *, log_ref=None) -> PreferenceGame:
    """Preference game from a score (reward) vector, spec §5.4.

    ``link="logistic"``: P_ij = σ(s_i − s_j) (Bradley-Terry); ``link="linear"``: P_ij = ½ + (s_i − s_j)/2,
    which requires span(s) ≤ 1 (then π*_β = softmax(θ_ref + s/(2β)), the RLHF optimum at 2β).

    Parameters
    ----------
    scores : array_like, shape (n,) or (C, n)
    link : {"logistic", "linear"}
    log_ref : array_like, optional
        Default uniform.
    """
    check_choice("link", link, ("logistic", "linear"))
    s = as_float_array("scores", scores)
    if s.ndim not in (1, 2):
        raise ValueError(f"scores: expected shape (n,) or (C, n), got {s.shape}")
    check_finite("scores", s)
    diff = s[..., :, None] - s[..., None, :]
    if link == "linear":
        sp = s.max(axis=-1) - s.min(axis=-1)
        if np.any(sp > 1.0):
            idx = int(np.flatnonzero(np.atleast_1d(sp) > 1.0)[0])
            raise ValueError(
                f"scores: span {np.atleast_1d(sp)[idx]!r} > 1 (context {idx}); the linear link needs span <= 1"
            )
        P = 0.5 + 0.5 * diff
    else:
        P = 0.5 * (1.0 + np.tanh(0.5 * diff))  # σ(x) with exact symmetry σ(x) + σ(−x) = 1
    n = s.shape[-1]
    if log_ref is None:
        log_ref = np.broadcast_to(_uniform_ref(n), s.shape).copy()
    return PreferenceGame(P, log_ref)


def stack_games(games) -> PreferenceGame:
    """Stack single games with the same n into one contextual game (uniform context weights)."""
    games = list(games)
    if not games:
        raise ValueError("games: need at least one game")
    for k, g in enumerate(games):
        if not isinstance(g, PreferenceGame) or g.is_batched:
            raise ValueError(f"games[{k}]: expected a single (non-batched) PreferenceGame")
        if g.n_actions != games[0].n_actions:
            raise ValueError(f"games[{k}]: has {g.n_actions} actions, games[0] has {games[0].n_actions}")
    return PreferenceGame(np.stack([g.preferences for g in games]), np.stack([g.log_ref for g in games]))
