"""Tests of ``klsim.dp``: kernels, greedy step, exact evaluation, exact solvers, QuantEcon parity.

Independent references: ``.py_func`` of each kernel (T5), SLSQP (T3), SA×SA linear solves, brute-force
policy enumeration, and QuantEcon's ``DiscreteDP`` (spec §10 claims 1, 19, 20).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

from klsim._kernels import dp as kernels
from klsim.dp import (
    hard_log_policy,
    modified_policy_iteration,
    optimal_q,
    policy_evaluation,
    policy_iteration,
    regularized_greedy,
    soft_value_iteration,
    value_iteration,
)
from klsim.mdp import TabularMDP, garnet, puterman_two_state

T1, T2, T3, T5 = 1e-10, 1e-8, 1e-8, 1e-13


def _log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _regularized_objective(pi, q, mu, lam, tau):
    """⟨π,q⟩ − λKL(π‖μ) + τH(π), written directly in probability space (independent of klsim)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.where(pi > 0, np.log(np.where(pi > 0, pi, 1.0)), 0.0)
        kl = np.sum(np.where(pi > 0, pi * (lp - np.log(mu)), 0.0), axis=-1)
    return np.sum(pi * q, axis=-1) - lam * kl - tau * np.sum(pi * lp, axis=-1)


@pytest.fixture(scope="module")
def g30():
    return garnet(30, 4, 3, seed=0)


# ----------------------------------------------------------------------------- kernels (claim 20)
def _kernel_cases():
    rng = np.random.default_rng(0)
    S, A = 5, 3
    mdp = garnet(S, A, 2, seed=1)
    P = np.ascontiguousarray(mdp.dense_P())
    csr = mdp.csr
    R = rng.standard_normal((S, A))
    q = 3.0 * rng.standard_normal((S, A))
    log_mu = _log_softmax(rng.standard_normal((S, A)))
    log_mu[0, 1] = -np.inf
    v = rng.standard_normal(S)
    log_pi = _log_softmax(rng.standard_normal((S, A)))
    log_pi[1, 2] = -np.inf

    def sweep_args():
        return (R, 0.9, q, log_mu, 0.7, 0.3, np.empty((S, A)), np.empty(S), np.empty((S, A)))

    return [
        ("backup_dense", (P, R, 0.9, v, np.empty((S, A)))),
        ("backup_csr", (*csr, R, 0.9, v, np.empty((S, A)))),
        ("soft_greedy_rows", (q, log_mu, 0.7, 0.3, np.empty((S, A)), np.empty(S))),
        ("hard_greedy_rows", (q, np.empty((S, A)), np.empty(S))),
        ("policy_value_rows", (log_pi, q, log_mu, 0.4, 0.2, np.empty(S))),
        ("soft_sweep_dense", (P, *sweep_args())),
        ("soft_sweep_csr", (*csr, *sweep_args())),
        ("soft_sweep_csr_par", (*csr, *sweep_args())),
    ]


@pytest.mark.parametrize("name, args", _kernel_cases(), ids=[c[0] for c in _kernel_cases()])
def test_kernel_equals_py_func(name, args):
    kernel = getattr(kernels, name)
    a1 = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    a2 = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    kernel(*a1)
    kernel.py_func(*a2)
    for x, y in zip(a1, a2):
        if isinstance(x, np.ndarray):
            assert np.array_equal(np.isneginf(x), np.isneginf(y))
            fin = np.isfinite(x)
            assert np.all(np.isfinite(y) == fin)
            np.testing.assert_allclose(x[fin], y[fin], rtol=T5, atol=T5)
    assert kernel.targetoptions.get("fastmath") is False


def test_every_dp_kernel_is_tested_and_has_no_fastmath():
    tested = {c[0] for c in _kernel_cases()}
    assert tested == set(kernels.__all__)


