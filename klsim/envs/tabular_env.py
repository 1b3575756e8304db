"""Export any :class:`~klsim.mdp.TabularMDP` as a ``gymnasium.Env`` (spec §8, "Export").

References: spec ``kl-regularized-dp.md`` §8; Towers et al. (2024), *Gymnasium* (toy-text API).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from klsim._validation import check_int
from klsim.mdp import TabularMDP

__all__ = ["TabularEnv", "absorbing_states", "ABSORBING_TOL"]

ABSORBING_TOL = 1e-12
"""A self-loop counts as probability 1 when it is within this tolerance of 1."""


def absorbing_states(mdp: TabularMDP) -> np.ndarray:
    """Boolean mask (S,) of absorbing states.

    A state s is absorbing when, for every action a, P(s|s, a) = 1 (within 1e-12) and r(s, a) = 0
    exactly: the episode has ended and nothing more is earned.  These are the states where
    :class:`TabularEnv` reports ``terminated=True`` (spec §8).
    """
    S, A = mdp.n_states, mdp.n_actions
    indptr, indices, data = mdp.to_sparse().csr
    rows = np.repeat(np.arange(S * A), np.diff(indptr))
    loop = indices == rows // A
    self_p = np.zeros(S * A)
    np.add.at(self_p, rows[loop], data[loop])
    ok = (np.abs(self_p - 1.0) <= ABSORBING_TOL) & (mdp.R.ravel() == 0.0)
    return ok.reshape(S, A).all(axis=1)


class TabularEnv(gym.Env):
    """A :class:`TabularMDP` as a Gymnasium environment with Discrete spaces.

    Parameters
    ----------
    mdp : TabularMDP
        The MDP (dense or sparse).  Its ``gamma`` is kept on ``self.mdp`` but plays no part in the
        dynamics.
    render_mode : {None, "ansi"}
        ``"ansi"``: :meth:`render` returns a one-line text description of the current state.
    max_steps : int, optional
        If given, ``step`` reports ``truncated=True`` from the ``max_steps``-th step of an episode on.
        Otherwise ``truncated`` is always False and time limits come from ``gymnasium.make``'s
        ``TimeLimit`` wrapper (``max_episode_steps`` of the registered ids).

    Attributes
    ----------
    mdp : TabularMDP
    P : dict
        Toy-text table ``P[s][a] = [(p, s', r(s, a), terminated(s')), ...]``, one tuple per nonzero
        entry of row (s, a), successors in increasing order; built on first access.
        ``from_gymnasium(TabularEnv(g), gamma=g.gamma)`` reproduces ``g`` (within rounding of
        Σ p·r(s, a)) whenever ``g`` has no absorbing state.
    initial_state_distrib : ndarray (S,)
        ρ, read by :func:`~klsim.envs.from_gymnasium`.
    absorbing : ndarray of bool (S,)
        See :func:`absorbing_states`.

    Notes
    -----
    * ``reset`` calls ``super().reset(seed=seed)`` first and draws s₀ ~ ρ; ``step(a)`` returns
      ``(s', r(s, a), s' is absorbing, truncated, {"prob": P(s'|s, a)})``.  ``r`` is the expected reward
      the MDP stores.  ``reset`` returns ``{"prob": ρ(s₀)}``.
    * Every draw uses ``self.np_random`` (one uniform per draw, inverted on the CSR row's cumulative
      sum), so a seed fixes the whole trajectory (spec §12, pitfall 10).
    * An MDP *with* absorbing states round-trips to an equivalent MDP with one more state: the export
      marks transitions into absorbing states as terminated, and the import sends them to a new
      absorbing state (the values of the original states are unchanged).

    Examples
    --------
    >>> from klsim.mdp import garnet
    >>> env = TabularEnv(garnet(30, 4, 3, seed=0))
    >>> obs, info = env.reset(seed=1)
    >>> obs2, reward, terminated, truncated, info = env.step(0)
    >>> 0 <= obs2 < 30, terminated, truncated
    (True, False, False)
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self, mdp: TabularMDP, *, render_mode: str | None = None, max_steps: int | None = None
    ) -> None:
        if not isinstance(mdp, TabularMDP):
            raise ValueError(f"mdp: expected a klsim.TabularMDP, got {type(mdp).__name__}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: unknown value {render_mode!r}; valid: None, 'ansi'")
        self.max_steps = None if max_steps is None else check_int("max_steps", max_steps, 1)
        self.mdp = mdp
        self.render_mode = render_mode
        S, A = mdp.n_states, mdp.n_actions
        self.observation_space = spaces.Discrete(S)
        self.action_space = spaces.Discrete(A)
        self._indptr, self._indices, self._data = mdp.to_sparse().csr
        self._rho_cdf = np.cumsum(mdp.initial)
        self.initial_state_distrib = mdp.initial
        self.absorbing = absorbing_states(mdp)
        self.absorbing.setflags(write=False)
        self._P: dict[int, dict[int, list[tuple[float, int, float, bool]]]] | None = None
        self.s: int | None = None
        self.lastaction: int | None = None
        self.lastreward: float | None = None
        self._elapsed = 0

    # ------------------------------------------------------------------ toy-text table
    @property
    def P(self) -> dict[int, dict[int, list[tuple[float, int, float, bool]]]]:
        """The toy-text transition table (see the class docstring); built once, on first access."""
        if self._P is None:
            S, A = self.mdp.n_states, self.mdp.n_actions
            R, ip, ix, dt, ab = self.mdp.R, self._indptr, self._indices, self._data, self.absorbing
            table: dict[int, dict[int, list[tuple[float, int, float, bool]]]] = {}
            for s in range(S):
                table[s] = {}
                for a in range(A):
                    row = s * A + a
                    r = float(R[s, a])
                    table[s][a] = [
                        (float(dt[k]), int(ix[k]), r, bool(ab[ix[k]]))
                        for k in range(ip[row], ip[row + 1])
                        if dt[k] > 0.0
                    ]
            self._P = table
        return self._P

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        """Start an episode: s₀ ~ ρ drawn with ``self.np_random``; returns ``(s₀, {"prob": ρ(s₀)})``."""
        super().reset(seed=seed)
        self.s = _draw(self._rho_cdf, self.np_random.random())
        self.lastaction, self.lastreward, self._elapsed = None, None, 0
        return self.s, {"prob": float(self.mdp.initial[self.s])}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        """Take ``action``: s' ~ P(·|s, a) with ``self.np_random``; reward r(s, a).

        Raises
        ------
        ValueError
            If ``reset`` was not called, or ``action`` is not in the action space.
        """
        if self.s is None:
            raise ValueError("step: call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action: expected an integer in range({self.action_space.n}), got {action!r}")
        s, a = self.s, int(action)
        row = s * self.mdp.n_actions + a
        lo, hi = int(self._indptr[row]), int(self._indptr[row + 1])
        k = lo + _draw(np.cumsum(self._data[lo:hi]), self.np_random.random())
        s2 = int(self._indices[k])
        reward = float(self.mdp.R[s, a])
        self.s, self.lastaction, self.lastreward = s2, a, reward
        self._elapsed += 1
        truncated = self.max_steps is not None and self._elapsed >= self.max_steps
        return s2, reward, bool(self.absorbing[s2]), bool(truncated), {"prob": float(self._data[k])}

    def render(self) -> str | None:
        """``"ansi"``: a one-line description of the state, the last action and reward; else warn."""
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                "Pass render_mode='ansi' to TabularEnv or gymnasium.make."
            )
            return None
        if self.s is None:
            return "TabularEnv: not reset\n"
        tail = " (absorbing)" if self.absorbing[self.s] else ""
        last = (
            ""
            if self.lastaction is None
            else f"  last action {self.lastaction}, reward {self.lastreward:.6g}"
        )
        return f"state {self.s} of {self.mdp.n_states}{tail}{last}\n"

    def __repr__(self) -> str:
        return f"TabularEnv({self.mdp!r})"


def _draw(cdf: np.ndarray, u: float) -> int:
    """Index of the first cumulative weight exceeding u·total (inverse-CDF draw; zero weights never win)."""
    k = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    return min(k, cdf.size - 1)
