"""Tests of the Gymnasium bridge (klsim.envs): spec kl-regularized-dp.md §8 and §10 claim 18.

Independent references: hand-computed FrozenLake rows, the raw toy-text tables read directly by a
value iteration written here, QuantEcon ``DiscreteDP``, and Gymnasium's own ``check_env``.
"""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import scipy.sparse as sp
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import klsim
from klsim.envs import (
    BUILTIN_ENV_IDS,
    TabularEnv,
    absorbing_states,
    from_gymnasium,
    klsim_env_ids,
    register_mdp,
)
from klsim.mdp import TabularMDP, chain, garnet, gridworld, puterman_two_state

LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3  # FrozenLake's action order
CW_UP, CW_RIGHT, CW_DOWN, CW_LEFT = 0, 1, 2, 3  # CliffWalking's action order


def _latest(name: str) -> str:
    """The newest registered version of a Gymnasium id (Taxi-v3 became Taxi-v4 in Gymnasium 1.2)."""
    ids = [i for i in gym.registry if re.fullmatch(rf"{name}-v\d+", i)]
    return max(ids, key=lambda i: int(i.rsplit("-v", 1)[1]))


def _raw_value_iteration(table: dict, S: int, A: int, gamma: float, tol: float = 1e-14) -> np.ndarray:
    """Plain VI on the raw toy-text dict, independent of klsim: v(s) = max_a Σ p (r + γ v(s') [not term])."""
    v = [0.0] * S
    while True:
        new = [
            max(sum(p * (r + (0.0 if t else gamma * v[s2])) for p, s2, r, t in table[s][a]) for a in range(A))
            for s in range(S)
        ]
        delta = max(abs(x - y) for x, y in zip(new, v))
        v = new
        if delta * gamma / (1 - gamma) < tol:  # ‖v − v*‖∞ ≤ γΔ/(1−γ)
            return np.array(v)


def _numpy_value_iteration(mdp: TabularMDP, tol: float = 1e-14) -> np.ndarray:
    """VI on the imported arrays (numpy only), to the same contraction bound."""
    v = np.zeros(mdp.n_states)
    M = mdp.transition_matrix()
    while True:
        new = (mdp.R + mdp.gamma * (M @ v).reshape(mdp.n_states, mdp.n_actions)).max(axis=1)
        delta = np.max(np.abs(new - v))
        v = new
        if delta * mdp.gamma / (1 - mdp.gamma) < tol:
            return v


# ----------------------------------------------------------------------------- import: FrozenLake


def test_frozenlake_slippery_duplicates_accumulate():
    env = gym.make("FrozenLake-v1", is_slippery=True)
    mdp = from_gymnasium(env, gamma=0.99)
    assert (mdp.n_states, mdp.n_actions) == (17, 4)
    P = mdp.dense_P()
    # Cell 0 (top-left corner), action LEFT: the slips are DOWN, LEFT, UP (each 1/3).  LEFT and UP hit
    # walls and stay in 0, DOWN goes to 4: the row is {0: 2/3, 4: 1/3}.  Assigning instead of accumulating
    # would give P[0, LEFT, 0] = 1/3.
    expected = np.zeros(17)
    expected[0], expected[4] = 2 / 3, 1 / 3
    np.testing.assert_allclose(P[0, LEFT], expected, rtol=0, atol=1e-15)
    # Cell 0, action UP: slips LEFT, UP, RIGHT -> 0, 0, 1.
    expected = np.zeros(17)
    expected[0], expected[1] = 2 / 3, 1 / 3
    np.testing.assert_allclose(P[0, UP], expected, rtol=0, atol=1e-15)
    # Cell 14 (left of the goal 15), action RIGHT: slips DOWN (wall, stays 14), RIGHT (goal, terminated,
    # reward 1) and UP (cell 10).  The goal outcome goes to the absorbing state 16 and its reward counts.
    expected = np.zeros(17)
    expected[14], expected[16], expected[10] = 1 / 3, 1 / 3, 1 / 3
    np.testing.assert_allclose(P[14, RIGHT], expected, rtol=0, atol=1e-15)
    assert mdp.R[14, RIGHT] == pytest.approx(1 / 3, abs=1e-15)
    # Holes (5, 7, 11, 12) are terminal: stepping into one ends the episode with reward 0.
    # Cell 1, DOWN: slips RIGHT (2), DOWN (hole 5 -> absorbing), LEFT (0).
    expected = np.zeros(17)
    expected[2], expected[16], expected[0] = 1 / 3, 1 / 3, 1 / 3
    np.testing.assert_allclose(P[1, DOWN], expected, rtol=0, atol=1e-15)
    assert mdp.R[1, DOWN] == 0.0


