"""Import a Gymnasium toy-text environment as a :class:`~klsim.mdp.TabularMDP` (spec §8, "Import").

Any environment whose unwrapped core exposes the toy-text transition table ``P[s][a] = [(p, s', r,
terminated), ...]`` (FrozenLake, CliffWalking, Taxi, and klsim's own :class:`~klsim.envs.TabularEnv`) can be
imported.  The absorbing-state rule below is API (spec convention C10).

References: spec ``kl-regularized-dp.md`` §8 and §12 pitfall 10; Towers et al. (2024), *Gymnasium*.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from klsim._validation import as_float_array, check_choice, check_gamma, check_stochastic_rows
from klsim.mdp import TabularMDP

__all__ = ["from_gymnasium", "IMPORT_ROW_SUM_TOL"]

IMPORT_ROW_SUM_TOL = 1e-12
"""Imported transition rows must sum to 1 within this tolerance (spec §8, step 5)."""


def from_gymnasium(env: Any, gamma: float = 0.99, *, layout: str = "auto") -> TabularMDP:
    """Build the :class:`TabularMDP` of a Gymnasium environment that exposes ``unwrapped.P``.

    Parameters
    ----------
    env : gymnasium.Env
        Any environment, wrapped or not, whose ``env.unwrapped`` has Discrete observation and action
        spaces (``start == 0``) and a toy-text table ``P[s][a]`` of ``(p, s', r, terminated)`` tuples.
    gamma : float
        Discount factor in [0, 1).  Gymnasium environments carry none, so choose it deliberately; the
        default 0.99 is only a convenience (issue 2, item 4).
    layout : {"auto", "dense", "sparse"}
        Storage of P.  ``"auto"`` stores CSR when it takes fewer bytes than the dense (S, A, S) array
        (16 bytes per nonzero plus 8 per row pointer, against 8·S·A·S), which is the case for every
        toy-text environment.

    Returns
    -------
    TabularMDP
        With S states (S + 1 when an absorbing state is added), A actions, expected rewards
        R[s, a] = Σ p·r over the listed outcomes, and ρ as described below.

    Raises
    ------
    ValueError
        If the spaces are not ``Discrete`` (or start elsewhere than 0), ``P`` is missing or malformed, a
        probability is negative or NaN, a successor lies outside ``range(S)``, a reward is not finite, or
        a row does not sum to 1 within 1e-12; the message names the offending ``(s, a)``.

    Notes
    -----
    The rules of spec §8 (convention C10):

    1. Everything is read from ``u = env.unwrapped``, since ``gymnasium.make`` adds wrappers.
    2. Outcomes are **accumulated**: P[s, a, s'] += p and R[s, a] += p·r.  Slippery FrozenLake lists the
       same successor twice when a slip hits a wall.
    3. An outcome flagged ``terminated`` goes to a single added absorbing state with index S (a
       self-loop with reward 0 under every action); its reward r still counts in R[s, a].  The state is
       added only when some terminated outcome has p > 0.  The rows that the table lists for terminal
       cells (FrozenLake's holes and goal, CliffWalking's goal, which is not absorbing in the table) are
       kept as read but are never trusted: no transition leads into them any more.
    4. ρ = ``u.initial_state_distrib`` (0 on the absorbing state).  Without one, ρ is a point mass on the
       state returned by ``reset(seed=0)`` of a deep copy of ``u`` (of ``u`` itself if it cannot be copied),
       with a warning.
    5. Outcomes with p = 0 are skipped; rows must sum to 1 within 1e-12.

    The optimum of the result equals value iteration on the raw table with ``v(terminal) = 0`` after a
    terminated outcome (spec §10, claim 18; tested to 1e-10 on FrozenLake).

    Examples
    --------
    >>> import gymnasium as gym
    >>> mdp = from_gymnasium(gym.make("FrozenLake-v1"), gamma=0.99)
    >>> mdp.n_states, mdp.n_actions     # 16 cells plus the absorbing state
    (17, 4)
    """
    gamma = check_gamma(gamma)
    check_choice("layout", layout, ("auto", "dense", "sparse"))
    u = _unwrap(env)
    S, A = _discrete_size(u, "observation_space"), _discrete_size(u, "action_space")
    table = getattr(u, "P", None)
    if table is None:
        raise ValueError(
            f"env: {type(u).__name__} has no transition table `P` (expected toy-text P[s][a] = [(p, s', r, terminated)])"
        )
    rows, cols, vals, R, absorbing_needed = _read_table(table, S, A)
    S_tot = S + 1 if absorbing_needed else S
    if absorbing_needed:  # the absorbing state S: self-loop, zero reward, under every action
        rows.extend(S * A + a for a in range(A))
        cols.extend([S] * A)
        vals.extend([1.0] * A)
        R = np.vstack([R, np.zeros((1, A))])
    M = sp.csr_array(
        (
            np.asarray(vals, dtype=np.float64),
            (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)),
        ),
        shape=(S_tot * A, S_tot),
    )
    check_stochastic_rows("env.unwrapped.P", np.asarray(M.sum(axis=1)).ravel(), A, IMPORT_ROW_SUM_TOL)
    rho = _initial_distribution(u, S, S_tot)
    if layout == "dense" or (layout == "auto" and not _sparse_saves_memory(M.nnz, S_tot, A)):
        P = np.asarray(M.toarray()).reshape(S_tot, A, S_tot)
        return TabularMDP(P, R, gamma, rho)
    return TabularMDP(M, R, gamma, rho)


def _unwrap(env: Any) -> Any:
    u = getattr(env, "unwrapped", None)
    if u is None:
        raise ValueError(f"env: expected a gymnasium.Env (with .unwrapped), got {type(env).__name__}")
    return u


def _discrete_size(u: Any, name: str) -> int:
    from gymnasium.spaces import Discrete

    space = getattr(u, name, None)
    if not isinstance(space, Discrete):
        raise ValueError(f"env.{name}: expected gymnasium.spaces.Discrete, got {space!r}")
    if int(space.start) != 0:
        raise ValueError(f"env.{name}: Discrete spaces must start at 0, got start={int(space.start)}")
    return int(space.n)


def _read_table(table: Any, S: int, A: int) -> tuple[list[int], list[int], list[float], np.ndarray, bool]:
    """Accumulate the toy-text table into COO triplets (terminated outcomes -> column S) and R (S, A)."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    R = np.zeros((S, A))
    absorbing_needed = False
    for s in range(S):
        for a in range(A):
            try:
                outcomes = table[s][a]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"env.unwrapped.P: no entry for (s={s}, a={a})") from None
            acc: dict[int, float] = {}
            r_sa = 0.0
            for entry in outcomes:
                p, s2, rew, terminated = _parse_outcome(entry, s, a, S)
                if p == 0.0:
                    continue
                col = S if terminated else s2
                absorbing_needed |= terminated
                acc[col] = acc.get(col, 0.0) + p  # accumulate duplicate successors (spec §8, step 2)
                r_sa += p * rew
            R[s, a] = r_sa
            row = s * A + a
            for col in sorted(acc):
                rows.append(row)
                cols.append(col)
                vals.append(acc[col])
    return rows, cols, vals, R, absorbing_needed


def _parse_outcome(entry: Any, s: int, a: int, S: int) -> tuple[float, int, float, bool]:
    try:
        p, s2, rew, terminated = entry
        p, rew = float(p), float(rew)
    except (TypeError, ValueError):
        raise ValueError(
            f"env.unwrapped.P: outcome {entry!r} at (s={s}, a={a}) is not (p, s', r, terminated)"
        ) from None
    if not p >= 0.0:
        raise ValueError(f"env.unwrapped.P: negative or NaN probability {p!r} at (s={s}, a={a})")
    if isinstance(s2, bool) or not isinstance(s2, (int, np.integer)) or not 0 <= int(s2) < S:
        raise ValueError(f"env.unwrapped.P: successor {s2!r} at (s={s}, a={a}) is not a state in range({S})")
    if not np.isfinite(rew):
        raise ValueError(f"env.unwrapped.P: non-finite reward {rew!r} at (s={s}, a={a})")
    return p, int(s2), rew, bool(terminated)


def _initial_distribution(u: Any, S: int, S_tot: int) -> np.ndarray:
    rho = np.zeros(S_tot)
    isd = getattr(u, "initial_state_distrib", None)
    if isd is not None:
        isd = as_float_array("env.unwrapped.initial_state_distrib", isd, ndim=1)
        if isd.shape != (S,):
            raise ValueError(f"env.unwrapped.initial_state_distrib: expected shape ({S},), got {isd.shape}")
        rho[:S] = isd
        return rho
    try:
        probe = copy.deepcopy(u)
    except Exception:  # noqa: BLE001 - some environments hold uncopyable handles
        probe = u
    s0, _ = probe.reset(seed=0)
    warnings.warn(
        f"from_gymnasium: {type(u).__name__} has no initial_state_distrib; using a point mass on the "
        f"reset(seed=0) state {int(s0)}",
        UserWarning,
        stacklevel=3,
    )
    rho[int(s0)] = 1.0
    return rho


def _sparse_saves_memory(nnz: int, S: int, A: int) -> bool:
    """CSR bytes (float64 data + int64 indices + int64 indptr) < dense (S, A, S) float64 bytes."""
    return 16 * nnz + 8 * (S * A + 1) < 8 * S * A * S
