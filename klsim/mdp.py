"""Tabular MDPs: the :class:`TabularMDP` container and the classic constructors.

Transitions come in two layouts behind one class (``docs/architecture.md``):

* dense ``P[s, a, s']``, shape (S, A, S), C-contiguous, s' fastest;
* sparse CSR over state-action rows: a ``scipy.sparse`` matrix of shape (S*A, S) whose row ``s*A + a`` is
  P(·|s, a).  Kernels read the int64 ``indptr``/``indices`` and float64 ``data`` arrays.

References: Puterman (1994) §3.1 (two-state example); Archibald, McKinnon & Thomas (1995) and
Vieillard et al. 2020 [LtA] §6 (Garnets); spec ``kl-regularized-dp.md`` §8.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from klsim._validation import (
    as_float_array,
    check_choice,
    check_distribution,
    check_finite,
    check_gamma,
    check_int,
    check_stochastic_rows,
)

__all__ = ["TabularMDP", "garnet", "chain", "gridworld", "puterman_two_state", "ROW_SUM_TOL"]

ROW_SUM_TOL = 1e-10
"""Tolerance on transition row sums (spec §9 / issue: 'sums to 1 within 1e-10')."""


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite discounted MDP, validated once at construction.

    Parameters
    ----------
    P : ndarray of shape (S, A, S) or scipy.sparse matrix of shape (S*A, S)
        Transition probabilities P(s'|s, a).  Dense input is stored dense, sparse input as CSR.
    R : ndarray of shape (S, A) or (S, A, S)
        Rewards r(s, a), or r(s, a, s') which is reduced to the expected reward Σ_s' P(s'|s,a) r(s,a,s').
    gamma : float
        Discount factor in [0, 1).
    initial : ndarray of shape (S,), optional
        Initial-state distribution ρ; uniform when omitted.

    Raises
    ------
    ValueError
        Naming the offending ``(s, a)`` or argument for: a row that does not sum to 1 within 1e-10, a
        negative or NaN probability, a NaN or infinite reward, gamma outside [0, 1), mismatched shapes,
        an initial distribution that is not a distribution.

    Notes
    -----
    Never infer an (A, S, S) layout from the shape: convert explicitly (spec §12, pitfall 11).

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[[0.5, 0.5], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    >>> mdp = TabularMDP(P, np.array([[5.0, 10.0], [-1.0, -1.0]]), gamma=0.95)
    >>> mdp.n_states, mdp.n_actions, mdp.is_sparse
    (2, 2, False)
    """

    P: np.ndarray | sp.csr_array
    R: np.ndarray
    gamma: float
    initial: np.ndarray | None = None
    _csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        gamma = check_gamma(self.gamma)
        R = _own(as_float_array("R", self.R), self.R)
        if R.ndim not in (2, 3):
            raise ValueError(f"R: expected shape (S, A) or (S, A, S), got {R.shape}")
        S, A = R.shape[0], R.shape[1]
        if S < 1 or A < 1:
            raise ValueError(f"R: need at least one state and one action, got shape {R.shape}")
        if sp.issparse(self.P):
            P, csr = _validate_sparse(self.P, S, A)
        else:
            P = _own(as_float_array("P", self.P), self.P)
            if P.ndim != 3 or P.shape != (S, A, S):
                raise ValueError(
                    f"P: expected shape (S, A, S) = ({S}, {A}, {S}) to match R {R.shape}, got {P.shape}"
                )
            _validate_dense(P)
            csr = None
        if R.ndim == 3:
            if R.shape != (S, A, S):
                raise ValueError(
                    f"R: a 3-d reward must have shape (S, A, S) = ({S}, {A}, {S}), got {R.shape}"
                )
            check_finite("R", R, ("s", "a", "s'"))
            R = _expected_reward(P, csr, R)
        check_finite("R", R, ("s", "a"))
        if self.initial is None:
            rho = np.full(S, 1.0 / S)
        else:
            rho = _own(as_float_array("initial", self.initial, ndim=1), self.initial)
            if rho.shape != (S,):
                raise ValueError(f"initial: expected shape ({S},), got {rho.shape}")
            check_distribution("initial", rho, tol=ROW_SUM_TOL)
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "initial", rho)
        object.__setattr__(self, "_csr", csr)
        for arr in (R, rho) + ((P,) if csr is None else csr):
            arr.setflags(write=False)

    # ------------------------------------------------------------------ shape and layout
    @property
    def n_states(self) -> int:
        """Number of states S."""
        return int(self.R.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions A."""
        return int(self.R.shape[1])

    @property
    def is_sparse(self) -> bool:
        """True for the CSR layout."""
        return self._csr is not None

    @property
    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indptr, indices, data)`` of the (S*A, S) CSR matrix, int64/int64/float64 (sparse layout only)."""
        if self._csr is None:
            raise ValueError("csr: this MDP uses the dense layout; call to_sparse() first")
        return self._csr

    @cached_property
    def nnz(self) -> int:
        """Number of nonzero transition probabilities (counted once for the dense layout, then cached)."""
        if self._csr is not None:
            return int(np.count_nonzero(self._csr[2]))
        return int(np.count_nonzero(self.P))

    @cached_property
    def nonzero_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indptr, indices, data)`` of the (S*A, S) matrix P: the stored CSR (sparse layout) or its nonzeros.

        Column indices are sorted within each row, so a sum over a row's nonzeros visits them in the same
        order as a sum over the whole dense row.  For the dense layout this is built once (one pass over
        P) and cached; the arrays are read-only.  The sweeps of :mod:`klsim.dp` use it for dense MDPs
        whose P is mostly zeros (``klsim.dp._core.ZERO_SKIP_MAX_DENSITY``).
        """
        if self._csr is not None:
            return self._csr
        M = self.transition_matrix()
        rows, cols = np.nonzero(M)
        data = M[rows, cols]
        indptr = np.zeros(M.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=M.shape[0]), out=indptr[1:])
        out = (indptr, cols.astype(np.int64), np.ascontiguousarray(data, dtype=np.float64))
        for arr in out:
            arr.setflags(write=False)
        return out

    @property
    def r_max(self) -> float:
        """max |r(s, a)|."""
        return float(np.max(np.abs(self.R)))

    def transition_matrix(self) -> np.ndarray | sp.csr_array:
        """P as an (S*A, S) matrix: a dense reshape (a view) or the CSR matrix."""
        if self._csr is None:
            return self.P.reshape(self.n_states * self.n_actions, self.n_states)
        return self.P

    def dense_P(self) -> np.ndarray:
        """P as a dense (S, A, S) array (a view for the dense layout)."""
        if self._csr is None:
            return self.P
        return np.asarray(self.P.toarray()).reshape(self.n_states, self.n_actions, self.n_states)

    def to_dense(self) -> TabularMDP:
        """The same MDP in the dense layout."""
        return self if self._csr is None else TabularMDP(self.dense_P(), self.R, self.gamma, self.initial)

    def to_sparse(self) -> TabularMDP:
        """The same MDP in the CSR layout."""
        if self._csr is not None:
            return self
        return TabularMDP(sp.csr_array(self.transition_matrix()), self.R, self.gamma, self.initial)

    def with_reward(self, R: np.ndarray) -> TabularMDP:
        """The same dynamics with another reward (validated)."""
        return TabularMDP(self.P, R, self.gamma, self.initial)

    def with_gamma(self, gamma: float) -> TabularMDP:
        """The same MDP with another discount factor."""
        return TabularMDP(self.P, self.R, gamma, self.initial)

    def expected_next(self, v: np.ndarray) -> np.ndarray:
        """(P v)(s, a) = Σ_s' P(s'|s,a) v(s'); ``v`` of shape (S,), result (S, A)."""
        return (self.transition_matrix() @ v).reshape(self.n_states, self.n_actions)

    def isclose(self, other: TabularMDP, atol: float = 1e-12) -> bool:
        """True when both MDPs have the same sizes, gamma, and P, R, ρ within ``atol``."""
        if (self.n_states, self.n_actions) != (other.n_states, other.n_actions) or self.gamma != other.gamma:
            return False
        return bool(
            np.allclose(self.dense_P(), other.dense_P(), rtol=0, atol=atol)
            and np.allclose(self.R, other.R, rtol=0, atol=atol)
            and np.allclose(self.initial, other.initial, rtol=0, atol=atol)
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TabularMDP):
            return NotImplemented
        return self.isclose(other, atol=0.0)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        layout = f"sparse, nnz={self._csr[2].size}" if self._csr is not None else "dense"
        return f"TabularMDP(S={self.n_states}, A={self.n_actions}, gamma={self.gamma}, {layout})"


def _own(arr: np.ndarray, original) -> np.ndarray:
    """``arr``, copied if it may share memory with the caller's writeable ``original``.

    The container freezes its arrays; it must neither freeze the caller's array nor see later edits to it.
    A read-only ``original`` (e.g. another MDP's array, in ``with_reward``) is shared without a copy.
    """
    if isinstance(original, np.ndarray) and original.flags.writeable and np.may_share_memory(arr, original):
        return arr.copy()
    return arr


def _validate_dense(P: np.ndarray) -> None:
    S, A, _ = P.shape
    bad = ~(P >= 0)
    if bad.any():
        s, a, s2 = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), P.shape)
        raise ValueError(f"P: negative or NaN probability {float(P[s, a, s2])!r} at (s={s}, a={a}, s'={s2})")
    check_stochastic_rows("P", P.sum(axis=2).ravel(), A, ROW_SUM_TOL)