def test_frozenlake_not_slippery_is_deterministic():
    mdp = from_gymnasium(gym.make("FrozenLake-v1", is_slippery=False), gamma=0.9)
    P = mdp.dense_P()
    assert np.all(np.isin(P, (0.0, 1.0)))
    assert P[0, RIGHT, 1] == 1.0 and P[0, LEFT, 0] == 1.0
    assert P[14, RIGHT, 16] == 1.0 and mdp.R[14, RIGHT] == 1.0  # goal -> absorbing, reward counted
    assert P[16, :, 16].tolist() == [1.0] * 4 and mdp.R[16].tolist() == [0.0] * 4


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("FrozenLake-v1", {"is_slippery": True}),
        ("FrozenLake-v1", {"is_slippery": False}),
        ("FrozenLake8x8-v1", {"is_slippery": True}),
        ("FrozenLake8x8-v1", {"is_slippery": False}),
        ("CliffWalkingSlippery", {}),
    ],
)
def test_frozenlake_optimum_equals_raw_dict_value_iteration(env_id, kwargs):
    """Claim 18: the imported optimum equals VI on the raw dict table (1e-10)."""
    gamma = 0.99
    env = gym.make(env_id if env_id.startswith("Frozen") else _latest(env_id), **kwargs)
    u = env.unwrapped
    S, A = u.observation_space.n, u.action_space.n
    v_raw = _raw_value_iteration(u.P, S, A, gamma)
    mdp = from_gymnasium(env, gamma=gamma)
    v_imp = _numpy_value_iteration(mdp)
    np.testing.assert_allclose(v_imp[:S], v_raw, rtol=0, atol=1e-10)
    assert v_imp[S] == 0.0  # the absorbing state
    assert np.all(v_raw[u.initial_state_distrib > 0] != 0.0)  # guards against an all-zero table
    np.testing.assert_array_equal(mdp.initial[:S], u.initial_state_distrib)


# ----------------------------------------------------------------------------- import: CliffWalking, Taxi


def test_cliffwalking_goal_becomes_absorbing_and_cliff_follows_the_table():
    env = gym.make(_latest("CliffWalking"))
    u = env.unwrapped
    mdp = from_gymnasium(env, gamma=0.99)
    S = 48
    assert (mdp.n_states, mdp.n_actions) == (S + 1, 4)
    P = mdp.dense_P()
    goal, start = 47, 36
    # Stepping DOWN from 35 (just above the goal) terminates with reward -1: absorbing state 48, -1 counted.
    assert P[35, CW_DOWN, S] == 1.0 and mdp.R[35, CW_DOWN] == -1.0
    # The goal cell's own row is not absorbing in the raw table (moving UP from it reaches 35 unterminated);
    # the import does not trust it: no transition enters the goal cell, and the added state absorbs.
    assert u.P[goal][CW_UP][0][1] == 35 and u.P[goal][CW_UP][0][3] is False
    assert np.all(P[:, :, goal] == 0.0)
    assert np.all(P[S, :, S] == 1.0) and np.all(mdp.R[S] == 0.0)
    assert absorbing_states(mdp).tolist() == [False] * S + [True]
    # Every raw outcome: terminated <=> the import sends it to the absorbing state; the cliff (reward -100,
    # back to the start, not terminated in Gymnasium >= 1.0) stays a non-terminal transition.
    for s in range(S):
        for a in range(4):
            (p, s2, r, t), *rest = u.P[s][a]
            assert not rest and p == 1.0
            assert P[s, a, S if t else s2] == 1.0 and mdp.R[s, a] == r
    assert P[start, CW_RIGHT, start] == 1.0 and mdp.R[start, CW_RIGHT] == -100.0
    v = _numpy_value_iteration(mdp.with_gamma(0.9))
    np.testing.assert_allclose(v[:S], _raw_value_iteration(u.P, S, 4, 0.9), rtol=0, atol=1e-10)
    # Optimal path from the start along the cliff edge: 13 steps of -1 (the last one terminates).
    assert v[start] == pytest.approx(-(1 - 0.9**13) / (1 - 0.9), abs=1e-10)


