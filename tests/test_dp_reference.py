"""KL toward a fixed reference (spec §7, §10 claim 17): closed forms, limits, monotonicity, brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from klsim.dp import (
    behavior_cloning,
    kl_ref_backward_induction,
    kl_ref_tradeoff,
    optimal_q,
    policy_evaluation,
    soft_value_iteration,
)
from klsim.mdp import TabularMDP, garnet

T1 = 1e-10


def _log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def g30():
    return garnet(30, 4, 3, seed=0)


@pytest.fixture(scope="module")
def ref30():
    return _log_softmax(np.random.default_rng(4).standard_normal((30, 4)))


@pytest.mark.parametrize("lam", [0.05, 1.0, 20.0])
def test_one_state_closed_form(lam):
    r = np.array([[1.0, 0.3, -2.0]])
    mu = np.array([[0.2, 0.5, 0.3]])
    mdp = TabularMDP(np.ones((1, 3, 1)), r, 0.9)
    res = soft_value_iteration(mdp, kl_coef=lam, log_ref=np.log(mu))
    z = np.log(mu[0]) + r[0] / lam
    closed = lam * (z.max() + np.log(np.exp(z - z.max()).sum())) / (1 - 0.9)
    assert abs(res.v[0] - closed) <= T1 * max(1.0, abs(closed))
    # π*_λ = sm(ln μ + q/λ) with q = r + γ v
    np.testing.assert_allclose(
        np.exp(res.log_policy[0]), np.exp(_log_softmax(np.log(mu[0]) + r[0] / lam)), atol=T1
    )


def test_large_lambda_returns_the_reference(g30, ref30):
    res = soft_value_iteration(g30, kl_coef=1e5, log_ref=ref30)
    assert np.max(np.abs(np.exp(res.log_policy) - np.exp(ref30))) <= 1e-3


def test_small_lambda_gives_the_optimum_within_the_support(g30):
    rng = np.random.default_rng(1)
    allowed = rng.random((30, 4)) < 0.6
    allowed[np.arange(30), rng.integers(0, 4, 30)] = True
    mu = np.where(allowed, rng.random((30, 4)) + 0.1, 0.0)
    mu /= mu.sum(1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_ref = np.log(mu)
    lam = 1e-3
    res = soft_value_iteration(g30, kl_coef=lam, log_ref=log_ref)
    assert np.all(np.isneginf(res.log_policy[~allowed]))  # zeros of π_ref are hard constraints
    # restricted MDP: a forbidden action becomes a copy of the first allowed one
    P, R = g30.dense_P().copy(), np.array(g30.R)
    for s in range(30):
        a0 = int(np.flatnonzero(allowed[s])[0])
        for a in np.flatnonzero(~allowed[s]):
            P[s, a], R[s, a] = P[s, a0], R[s, a0]
    _, v_restricted = optimal_q(TabularMDP(P, R, 0.9))
    slack = lam * np.log(1.0 / mu[allowed].min()) / (1 - 0.9)  # λ max KL(deterministic‖μ)/(1−γ)
    assert np.all(res.v <= v_restricted + 1e-10)
    assert np.all(res.v >= v_restricted - slack - 1e-10)


def test_j_and_k_are_non_increasing_in_lambda(g30, ref30):
    lams = np.logspace(-2, 2, 13)
    J, K = kl_ref_tradeoff(g30, ref30, lams)
    assert np.all(np.diff(J) <= 1e-12 * np.maximum(1, np.abs(J[:-1])))
    assert np.all(np.diff(K) <= 1e-12 * np.maximum(1, np.abs(K[:-1])))
    assert J[0] - J[-1] > 1e-3 and K[0] - K[-1] > 1e-3  # the trade-off is not flat
    # K is the discounted KL of π*_λ: check one point against an explicit evaluation
    res = soft_value_iteration(g30, kl_coef=lams[5], log_ref=ref30)
    _, v_reg = policy_evaluation(g30, res.log_policy, kl_coef=lams[5], log_ref=ref30)
    _, v = policy_evaluation(g30, res.log_policy)
    np.testing.assert_allclose(g30.initial @ (v - v_reg) / lams[5], K[5], rtol=1e-9)
    np.testing.assert_allclose(g30.initial @ v, J[5], rtol=1e-12)


def _trajectory_objective(P, R, ref, pi, lam, s0):
    """E_π[Σ_h r(s_h, a_h) − λ KL(π_h(·|s_h)‖π_ref,h(·|s_h))] from s0, γ = 1, H = 3, by enumerating trajectories."""
    kl = np.sum(pi * (np.log(pi) - ref), axis=-1)  # (H, S)
    total = 0.0
    for a0, s1, a1, s2, a2 in itertools.product(range(2), repeat=5):
        prob = pi[0, s0, a0] * P[s0, a0, s1] * pi[1, s1, a1] * P[s1, a1, s2] * pi[2, s2, a2]
        ret = R[s0, a0] + R[s1, a1] + R[s2, a2] - lam * (kl[0, s0] + kl[1, s1] + kl[2, s2])
        total += prob * ret
    return total


@pytest.mark.parametrize("lam", [0.3, 2.0])
def test_backward_induction_equals_brute_force(lam):
    """2 states, 2 actions, H = 3, γ = 1 (claim 17): the value of the returned policy, enumerated over all
    trajectories, equals V_1; no random Markov policy does better; with deterministic transitions V_1 is the
    free energy λ ln Σ_trajectories Π π_ref · exp(Σ_h r/λ)."""
    rng = np.random.default_rng(7)
    R = rng.standard_normal((2, 2))
    ref = _log_softmax(rng.standard_normal((3, 2, 2)))  # one reference per step
    P = rng.random((2, 2, 2))
    P /= P.sum(2, keepdims=True)
    log_pi, _, v = kl_ref_backward_induction(TabularMDP(P, R, 0.5), ref, kl_coef=lam, horizon=3, gamma=1.0)
    assert np.array_equal(v[3], np.zeros(2))
    for s0 in range(2):
        assert abs(_trajectory_objective(P, R, ref, np.exp(log_pi), lam, s0) - v[0, s0]) <= T1
        for _ in range(200):
            pi = np.exp(_log_softmax(2.0 * rng.standard_normal((3, 2, 2))))
            assert _trajectory_objective(P, R, ref, pi, lam, s0) <= v[0, s0] + 1e-12
    Pdet = np.zeros((2, 2, 2))
    Pdet[[0, 0, 1, 1], [0, 1, 0, 1], [1, 0, 0, 1]] = 1.0
    _, _, v = kl_ref_backward_induction(TabularMDP(Pdet, R, 0.5), ref, kl_coef=lam, horizon=3, gamma=1.0)
    pr = np.exp(ref)
    nxt = Pdet.argmax(2)
    for s0 in range(2):
        total = 0.0
        for a0, a1, a2 in itertools.product(range(2), repeat=3):
            s1 = nxt[s0, a0]
            s2 = nxt[s1, a1]
            w = pr[0, s0, a0] * pr[1, s1, a1] * pr[2, s2, a2]
            total += w * np.exp((R[s0, a0] + R[s1, a1] + R[s2, a2]) / lam)
        assert abs(v[0, s0] - lam * np.log(total)) <= T1 * max(1, abs(v[0, s0]))


def test_backward_induction_discounted_converges_to_soft_vi(g30, ref30):
    log_pi, q, v = kl_ref_backward_induction(g30, ref30, kl_coef=0.5, horizon=400)
    res = soft_value_iteration(g30, kl_coef=0.5, log_ref=ref30)
    np.testing.assert_allclose(v[0], res.v, atol=1e-8)


def test_behavior_cloning():
    counts = np.array([[3, 0, 1], [0, 0, 0]])
    log_pi = behavior_cloning(counts, kappa=0.5)
    np.testing.assert_allclose(
        np.exp(log_pi), [[3.5 / 5.5, 0.5 / 5.5, 1.5 / 5.5], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-14
    )
    sup = np.array([[True, False, True], [True, True, True]])
    lp = behavior_cloning(counts, support=sup)
    assert lp[0, 1] == -np.inf
    np.testing.assert_allclose(np.exp(lp[0]), [4 / 6, 0, 2 / 6], rtol=1e-14)
    with pytest.raises(ValueError, match="kappa"):
        behavior_cloning(counts, kappa=0.0)
    with pytest.raises(ValueError, match=r"counts: negative .* \(s=0, a=1\)"):
        behavior_cloning(np.array([[1, -1]]))
    with pytest.raises(ValueError, match=r"counts: positive count outside support at \(s=0, a=1\)"):
        behavior_cloning(np.array([[1, 2]]), support=np.array([[True, False]]))
    with pytest.raises(ValueError, match="support: state s=0 allows no action"):
        behavior_cloning(np.array([[0, 0]]), support=np.array([[False, False]]))


def test_reference_argument_errors(g30, ref30):
    with pytest.raises(ValueError, match="kl_coef"):
        kl_ref_backward_induction(g30, ref30, kl_coef=0.0, horizon=3)
    with pytest.raises(ValueError, match="horizon"):
        kl_ref_backward_induction(g30, ref30, kl_coef=1.0, horizon=0)
    with pytest.raises(ValueError, match="gamma"):
        kl_ref_backward_induction(g30, ref30, kl_coef=1.0, horizon=3, gamma=1.5)
    with pytest.raises(ValueError, match=r"log_ref: expected shape"):
        kl_ref_backward_induction(g30, ref30[:, :3], kl_coef=1.0, horizon=3)
    with pytest.raises(ValueError, match="kl_coefs"):
        kl_ref_tradeoff(g30, ref30, [1.0, -1.0])