def _validate_sparse(P, S: int, A: int) -> tuple[sp.csr_array, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if P.shape != (S * A, S):
        raise ValueError(f"P: a sparse P must have shape (S*A, S) = ({S * A}, {S}) to match R, got {P.shape}")
    M = sp.csr_array(P, dtype=np.float64, copy=True)  # never modify (or freeze) the caller's matrix
    M.sum_duplicates()
    M.sort_indices()
    data = np.ascontiguousarray(M.data, dtype=np.float64)
    indices = np.ascontiguousarray(M.indices, dtype=np.int64)
    indptr = np.ascontiguousarray(M.indptr, dtype=np.int64)
    bad = ~(data >= 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(indptr, k, side="right") - 1)
        s, a = divmod(row, A)
        raise ValueError(
            f"P: negative or NaN probability {float(data[k])!r} at (s={s}, a={a}, s'={indices[k]})"
        )
    sums = np.add.reduceat(data, indptr[:-1]) if data.size else np.zeros(S * A)
    sums = np.where(np.diff(indptr) > 0, sums, 0.0)  # reduceat on an empty row returns the next element
    check_stochastic_rows("P", sums, A, ROW_SUM_TOL)
    M = sp.csr_array((data, indices, indptr), shape=(S * A, S))
    return M, (indptr, indices, data)


def _expected_reward(P: np.ndarray, csr, R3: np.ndarray) -> np.ndarray:
    S, A = R3.shape[0], R3.shape[1]
    if csr is None:
        return np.einsum("ijk,ijk->ij", P, R3)
    indptr, indices, data = csr
    rows = np.repeat(np.arange(S * A), np.diff(indptr))
    flat = R3.reshape(S * A, S)[rows, indices] * data
    out = np.zeros(S * A)
    np.add.at(out, rows, flat)
    return out.reshape(S, A)


# ---------------------------------------------------------------------- constructors


def garnet(
    n_states: int,
    n_actions: int,
    branching: int,
    seed: int | None = 0,
    *,
    gamma: float = 0.9,
    reward: str = "sa",
) -> TabularMDP:
    """Random Garnet MDP, stored sparse (spec §8; [LtA] §6).

    The draw order is API (convention C10): with ``rng = numpy.random.default_rng(seed)``::

        for s in range(S): for a in range(A):
            nxt = rng.choice(S, size=b, replace=False); cuts = sort(rng.uniform(size=b-1))
            P[s, a, nxt] = diff([0, *cuts, 1])
        reward="sa": r = rng.uniform(size=(S, A));  reward="s": rng.uniform(size=S), broadcast

    Parameters
    ----------
    n_states, n_actions : int
        S and A.
    branching : int
        Number b of successors per (s, a), 1 <= b <= S.
    seed : int, numpy.random.Generator or None
        Passed to ``numpy.random.default_rng`` (a Generator is used as is, and advanced).
    gamma : float
        Discount factor (canonical instance: Garnet(30, 4, 3) with gamma = 0.9).
    reward : {"sa", "s"}
        Reward per state-action pair, or per state.

    Returns
    -------
    TabularMDP
        Sparse layout, ρ uniform.

    Notes
    -----
    The rows are drawn by a numba replay of numpy's ``Generator.choice`` (both of its ``replace=False``
    branches) and ``uniform`` on the PCG64 raw stream (:mod:`klsim._kernels.garnet`), which gives the same
    arrays and leaves the generator in the same state as the loop above, bit for bit; Garnet(100000, 10, 10)
    builds in about 1 s instead of 30-50 s.  The replay is checked against the loop once per process; on a
    difference (another numpy), or for a bit generator other than PCG64, the loop itself runs (with a
    ``RuntimeWarning`` in the first case).
    """
    S = check_int("n_states", n_states, 1)
    A = check_int("n_actions", n_actions, 1)
    b = check_int("branching", branching, 1)
    if b > S:
        raise ValueError(f"branching: must be <= n_states={S}, got {b}")
    check_choice("reward", reward, ("sa", "s"))
    rng = np.random.default_rng(seed)
    indices, data = _garnet_rows(rng, S, S * A, b)
    if reward == "sa":
        R = rng.uniform(size=(S, A))
    else:
        R = np.repeat(rng.uniform(size=S)[:, None], A, axis=1)
    indptr = np.arange(0, S * A * b + 1, b, dtype=np.int64)
    P = sp.csr_array((data.ravel(), indices.ravel(), indptr), shape=(S * A, S))
    return TabularMDP(P, R, gamma)


def _garnet_rows(
    rng: np.random.Generator, n_states: int, n_rows: int, b: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_rows`` Garnet rows drawn from ``rng``: (indices, data), each of shape (n_rows, b).

    Uses the numba replay :func:`_garnet_rows_fast` when it supports the generator and passed its self-check
    in this process (:func:`_fast_path_ok`), otherwise the reference loop :func:`_garnet_rows_slow`.  Both
    leave ``rng`` in the same state.
    """
    if _fast_path_ok():
        out = _garnet_rows_fast(rng, n_states, n_rows, b)
        if out is not None:
            return out
    return _garnet_rows_slow(rng, n_states, n_rows, b)


def _garnet_rows_slow(
    rng: np.random.Generator, n_states: int, n_rows: int, b: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference implementation of the normative draw order (spec §8), one numpy call per row."""
    indices = np.empty((n_rows, b), dtype=np.int64)
    data = np.empty((n_rows, b))
    for row in range(n_rows):
        nxt = rng.choice(n_states, size=b, replace=False)
        cuts = np.sort(rng.uniform(size=b - 1))
        probs = np.diff(np.concatenate(([0.0], cuts, [1.0])))
        order = np.argsort(nxt)
        indices[row] = nxt[order]
        data[row] = probs[order]
    return indices, data


_RAW_CHUNK = 1 << 21  # PCG64 words drawn per refill (16 MiB)


def _garnet_rows_fast(
    rng: np.random.Generator,
    n_states: int,
    n_rows: int,
    b: int,
    *,
    chunk_words: int = _RAW_CHUNK,
    margin: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Same rows and final generator state as :func:`_garnet_rows_slow`, by replaying numpy in numba.

    A copy of the PCG64 bit generator supplies raw 64-bit words in chunks; the kernel
    :func:`klsim._kernels.garnet.garnet_rows` replays ``choice``/``uniform`` on them, and ``rng`` is then
    advanced by the number of words used, with numpy's 32-bit buffer (``has_uint32``/``uinteger``) set as
    the replay left it.  Returns None, without drawing, for a bit generator other than PCG64 or S > 2^31.
    ``chunk_words`` (words per refill) and ``margin`` (words the kernel wants left before it starts a row;
    default 3b + 64) change only how the stream is cut into chunks, never the result (tests use tiny ones).
    """
    from klsim._kernels.garnet import MAX_STATES, garnet_rows, hash_mask

    bg = rng.bit_generator
    if type(bg) is not np.random.PCG64 or n_states > MAX_STATES:
        return None
    start = bg.state
    source = np.random.PCG64(0)
    source.state = start
    tail = n_states > 10000 and b > n_states // 50
    perm = np.arange(n_states, dtype=np.int64) if tail else np.zeros(1, dtype=np.int64)
    touched = np.empty(2 * b, dtype=np.int64)
    hash_set = np.empty(hash_mask(b) + 1, dtype=np.int64)
    indices = np.empty((n_rows, b), dtype=np.int64)
    data = np.empty((n_rows, b))
    st = np.array([0, start["has_uint32"], start["uinteger"]], dtype=np.int64)
    raw = np.empty(0, dtype=np.int64)
    used = 0  # words consumed before raw[0]
    margin = 3 * b + 64 if margin is None else margin
    row = 0
    while row < n_rows:
        # about 2b + 1 words per row (b + b - 1 32-bit draws, b - 1 doubles); unused words are kept, so a
        # row that needs more words than are left (many rejections) gets them on the next pass
        n_new = max(margin, min(chunk_words, (n_rows - row) * (2 * b + 1) + 4096), 1)
        pos = int(st[0])
        raw = np.concatenate((raw[pos:], source.random_raw(n_new).view(np.int64)))
        used += pos
        st[0] = 0
        row = garnet_rows(
            raw, st, n_states, b, row, int(tail), margin, perm, touched, hash_set, indices, data
        )
    used += int(st[0])
    bg.advance(used)  # resets the 32-bit buffer; restore it below
    state = bg.state
    state["has_uint32"] = int(st[1])
    state["uinteger"] = int(st[2])
    bg.state = state
    return indices, data


_FAST_STATUS: list[bool] = []  # [ok] once the self-check has run in this process


def _fast_path_ok() -> bool:
    """Whether :func:`_garnet_rows_fast` matched the reference loop on small cases (checked once per process).

    The cases cover Floyd's branch (b = 1, b close to S, b = S, S > 10000 with b = S // 50) and the
    tail-shuffle branch (S > 10000 with b > S // 50, b = S), a start with numpy's 32-bit buffer full, the
    arrays and the generator state after the call.  On any difference (or error) it warns once and
    :func:`garnet` uses the reference loop.
    """
    if not _FAST_STATUS:
        ok, why = True, ""
        try:
            for n_states, n_rows, b, seed in _SELF_CHECK_CASES:
                slow_rng, fast_rng = np.random.default_rng(seed), np.random.default_rng(seed)
                if seed % 2:  # start with a 32-bit draw buffered
                    slow_rng.integers(0, 7)
                    fast_rng.integers(0, 7)
                want = _garnet_rows_slow(slow_rng, n_states, n_rows, b)
                got = _garnet_rows_fast(fast_rng, n_states, n_rows, b)
                same = got is not None and all(np.array_equal(x, y) for x, y in zip(want, got))
                if not (same and slow_rng.bit_generator.state == fast_rng.bit_generator.state):
                    ok, why = (
                        False,
                        f"differs from the reference loop on (S, rows, b, seed) = {n_states, n_rows, b, seed}",
                    )
                    break
        except Exception as exc:  # any failure of the fast path means: use the reference loop
            ok, why = False, f"raised {exc!r}"
        if not ok:
            warnings.warn(
                f"klsim.mdp.garnet: the numba replay of numpy's draws {why}; using the slow reference loop",
                RuntimeWarning,
                stacklevel=3,
            )
        _FAST_STATUS.append(ok)
    return _FAST_STATUS[0]


_SELF_CHECK_CASES = (
    (30, 120, 3, 0),
    (30, 120, 3, 1),
    (30, 120, 3, 2),
    (1, 3, 1, 3),
    (7, 14, 1, 4),
    (12, 36, 11, 5),
    (12, 24, 12, 6),
    (10001, 3, 200, 7),
    (10001, 3, 201, 8),
    (12000, 2, 12000, 9),
)


def chain(
    n_states: int = 10,
    *,
    slip: float = 0.1,
    gamma: float = 0.9,
    reward_end: float = 1.0,
    reward_start: float = 0.05,
) -> TabularMDP:
    """A chain of ``n_states`` states with actions left (0) and right (1).

    The intended move happens with probability ``1 - slip``, the opposite one otherwise; moves past an
    end stay.  Reaching (staying at) the right end pays ``reward_end``, the left end ``reward_start``
    (a small distractor), everything else 0.  ρ is a point mass on state 0.
    """
    S = check_int("n_states", n_states, 2)
    if not 0.0 <= slip <= 1.0:
        raise ValueError(f"slip: must lie in [0, 1], got {slip!r}")
    P = np.zeros((S, 2, S))
    for s in range(S):
        left, right = max(s - 1, 0), min(s + 1, S - 1)
        P[s, 0, left] += 1 - slip
        P[s, 0, right] += slip
        P[s, 1, right] += 1 - slip
        P[s, 1, left] += slip
    R3 = np.zeros((S, 2, S))
    R3[:, :, S - 1] = reward_end
    R3[:, :, 0] = reward_start
    rho = np.zeros(S)
    rho[0] = 1.0
    return TabularMDP(P, R3, gamma, rho)


_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left


def gridworld(
    layout: tuple[str, ...] | str = ("SOOO", "O###", "OOOO", "O#RO"),
    *,
    success: float = 0.9,
    gamma: float = 0.99,
    goal_reward: float = 1.0,
) -> TabularMDP:
    """A gridworld from a text layout ([LtA]'s 4×4 maze by default, spec §11 figure 2).

    Cells: ``S`` start, ``O`` (or ``.``) free, ``#`` wall, ``R`` reward cell.  Actions up, right, down,
    left.  The intended move happens with probability ``success``, otherwise a uniformly random move
    (of the 4) is taken; moves into walls or off the board stay.  The reward ``goal_reward`` is paid
    for every action taken in an ``R`` cell; the episode does not end (continuing task).  States are the
    non-wall cells in row-major order; ρ is a point mass on ``S``.
    """
    rows = layout.split("/") if isinstance(layout, str) else tuple(layout)
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError(f"layout: rows must be non-empty and of equal length, got {rows!r}")
    bad = {c for r in rows for c in r} - set("SO.#R")
    if bad:
        raise ValueError(f"layout: unknown cell characters {sorted(bad)!r}; valid: S O . # R")
    if not 0.0 <= success <= 1.0:
        raise ValueError(f"success: must lie in [0, 1], got {success!r}")
    cells = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c != "#"]
    index = {c: k for k, c in enumerate(cells)}
    S = len(cells)
    P = np.zeros((S, 4, S))
    R = np.zeros((S, 4))
    rho = np.zeros(S)
    for k, (i, j) in enumerate(cells):
        if rows[i][j] == "S":
            rho[k] = 1.0
        if rows[i][j] == "R":
            R[k, :] = goal_reward
        dest = []
        for di, dj in _MOVES:
            ni, nj = i + di, j + dj
            dest.append(index.get((ni, nj), k) if 0 <= ni < len(rows) and 0 <= nj < len(rows[0]) else k)
        for a in range(4):
            P[k, a, dest[a]] += success
            for d in dest:
                P[k, a, d] += (1 - success) / 4
    if rho.sum() != 1.0:
        raise ValueError("layout: needs exactly one start cell 'S'")
    return TabularMDP(P, R, gamma, rho)


def puterman_two_state(gamma: float = 0.95) -> TabularMDP:
    """Puterman (1994) §3.1's two-state example, as in QuantEcon's ``DiscreteDP`` documentation.

    State 0 has a₀ (reward 5, stays or moves with probability ½ each) and a₁ (reward 10, moves to
    state 1).  State 1 has one action (reward −1, stays).  ``TabularMDP`` needs a rectangular action
    set, so state 1's single action is duplicated; this changes neither v* nor q* of the feasible
    actions.  With gamma = 0.95, v* = (−8.571428..., −20).
    """
    P = np.array([[[0.5, 0.5], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    R = np.array([[5.0, 10.0], [-1.0, -1.0]])
    return TabularMDP(P, R, gamma)