def test_parallel_sweeps_give_the_same_bits_as_serial(g30, rng):
    S, A = 30, 4
    q, log_mu = rng.standard_normal((S, A)), _log_softmax(rng.standard_normal((S, A)))
    for ser, par, head in ((kernels.soft_sweep_csr, kernels.soft_sweep_csr_par, g30.csr),):
        outs = []
        for k in (ser, par):
            bufs = (np.empty((S, A)), np.empty(S), np.empty((S, A)))
            k(*head, g30.R, 0.9, q, log_mu, 0.6, 0.5, *bufs)
            outs.append(bufs)
        for x, y in zip(*outs):
            assert np.array_equal(x, y)


@pytest.mark.usefixtures("dense_kernels")
def test_large_problem_paths_agree_with_small_problem_paths(g30, monkeypatch):
    """Above PARALLEL_MIN_WORK the sparse sweep runs in parallel; above DENSE_BLAS_MIN_WORK the dense one uses BLAS."""
    import klsim.dp._core as core
    from klsim.dp import md_vi

    kw = dict(kl_coef=0.5, entropy_coef=0.1, n_iter=30, eval_steps=2, noise_std=1.0, seed=0)
    small = [md_vi(m, **kw) for m in (g30, g30.to_dense())]
    vi_small = value_iteration(g30.to_dense(), tol=1e-10)
    monkeypatch.setattr(core, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(core, "DENSE_BLAS_MIN_WORK", 0)
    monkeypatch.setattr(core, "PARALLEL_MIN_THREADS", 0)
    large = [md_vi(m, **kw) for m in (g30, g30.to_dense())]
    assert np.array_equal(small[0].q, large[0].q)  # prange kernel: same bits
    np.testing.assert_allclose(large[1].q, small[1].q, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        value_iteration(g30.to_dense(), tol=1e-10).v, vi_small.v, rtol=1e-12, atol=1e-12
    )


@pytest.mark.usefixtures("dense_kernels")
def test_soft_sweep_layouts_and_pieces_agree(g30, rng):
    S, A = 30, 4
    q = rng.standard_normal((S, A))
    log_mu = _log_softmax(rng.standard_normal((S, A)))
    outs = []
    for mdp in (g30, g30.to_dense()):
        lp, v, qn = np.empty((S, A)), np.empty(S), np.empty((S, A))
        if mdp.is_sparse:
            kernels.soft_sweep_csr(*mdp.csr, mdp.R, mdp.gamma, q, log_mu, 0.25, 2.0, lp, v, qn)
        else:
            kernels.soft_sweep_dense(mdp.P, mdp.R, mdp.gamma, q, log_mu, 0.25, 2.0, lp, v, qn)
        outs.append((lp, v, qn))
    z = 0.25 * log_mu + q / 2.0
    np.testing.assert_allclose(outs[0][0], z - np.log(np.exp(z).sum(1, keepdims=True)), atol=1e-13)
    np.testing.assert_allclose(outs[0][2], g30.R + 0.9 * g30.expected_next(outs[0][1]), atol=1e-13)
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------- greedy step (claim 1)
@pytest.mark.parametrize("lam, tau", [(1.0, 0.0), (0.0, 0.5), (0.3, 0.2), (5.0, 0.01)])
def test_greedy_bracket_identity_and_slsqp(lam, tau):
    rng = np.random.default_rng(1)
    A = 4
    q = 2.0 * rng.standard_normal((6, A))
    log_mu = _log_softmax(rng.standard_normal((6, A)))
    log_pi, v = regularized_greedy(q, log_mu, kl_coef=lam, entropy_coef=tau)
    pi = np.exp(log_pi)
    np.testing.assert_allclose(pi.sum(1), 1.0, atol=1e-14)
    direct = _regularized_objective(pi, q, np.exp(log_mu), lam, tau)
    np.testing.assert_allclose(v, direct, rtol=T1, atol=T1)
    for s in range(6):
        res = so.minimize(
            lambda p, s=s: -_regularized_objective(np.clip(p, 1e-300, 1), q[s], np.exp(log_mu[s]), lam, tau),
            np.full(A, 1 / A),
            method="SLSQP",
            bounds=[(0, 1)] * A,
            constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1}],
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert v[s] >= -res.fun - T3