def test_taxi_import_is_sparse_with_absorbing_state():
    env = gym.make(_latest("Taxi"))
    u = env.unwrapped
    mdp = from_gymnasium(env, gamma=0.95)
    assert (mdp.n_states, mdp.n_actions) == (501, 6)
    assert mdp.is_sparse  # 501*6*501 dense float64 would be 12 MB; the CSR is a few kB
    indptr, _, _ = mdp.csr
    assert np.all(np.diff(indptr) == 1)  # deterministic
    n_term = sum(t for s in range(500) for a in range(6) for (_, _, _, t) in u.P[s][a])
    assert mdp.dense_P()[:500, :, 500].sum() == n_term > 0
    np.testing.assert_allclose(mdp.initial[:500], u.initial_state_distrib, rtol=0, atol=0)
    np.testing.assert_allclose(
        _numpy_value_iteration(mdp)[:500],
        _raw_value_iteration(u.P, 500, 6, 0.95, tol=1e-11),
        rtol=0,
        atol=1e-10,
    )


def test_layout_choice_and_reads_through_wrappers():
    env = gym.make("FrozenLake-v1")  # TimeLimit, OrderEnforcing, PassiveEnvChecker wrappers
    assert env.unwrapped is not env
    dense = from_gymnasium(env, gamma=0.9, layout="dense")
    sparse = from_gymnasium(env, gamma=0.9)
    assert not dense.is_sparse and sparse.is_sparse
    assert dense.isclose(sparse, atol=0.0)


def test_default_gamma_is_0_99():
    assert from_gymnasium(gym.make("FrozenLake-v1")).gamma == 0.99


# ----------------------------------------------------------------------------- import: bad input


class _ToyEnv(gym.Env):
    """A minimal toy-text style environment with a hand-written table."""

    def __init__(self, table, n_states=2, n_actions=1, obs_space=None, isd=None):
        self.observation_space = obs_space if obs_space is not None else spaces.Discrete(n_states)
        self.action_space = spaces.Discrete(n_actions)
        if table is not None:
            self.P = table
        if isd is not None:
            self.initial_state_distrib = isd

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 1, {}

    def step(self, action):  # pragma: no cover - never stepped
        raise NotImplementedError


_GOOD = {0: {0: [(1.0, 1, 0.0, False)]}, 1: {0: [(1.0, 1, 0.0, False)]}}


