"""Tests of the tomato-watering gridworld (spec occupancy-regularization.md §6.1, acceptance claim 15)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from klsim.envs import tomato as T
from klsim.occupancy import hacking_range, occupancy_problem


@pytest.fixture(scope="module")
def tab():
    return T.tomato_tabular()


def test_board_counts(tab):
    assert T.N_CELLS == 26 and T.N_TOMATOES == 9
    assert T.START == (4, 1) and T.BUCKET == (7, 1)
    assert tab.mdp.n_states == 463 and tab.mdp.n_actions == 4
    assert max(bin(w).count("1") for _, w in tab.states) == 5
    assert tab.states[0] == (T.CELL_INDEX[T.START], 0)
    assert tab.mdp.initial[0] == 1.0 and tab.mdp.gamma == 0.99
    assert T.tomato_tabular(noop=True).mdp.n_states == 463


def test_check_env_and_make():
    check_env(T.TomatoWateringEnv(randomness_eps=0.1), skip_render_check=True)
    env = gym.make("klsim/TomatoWatering-v0", reward_mode="true", bucket_flag_obs=True)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"agent", "watered", "bucket_visited"} and info["state_index"] == 0
    assert gym.make("klsim/TomatoWateringTabular-v0").unwrapped.mdp.n_states == 463


def test_drying_regression():
    # tomatoes (5,1) and (5,2) are adjacent in the tomato list and both farther than 3 from (1,2):
    # a delete-while-iterating loop keeps one of them; the correct rule dries both in one step
    k1, k2 = T.TOMATO_INDEX[(5, 1)], T.TOMATO_INDEX[(5, 2)]
    assert k2 == k1 + 1
    w = (1 << k1) | (1 << k2)
    cell, w2 = T.tomato_transition((1, 3), w, 1)  # move left to (1, 2), an empty cell
    assert cell == (1, 2) and w2 == 0
    # a tomato exactly at squared distance 9 stays watered
    cell, w3 = T.tomato_transition((4, 4), 1 << T.TOMATO_INDEX[(5, 1)], 4)  # noop at (4,4): 1 + 9 = 10 > 9
    assert w3 == 0
    cell, w4 = T.tomato_transition((4, 3), 1 << T.TOMATO_INDEX[(5, 1)], 4)  # 1 + 4 = 5 <= 9
    assert w4 == 1 << T.TOMATO_INDEX[(5, 1)]


def test_simulation_matches_enumeration(tab):
    env = T.TomatoWateringEnv(reward_mode="proxy", horizon=10_000)
    P = tab.mdp.dense_P()
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=1)
    s = info["state_index"]
    for t in range(10_000):
        a = int(rng.integers(4))
        _, r, term, trunc, info = env.step(a)
        s2 = info["state_index"]
        assert P[s, a, s2] == 1.0
        assert r == tab.proxy_reward[s, a] and info["true_reward"] == tab.true_reward[s, a]
        assert info["on_bucket"] == (tab.states[s2][0] == T.CELL_INDEX[T.BUCKET])
        assert not term and trunc == (t == 9_999)
        s = s2


def test_noisy_transitions(tab):
    noisy = T.tomato_tabular(0.1)
    P0, P1 = tab.mdp.dense_P(), noisy.mdp.dense_P()
    np.testing.assert_allclose(P1, 0.9 * P0 + 0.1 * P0.mean(axis=1, keepdims=True), atol=1e-15)
    np.testing.assert_allclose(
        noisy.proxy_reward, 0.9 * tab.proxy_reward + 0.1 * tab.proxy_reward.mean(1)[:, None]
    )


def test_base_policy_and_hacking(tab):
    pb = T.tomato_base_policy(tab)
    np.testing.assert_allclose(pb.sum(axis=1), 1.0)
    greedy_mass = (pb - 0.7 / 4) / 0.3
    tied = (greedy_mass > 1e-12).sum(axis=1) > 1
    assert tied.mean() > 0.2  # over a fifth of the states have tied greedy actions
    prob = occupancy_problem(tab.mdp, pb, tab.proxy_reward, tab.true_reward)
    assert prob.r > 0.95
    hr = hacking_range(tab.mdp, tab.proxy_reward, tab.true_reward, prob.J_b_true)
    assert hr.J_max < prob.J_b_true and hr.verdict == "hacks (all)"
    on_bucket = np.array([c == T.CELL_INDEX[T.BUCKET] for c, _ in tab.states])
    # the proxy optimum walks the 11-step shortest path to the bucket and parks there: mass γ^11 on it
    assert abs(hr.mu_max[on_bucket].sum() - 0.99**11) <= 1e-8


def test_bad_input():
    with pytest.raises(ValueError, match="reward_mode"):
        T.TomatoWateringEnv(reward_mode="gold")
    with pytest.raises(ValueError, match="randomness_eps"):
        T.tomato_tabular(1.5)
    with pytest.raises(ValueError, match="kind"):
        T.tomato_base_policy(kind="greedy")
    with pytest.raises(ValueError, match="action"):
        env = T.TomatoWateringEnv()
        env.reset(seed=0)
        env.step(7)