def test_greedy_hard_branch_ties_to_lowest_index():
    q = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [-1.0, -5.0, 0.0]])
    log_pi, v = regularized_greedy(q, None, kl_coef=0.0, entropy_coef=0.0)
    np.testing.assert_array_equal(np.exp(log_pi), [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(v, [3.0, 2.0, 0.0])


def test_greedy_underflow_gives_no_nan_and_respects_zero_reference():
    q = np.array([[0.0, -800.0, 5.0]])
    log_mu = np.array([[np.log(0.5), np.log(0.5), -np.inf]])
    log_pi, v = regularized_greedy(q, log_mu, kl_coef=0.1, entropy_coef=0.0)
    assert not np.isnan(log_pi).any()
    assert log_pi[0, 2] == -np.inf  # zero reference mass is a hard constraint
    assert (
        np.isfinite(log_pi[0, 1]) and log_pi[0, 1] < -7000
    )  # underflows as a probability, finite in log space
    np.testing.assert_allclose(v[0], 0.1 * np.log(0.5 + 0.5 * np.exp(-8000.0)), atol=1e-14)
    lp1, v1 = regularized_greedy(np.array([1.0, 2.0]), None, kl_coef=0.0, entropy_coef=1.0)
    np.testing.assert_allclose(v1, np.log(np.e + np.e**2), atol=1e-14)
    assert lp1.shape == (2,)


def test_greedy_rejects_bad_input():
    with pytest.raises(ValueError, match="kl_coef"):
        regularized_greedy(np.zeros((2, 2)), None, kl_coef=-1.0, entropy_coef=0.0)
    with pytest.raises(ValueError, match="log_mu: required"):
        regularized_greedy(np.zeros((2, 2)), None, kl_coef=1.0, entropy_coef=0.0)
    with pytest.raises(ValueError, match=r"log_mu: row s=1"):
        regularized_greedy(np.zeros((2, 2)), np.log([[0.5, 0.5], [0.5, 0.6]]), kl_coef=1.0, entropy_coef=0.0)
    with pytest.raises(ValueError, match=r"q: NaN"):
        regularized_greedy(np.array([[0.0, np.nan]]), None, kl_coef=0.0, entropy_coef=1.0)


# ----------------------------------------------------------------------------- exact evaluation
def _sa_evaluation(mdp, pi, lam=0.0, tau=0.0, mu=None):
    """Independent reference: solve the SA×SA system q = r_reg + γ P_π q in probability space."""
    S, A = mdp.n_states, mdp.n_actions
    P = mdp.dense_P().reshape(S * A, S)
    Pi = np.zeros((S, S * A))
    for s in range(S):
        Pi[s, s * A : (s + 1) * A] = pi[s]
    mu = np.ones_like(pi) if mu is None else mu
    with np.errstate(divide="ignore", invalid="ignore"):
        reg = np.where(
            pi > 0, -tau * np.log(np.where(pi > 0, pi, 1)) - lam * np.log(np.where(pi > 0, pi / mu, 1)), 0
        )
    c = (pi * reg).sum(1)  # per-state regularizer, paid at the next state
    M = np.eye(S * A) - mdp.gamma * P @ Pi
    q = np.linalg.solve(M, mdp.R.ravel() + mdp.gamma * P @ c)
    return q.reshape(S, A)


@pytest.mark.usefixtures("dense_kernels")
@pytest.mark.parametrize("lam, tau", [(0.0, 0.0), (0.0, 0.3), (0.7, 0.0), (0.5, 0.2)])
def test_policy_evaluation_matches_sa_system_in_both_layouts(g30, rng, lam, tau):
    log_pi = _log_softmax(rng.standard_normal((30, 4)))
    log_pi[3] = [0.0, -np.inf, -np.inf, -np.inf]
    log_ref = _log_softmax(rng.standard_normal((30, 4)))
    ref = _sa_evaluation(g30, np.exp(log_pi), lam, tau, np.exp(log_ref))
    for mdp in (g30, g30.to_dense()):
        q, v = policy_evaluation(mdp, log_pi, entropy_coef=tau, kl_coef=lam, log_ref=log_ref)
        np.testing.assert_allclose(q, ref, rtol=0, atol=T1 * max(1, np.abs(ref).max()))
        np.testing.assert_allclose(
            v,
            (np.exp(log_pi) * q).sum(1)
            + _regularized_objective(np.exp(log_pi), 0 * q, np.exp(log_ref), lam, tau),
            atol=1e-10,
        )


def test_policy_evaluation_puterman_closed_form():
    mdp = puterman_two_state()
    _, v = policy_evaluation(mdp, hard_log_policy([0, 0], 2))
    v1 = -1.0 / (1 - 0.95)  # state 1 stays forever with reward -1
    v0 = (5.0 + 0.95 * 0.5 * v1) / (1 - 0.95 * 0.5)  # v0 = 5 + γ(v0 + v1)/2
    np.testing.assert_allclose(v, [v0, v1], rtol=1e-14)


def test_policy_evaluation_errors(g30):
    good = np.full((30, 4), -np.log(4))
    with pytest.raises(ValueError, match=r"log_policy: expected shape"):
        policy_evaluation(g30, good[:, :3])
    bad = good.copy()
    bad[4, 0] = 0.0
    with pytest.raises(ValueError, match=r"log_policy: row s=4"):
        policy_evaluation(g30, bad)
    with pytest.raises(ValueError, match="log_ref: required"):
        policy_evaluation(g30, good, kl_coef=1.0)
    ref = good.copy()
    ref[2] = [0.0, -np.inf, -np.inf, -np.inf]
    with pytest.raises(ValueError, match=r"KL\(π‖π_ref\) = \+inf at state s=2"):
        policy_evaluation(g30, good, kl_coef=1.0, log_ref=ref)


# ----------------------------------------------------------------------------- brute force
def _tiny_mdp():
    P = np.array([[[0.7, 0.3], [0.1, 0.9]], [[0.4, 0.6], [0.95, 0.05]]])
    R = np.array([[1.0, 0.0], [0.2, 0.8]])
    return TabularMDP(P, R, 0.8)


def test_value_and_policy_iteration_equal_deterministic_enumeration():
    mdp = _tiny_mdp()
    best = np.full(2, -np.inf)
    for acts in itertools.product(range(2), repeat=2):
        _, v = policy_evaluation(mdp, hard_log_policy(acts, 2))
        best = np.maximum(best, v)
    np.testing.assert_allclose(policy_iteration(mdp).v, best, atol=1e-12)
    np.testing.assert_allclose(soft_value_iteration(mdp).v, best, atol=T2)
    assert np.all(np.abs(value_iteration(mdp, tol=1e-10).v - best) <= 0.5e-10)


@pytest.mark.parametrize("lam, tau", [(0.0, 0.3), (0.5, 0.0), (0.2, 0.1)])
def test_soft_vi_equals_brute_force_policy_enumeration(lam, tau):
    """Grid over all stochastic policies of a 2-state, 2-action MDP; soft VI must dominate every grid policy
    (it is optimal) and be matched by the best one up to the grid resolution."""
    mdp = _tiny_mdp()
    log_ref = np.log(np.array([[0.3, 0.7], [0.6, 0.4]]))
    res = soft_value_iteration(mdp, entropy_coef=tau, kl_coef=lam, log_ref=log_ref)
    assert res.converged
    grid = np.linspace(0.0, 1.0, 201)
    P, R, g = mdp.dense_P(), mdp.R, mdp.gamma
    p0, p1 = np.meshgrid(grid, grid, indexing="ij")
    pi = np.stack([np.stack([p0, 1 - p0], -1), np.stack([p1, 1 - p1], -1)], axis=-2)  # (G, G, S, A)
    b = _regularized_objective(pi, R, np.exp(log_ref), lam, tau)  # (G, G, S)
    Ppi = np.einsum("xysa,sat->xyst", pi, P)
    v = np.linalg.solve(np.eye(2) - g * Ppi, b[..., None])[..., 0]
    v_best = v.reshape(-1, 2).max(axis=0)
    assert np.all(v_best <= res.v + 1e-10)
    assert np.all(v_best >= res.v - 1e-3)
    i = np.argmax(v.reshape(-1, 2).sum(1))
    np.testing.assert_allclose(np.exp(res.log_policy), pi.reshape(-1, 2, 2)[i], atol=0.01)
    # fixed point of the exact regularized evaluation
    q_pi, v_pi = policy_evaluation(mdp, res.log_policy, entropy_coef=tau, kl_coef=lam, log_ref=log_ref)
    np.testing.assert_allclose(v_pi, res.v, atol=T2)
    np.testing.assert_allclose(q_pi, res.q, atol=T2)


# ----------------------------------------------------------------------------- QuantEcon parity (claim 19)
qe = pytest.importorskip("quantecon")


def _qe_ddp(mdp):
    return qe.markov.DiscreteDP(np.array(mdp.R), mdp.dense_P(), mdp.gamma)


def _same_optimal_actions(q_star, v_star, ours, theirs, tol=1e-9):
    """Both action choices are optimal; they coincide wherever the optimal action is unique."""
    idx = np.arange(q_star.shape[0])
    scale = max(1.0, np.abs(v_star).max())
    assert np.all(q_star[idx, ours] >= v_star - tol * scale)
    assert np.all(q_star[idx, theirs] >= v_star - tol * scale)
    unique = (q_star >= v_star[:, None] - tol * scale).sum(axis=1) == 1
    np.testing.assert_array_equal(ours[unique], theirs[unique])


def _check_parity(mdp, eps=1e-6):
    ddp = _qe_ddp(mdp)
    pi_qe = ddp.solve(method="policy_iteration")
    q_star, v_star = optimal_q(mdp)
    pi = policy_iteration(mdp)
    np.testing.assert_allclose(pi.v, pi_qe.v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v_star, pi_qe.v, rtol=1e-12, atol=1e-12)
    _same_optimal_actions(q_star, v_star, pi.greedy_actions, pi_qe.sigma)
    vi = value_iteration(mdp, tol=eps)
    vi_qe = ddp.solve(method="value_iteration", epsilon=eps, max_iter=10_000)
    assert np.max(np.abs(vi.v - v_star)) <= eps / 2 and np.max(np.abs(vi_qe.v - v_star)) <= eps / 2
    assert vi.num_iter == vi_qe.num_iter
    np.testing.assert_allclose(vi.v, vi_qe.v, rtol=0, atol=1e-11 * max(1, np.abs(v_star).max()))
    mpi = modified_policy_iteration(mdp, eval_steps=5, tol=eps)
    mpi_qe = ddp.solve(method="modified_policy_iteration", epsilon=eps, k=5, max_iter=10_000)
    assert np.max(np.abs(mpi.v - v_star)) <= eps / 2 and np.max(np.abs(mpi_qe.v - v_star)) <= eps / 2
    assert mpi.num_iter == mpi_qe.num_iter
    _same_optimal_actions(q_star, v_star, mpi.greedy_actions, mpi_qe.sigma)
    # the hard (λ = τ = 0) branch of the regularized machinery is plain VI
    soft = soft_value_iteration(mdp, tol=eps)
    assert np.max(np.abs(soft.v - v_star)) <= eps / 2


def test_quantecon_parity_puterman():
    mdp = puterman_two_state()
    _check_parity(mdp)
    np.testing.assert_allclose(optimal_q(mdp)[1], [-8.571428571428571, -20.0], rtol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantecon_parity_random_garnets(seed):
    ddp = qe.markov.random_discrete_dp(40, 5, beta=0.95, k=3, random_state=seed)
    mdp = TabularMDP(ddp.Q, ddp.R, 0.95)
    _check_parity(mdp)
    _check_parity(mdp.to_sparse())


def test_quantecon_parity_klsim_garnet_sparse(g30):
    _check_parity(g30)


@pytest.mark.parametrize(
    "name, kwargs",
    [("FrozenLake", {"is_slippery": True}), ("FrozenLake", {"is_slippery": False}), ("Taxi", {})],
)
def test_quantecon_parity_gymnasium(name, kwargs):
    gym = pytest.importorskip("gymnasium")
    from klsim.envs import from_gymnasium

    env_id = max((k for k in gym.registry if k.split("-v")[0] == name), key=lambda k: int(k.split("-v")[1]))
    mdp = from_gymnasium(gym.make(env_id, **kwargs), gamma=0.95)
    _check_parity(mdp, eps=1e-6)


def test_policy_iteration_does_not_cycle_on_ties():
    P = np.zeros((2, 3, 2))
    P[:, :, 0] = 1.0
    mdp = TabularMDP(P, np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), 0.9)
    res = policy_iteration(mdp)
    assert res.converged and res.num_iter == 1
    np.testing.assert_array_equal(res.greedy_actions, [0, 0])


def test_max_iter_is_honored_and_reported(g30):
    res = value_iteration(g30, tol=1e-12, max_iter=3)
    assert res.num_iter == 3 and not res.converged
    res = soft_value_iteration(g30, entropy_coef=0.1, max_iter=5)
    assert res.num_iter == 5 and not res.converged and res.history["bellman_residual"].shape == (5,)


def test_gamma_zero_takes_one_step():
    mdp = _tiny_mdp().with_gamma(0.0)
    res = value_iteration(mdp)
    assert res.num_iter == 1 and res.converged
    np.testing.assert_array_equal(res.v, mdp.R.max(1))


def test_solver_argument_errors(g30):
    with pytest.raises(ValueError, match="tol"):
        value_iteration(g30, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        value_iteration(g30, max_iter=0)
    with pytest.raises(ValueError, match="eval_steps"):
        modified_policy_iteration(g30, eval_steps=-1)
    with pytest.raises(ValueError, match="mdp"):
        value_iteration(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="log_ref: required"):
        soft_value_iteration(g30, kl_coef=1.0)
    with pytest.raises(ValueError, match="entropy_coef"):
        soft_value_iteration(g30, entropy_coef=np.nan)


@pytest.mark.usefixtures("dense_kernels")
def test_sparse_and_dense_solvers_agree(g30):
    for f in (
        lambda m: soft_value_iteration(m, entropy_coef=0.1).q,
        lambda m: soft_value_iteration(m, kl_coef=0.5, log_ref=np.full((30, 4), -np.log(4))).q,
        lambda m: optimal_q(m)[0],
    ):
        np.testing.assert_allclose(f(g30), f(g30.to_dense()), rtol=T1, atol=T1)


def test_sparse_evaluation_uses_sparse_solve():
    big = garnet(300, 3, 3, seed=4)
    q_s, v_s = policy_evaluation(big, np.full((300, 3), -np.log(3)))
    q_d, v_d = policy_evaluation(big.to_dense(), np.full((300, 3), -np.log(3)))
    np.testing.assert_allclose(q_s, q_d, rtol=1e-12, atol=1e-12)
    assert sp.issparse(big.transition_matrix())


def test_vectorized_exp_is_accurate_to_two_ulp():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [-rng.uniform(0, 700, 20000), -rng.uniform(0, 1, 2000), [0.0, -1e-300, -np.log(2), -700.0]]
    )
    out = np.empty_like(x)
    kernels._exp_nonpos(x, out, x.size)
    rel = np.abs(out / np.exp(x) - 1.0)
    assert rel.max() <= 2 * np.finfo(float).eps
    tail = np.array([-700.5, -745.0, -1e308, -np.inf])
    out_t = np.ones(4)
    kernels._exp_nonpos(tail, out_t, 4)
    assert np.array_equal(out_t, np.zeros(4))
    out_py = np.empty_like(x[:50])
    kernels._exp_nonpos.py_func(x[:50], out_py, 50)
    assert np.array_equal(out_py, out[:50])


def test_docs_dp_example_runs(capsys):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "dp.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(page), "exec"), {"__name__": "docs_dp_example"})  # noqa: S102
    out = capsys.readouterr().out
    vi = float(re.search(r"VI error at k=300: ([\d.]+)", out).group(1))
    kl = float(re.search(r"KL error at k=300: ([\d.]+)", out).group(1))
    assert kl < vi / 3
    assert "Theorem 1 holds at every k: True" in out