def test_bad_input_errors():
    with pytest.raises(ValueError, match="observation_space: expected gymnasium.spaces.Discrete"):
        from_gymnasium(_ToyEnv(_GOOD, obs_space=spaces.Box(0.0, 1.0, (2,))), gamma=0.9)
    with pytest.raises(ValueError, match="observation_space: expected gymnasium.spaces.Discrete"):
        from_gymnasium(gym.make("CartPole-v1"), gamma=0.9)
    with pytest.raises(ValueError, match="start at 0"):
        from_gymnasium(_ToyEnv(_GOOD, obs_space=spaces.Discrete(2, start=1)), gamma=0.9)
    with pytest.raises(ValueError, match="no transition table `P`"):
        from_gymnasium(_ToyEnv(None), gamma=0.9)
    with pytest.raises(ValueError, match="env: expected a gymnasium.Env"):
        from_gymnasium(object(), gamma=0.9)
    with pytest.raises(ValueError, match="gamma"):
        from_gymnasium(_ToyEnv(_GOOD), gamma=1.0)
    with pytest.raises(ValueError, match="layout"):
        from_gymnasium(_ToyEnv(_GOOD), gamma=0.9, layout="csr")
    # a row that does not sum to 1 within 1e-12 names (s, a)
    short = {0: {0: [(1.0, 1, 0.0, False)]}, 1: {0: [(0.5, 1, 0.0, False), (0.5 - 1e-11, 0, 0.0, False)]}}
    with pytest.raises(ValueError, match=r"row \(s=1, a=0\) sums to"):
        from_gymnasium(_ToyEnv(short), gamma=0.9)
    with pytest.raises(ValueError, match=r"no entry for \(s=1, a=0\)"):
        from_gymnasium(_ToyEnv({0: {0: [(1.0, 1, 0.0, False)]}, 1: {}}), gamma=0.9)
    with pytest.raises(ValueError, match=r"negative or NaN probability .* \(s=0, a=0\)"):
        from_gymnasium(
            _ToyEnv({0: {0: [(-0.5, 1, 0.0, False), (1.5, 0, 0.0, False)]}, 1: _GOOD[1]}), gamma=0.9
        )
    with pytest.raises(ValueError, match=r"successor 2 at \(s=0, a=0\)"):
        from_gymnasium(_ToyEnv({0: {0: [(1.0, 2, 0.0, False)]}, 1: _GOOD[1]}), gamma=0.9)
    with pytest.raises(ValueError, match=r"non-finite reward nan at \(s=0, a=0\)"):
        from_gymnasium(_ToyEnv({0: {0: [(1.0, 1, float("nan"), False)]}, 1: _GOOD[1]}), gamma=0.9)
    with pytest.raises(ValueError, match=r"not \(p, s', r, terminated\)"):
        from_gymnasium(_ToyEnv({0: {0: [(1.0, 1)]}, 1: _GOOD[1]}), gamma=0.9)


def test_absorbing_state_added_only_for_positive_probability_termination():
    table = {0: {0: [(1.0, 1, 2.0, False), (0.0, 0, 5.0, True)]}, 1: {0: [(1.0, 1, 0.0, False)]}}
    mdp = from_gymnasium(_ToyEnv(table, isd=np.array([1.0, 0.0])), gamma=0.9)
    assert mdp.n_states == 2 and mdp.R[0, 0] == 2.0
    table[1][0] = [(0.25, 0, 1.0, True), (0.75, 1, 0.0, False)]
    mdp = from_gymnasium(_ToyEnv(table, isd=np.array([1.0, 0.0])), gamma=0.9)
    assert mdp.n_states == 3 and mdp.dense_P()[1, 0].tolist() == [0.0, 0.75, 0.25] and mdp.R[1, 0] == 0.25
    assert mdp.initial.tolist() == [1.0, 0.0, 0.0]


@settings(max_examples=25)
@given(
    S=st.integers(1, 12),
    A=st.integers(1, 4),
    b_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
    dense=st.booleans(),
)
def test_round_trip_property(S, A, b_frac, seed, dense):
    b = 1 + int(b_frac * (S - 1))
    g = garnet(S, A, b, seed=seed, gamma=0.7)
    g = g.to_dense() if dense else g
    back = from_gymnasium(TabularEnv(g), gamma=0.7)
    assert back.isclose(g)


def test_missing_initial_distribution_warns_and_uses_reset_state():
    with pytest.warns(UserWarning, match="no initial_state_distrib"):
        mdp = from_gymnasium(_ToyEnv(_GOOD), gamma=0.9)
    assert mdp.initial.tolist() == [0.0, 1.0]
    assert mdp.n_states == 2  # no terminated outcome: no absorbing state added


# ----------------------------------------------------------------------------- export: TabularEnv


def test_round_trip_garnet():
    """Claim 18: from_gymnasium(TabularEnv(g)) == g."""
    for g in (garnet(30, 4, 3, seed=0), garnet(12, 3, 12, seed=5, gamma=0.5).to_dense()):
        back = from_gymnasium(TabularEnv(g), gamma=g.gamma)
        assert back.isclose(g)
        np.testing.assert_array_equal(back.dense_P(), g.dense_P())
        np.testing.assert_array_equal(back.initial, g.initial)
    g99 = garnet(10, 2, 4, seed=1, gamma=0.99)
    assert from_gymnasium(TabularEnv(g99)).isclose(g99)  # the default gamma


def test_round_trip_of_imported_frozenlake_preserves_values():
    mdp = from_gymnasium(gym.make("FrozenLake-v1"), gamma=0.95)
    again = from_gymnasium(TabularEnv(mdp), gamma=0.95)
    # the old absorbing state 16 is re-entered as terminated, so one more absorbing state (17) appears
    assert again.n_states == mdp.n_states + 1
    np.testing.assert_allclose(
        _numpy_value_iteration(again)[:17], _numpy_value_iteration(mdp), rtol=0, atol=1e-10
    )


def test_step_semantics_and_table():
    mdp = from_gymnasium(gym.make("FrozenLake-v1", is_slippery=False), gamma=0.9)
    env = TabularEnv(mdp, render_mode="ansi")
    assert env.absorbing.tolist() == [False] * 16 + [True]
    assert env.P[14][RIGHT] == [(1.0, 16, 1.0, True)]
    assert env.P[0][LEFT] == [(1.0, 0, 0.0, False)]
    obs, info = env.reset(seed=0)
    assert obs == 0 and info == {"prob": 1.0} and isinstance(obs, int)
    path = [DOWN, DOWN, RIGHT, RIGHT, DOWN, RIGHT]  # 0 -> 4 -> 8 -> 9 -> 10 -> 14 -> goal
    rewards, terms = [], []
    for a in path:
        obs, r, term, trunc, info = env.step(a)
        assert isinstance(r, float) and isinstance(term, bool) and trunc is False and info == {"prob": 1.0}
        rewards.append(r)
        terms.append(term)
    assert obs == 16 and rewards == [0.0] * 5 + [1.0] and terms == [False] * 5 + [True]
    assert env.render().startswith("state 16 of 17 (absorbing)")


def test_sampling_frequencies_and_seeding():
    g = garnet(5, 2, 3, seed=2)
    env = TabularEnv(g)
    env.reset(seed=7)
    n, counts = 6000, np.zeros(5)
    for _ in range(n):
        env.s = 3
        s2, *_ = env.step(1)
        counts[s2] += 1
    p = g.dense_P()[3, 1]
    # binomial standard error sqrt(p(1-p)/n) <= 0.0065; allow 5 of them
    np.testing.assert_allclose(counts / n, p, rtol=0, atol=5 * 0.0065)
    assert np.all(counts[p == 0] == 0)

    def trajectory(seed):
        e = TabularEnv(g)
        out = [e.reset(seed=seed)[0]]
        out += [e.step(k % 2)[0] for k in range(50)]
        return out

    assert trajectory(3) == trajectory(3)
    assert trajectory(3) != trajectory(4)


def test_initial_state_follows_rho():
    rho = np.array([0.0, 0.25, 0.75])
    m = TabularMDP(np.full((3, 1, 3), 1 / 3), np.zeros((3, 1)), 0.9, rho)
    env = TabularEnv(m)
    env.reset(seed=0)
    draws = np.array([env.reset()[0] for _ in range(4000)])
    assert np.all(draws != 0)
    assert abs(np.mean(draws == 2) - 0.75) < 5 * np.sqrt(0.75 * 0.25 / 4000)


def test_max_steps_truncates():
    env = TabularEnv(chain(4), max_steps=3)
    env.reset(seed=0)
    assert [env.step(1)[3] for _ in range(3)] == [False, False, True]
    assert env.reset()[0] == 0 and env.step(1)[3] is False


def test_tabular_env_bad_input():
    with pytest.raises(ValueError, match="mdp: expected a klsim.TabularMDP"):
        TabularEnv(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="render_mode"):
        TabularEnv(chain(3), render_mode="human")
    with pytest.raises(ValueError, match="max_steps"):
        TabularEnv(chain(3), max_steps=0)
    env = TabularEnv(chain(3))
    with pytest.raises(ValueError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(2)


def test_absorbing_requires_zero_reward_and_sure_self_loop():
    P = np.zeros((3, 2, 3))
    P[0, :, 1] = 1.0
    P[1, :, 1] = 1.0  # absorbing
    P[2, :, 2] = 1.0  # self-loop but rewarded under action 1: not absorbing
    R = np.zeros((3, 2))
    R[2, 1] = 1.0
    assert absorbing_states(TabularMDP(P, R, 0.9)).tolist() == [False, True, False]
    assert absorbing_states(TabularMDP(sp.csr_array(P.reshape(6, 3)), R, 0.9)).tolist() == [
        False,
        True,
        False,
    ]


# ----------------------------------------------------------------------------- registration and check_env


def test_check_env_passes_for_every_klsim_id():
    """Claim 18: check_env passes, without warnings, for every klsim/ id; each has max_episode_steps (spec §8)."""
    ids = klsim_env_ids()
    assert set(BUILTIN_ENV_IDS) <= set(ids)
    problems = {}
    for env_id in ids:
        env = gym.make(env_id)
        steps = env.spec.max_episode_steps
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        msgs = [str(w.message) for w in caught]
        if steps is None or steps < 1:
            msgs.append(f"registered without max_episode_steps (got {steps!r})")
        if msgs:
            problems[env_id] = msgs
        env.close()
    assert problems == {}


def test_check_env_on_direct_and_imported_envs():
    for mdp in (gridworld(), puterman_two_state(), from_gymnasium(gym.make("FrozenLake-v1"))):
        # without gymnasium.make there is no spec, so check_env says it cannot re-make the env
        with pytest.warns(UserWarning, match="not having a spec"):
            check_env(TabularEnv(mdp, render_mode="ansi"))


def test_garnet_id_kwargs_and_time_limit():
    env = gym.make("klsim/Garnet-v0", n_states=7, n_actions=2, branching=2, seed=3, gamma=0.8)
    g = env.unwrapped.mdp
    assert g.isclose(garnet(7, 2, 2, seed=3, gamma=0.8), atol=0.0)
    assert gym.make("klsim/Garnet-v0").unwrapped.mdp.isclose(garnet(30, 4, 3, seed=0, gamma=0.9), atol=0.0)
    env.reset(seed=0)
    truncs = [env.step(0)[3] for _ in range(200)]
    assert truncs == [False] * 199 + [True]  # max_episode_steps = 200
    ansi = gym.make("klsim/Garnet-v0", render_mode="ansi")
    ansi.reset(seed=0)
    assert ansi.render().startswith("state ")


def test_register_mdp_idempotent_and_conflicts():
    spec = register_mdp("klsimtest/TinyChain-v0", chain, max_episode_steps=5, kwargs={"n_states": 3})
    assert register_mdp("klsimtest/TinyChain-v0", chain, max_episode_steps=5, kwargs={"n_states": 3}) is spec
    env = gym.make("klsimtest/TinyChain-v0", slip=0.0)
    assert env.unwrapped.mdp.isclose(chain(3, slip=0.0), atol=0.0)
    with pytest.raises(ValueError, match="already registered"):
        register_mdp("klsimtest/TinyChain-v0", gridworld, max_episode_steps=5)
    with pytest.raises(ValueError, match="already registered"):
        register_mdp("klsimtest/TinyChain-v0", chain, max_episode_steps=6, kwargs={"n_states": 3})
    with pytest.raises(ValueError, match="version"):
        register_mdp("klsimtest/NoVersion", chain)
    with pytest.raises(ValueError, match="max_episode_steps"):
        register_mdp("klsimtest/Zero-v0", chain, max_episode_steps=0)
    with pytest.raises(ValueError, match="mdp_factory"):
        register_mdp("klsimtest/NotCallable-v0", 3)
    register_mdp("klsimtest/Wrong-v0", lambda: np.eye(2))
    with pytest.raises(ValueError, match="not a TabularMDP"):
        gym.make("klsimtest/Wrong-v0")
    # re-importing klsim.envs re-registers nothing and raises nothing
    import importlib

    importlib.reload(importlib.import_module("klsim.envs"))
    assert klsim_env_ids() == sorted(i for i in gym.registry if i.startswith("klsim/"))


def test_exports_from_klsim():
    assert klsim.from_gymnasium is from_gymnasium
    assert klsim.TabularEnv is TabularEnv
    assert klsim.register_mdp is register_mdp


# ----------------------------------------------------------------------------- QuantEcon parity of klsim.dp


def _quantecon_ddp(mdp: TabularMDP):
    qe = pytest.importorskip("quantecon")
    S, A = mdp.n_states, mdp.n_actions
    s_idx = np.repeat(np.arange(S), A)
    a_idx = np.tile(np.arange(A), S)
    return qe.markov.DiscreteDP(
        mdp.R.ravel(), sp.csr_matrix(mdp.transition_matrix()), mdp.gamma, s_idx, a_idx
    )


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "FrozenLake8x8-v1", "Taxi"])
def test_dp_parity_with_quantecon_on_imported_envs(env_id):
    from klsim.dp import policy_iteration, value_iteration

    env = gym.make(_latest("Taxi") if env_id == "Taxi" else env_id)
    mdp = from_gymnasium(env, gamma=0.95)
    ddp = _quantecon_ddp(mdp)
    eps = 1e-8
    qe_vi = ddp.solve(method="value_iteration", epsilon=eps)
    qe_pi = ddp.solve(method="policy_iteration")
    vi = value_iteration(mdp, tol=eps)
    pi = policy_iteration(mdp)
    # PI is exact: both equal v* to rounding.
    np.testing.assert_allclose(pi.v, qe_pi.v, rtol=0, atol=1e-10)
    # VI uses QuantEcon's stopping rule: each is within eps/2 of v*, and they agree with each other.
    assert np.max(np.abs(vi.v - qe_pi.v)) <= eps / 2
    assert np.max(np.abs(qe_vi.v - qe_pi.v)) <= eps / 2
    np.testing.assert_allclose(vi.v, qe_vi.v, rtol=0, atol=eps)
    # The greedy policies of klsim's PI are optimal: their exact value (QuantEcon's evaluation) is v*.
    sigma = np.argmax(pi.log_policy, axis=1)
    np.testing.assert_allclose(ddp.evaluate_policy(sigma), qe_pi.v, rtol=0, atol=1e-10)
    # and both agree with the independent VI on the raw toy-text table
    u = env.unwrapped
    S = u.observation_space.n
    np.testing.assert_allclose(
        pi.v[:S], _raw_value_iteration(u.P, S, u.action_space.n, 0.95, tol=1e-11), rtol=0, atol=1e-10
    )
