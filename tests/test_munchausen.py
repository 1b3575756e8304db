"""M-VI, Advantage Learning, MVI(q) and the Tsallis-KL iteration (spec kl-regularized-dp §5-6, claims 5, 6, 14, 16).

Independent references: ``klsim.dp.md_vi`` (a different algorithm, shown equal by [MRL] Thm 1), exact policy
evaluation, soft VI (for the fixed point), and one MVI(2) step written here in numpy with a textbook sparsemax.
"""

from __future__ import annotations

import numpy as np
import pytest

from klsim.divergences import log_softmax, logsumexp
from klsim.dp import md_vi, policy_evaluation
from klsim.mdp import garnet
from klsim.munchausen import (
    action_gap_ratio,
    advantage_learning,
    munchausen_limit,
    munchausen_vi,
    mvi_q,
    tsallis_kl_vi,
)


@pytest.fixture(scope="module")
def g30():
    return garnet(30, 4, 3, seed=0)


@pytest.fixture(scope="module")
def g12():
    return garnet(12, 3, 3, seed=1)


def _sparsemax(z):
    zs = -np.sort(-z, axis=1)
    k = np.arange(1, z.shape[1] + 1)
    cs = np.cumsum(zs, axis=1)
    K = np.max(np.where(1 + k * zs > cs, k, 0), axis=1)
    thr = (cs[np.arange(z.shape[0]), K - 1] - 1) / K
    return np.maximum(z - thr[:, None], 0.0), thr


# ------------------------------------------------------------------------------------------ claim 5


@pytest.mark.parametrize("alpha", [0.5, 0.9, 1.0])
@pytest.mark.parametrize("tau", [0.1, 0.3])
def test_munchausen_equals_md_vi(g30, alpha, tau):
    S, A = g30.n_states, g30.n_actions
    K = 60
    for sigma in (0.0, 1.0):
        m = munchausen_vi(g30, alpha=alpha, tau=tau, n_iter=K, noise_std=sigma, seed=2, record_iterates=True,
                          track_error=False)  # fmt: skip
        d = md_vi(g30, kl_coef=alpha * tau, entropy_coef=(1 - alpha) * tau, n_iter=K, noise_std=sigma, seed=2,
                  q0=np.full((S, A), alpha * tau * np.log(A)), record_iterates=True)  # fmt: skip
        lp_m, lp_d = m.history["log_policy"], d.history["log_policy"]
        assert np.max(np.abs(np.exp(lp_m) - np.exp(lp_d))) <= 1e-10
        q_prime = m.history["q"] - alpha * tau * lp_m  # q'_k = q_k − ατ ln π_k
        scale = max(1.0, np.max(np.abs(d.history["q"])))
        assert np.max(np.abs(q_prime - d.history["q"])) <= 1e-10 * scale
        np.testing.assert_allclose(m.log_policy, d.log_policy, atol=1e-10)


def test_clipping_breaks_the_equivalence(g30):
    S, A = g30.n_states, g30.n_actions
    kw = dict(alpha=0.9, tau=0.3, n_iter=60, noise_std=1.0, seed=2, record_iterates=True, track_error=False)
    exact = munchausen_vi(g30, **kw)
    clipped = munchausen_vi(g30, clip=-1.0, **kw)
    d = md_vi(g30, kl_coef=0.27, entropy_coef=0.03, n_iter=60, noise_std=1.0, seed=2,
              q0=np.full((S, A), 0.27 * np.log(A)), record_iterates=True)  # fmt: skip
    assert np.min(0.3 * exact.history["log_policy"]) < -1.0  # some ℓ_k < l_0, so the clip is active
    assert np.max(np.abs(clipped.policy - d.policy)) > 1e-3
    assert np.max(np.abs(exact.policy - d.policy)) <= 1e-10


@pytest.mark.usefixtures("dense_kernels")
def test_alpha_zero_is_soft_vi_and_dense_equals_csr(g12):
    S, A = g12.n_states, g12.n_actions
    m = munchausen_vi(g12, alpha=0.0, tau=0.2, n_iter=40, record_iterates=True, track_error=False)
    d = md_vi(g12, kl_coef=0.0, entropy_coef=0.2, n_iter=40, record_iterates=True)
    np.testing.assert_allclose(m.history["q"], d.history["q"], atol=1e-12)
    dense = munchausen_vi(g12.to_dense(), alpha=0.7, tau=0.2, n_iter=40, clip=-1.0, noise_std=0.5, seed=1,
                          record_iterates=True, track_error=False)  # fmt: skip
    sparse = munchausen_vi(g12, alpha=0.7, tau=0.2, n_iter=40, clip=-1.0, noise_std=0.5, seed=1,
                           record_iterates=True, track_error=False)  # fmt: skip
    np.testing.assert_allclose(dense.history["q"], sparse.history["q"], rtol=0, atol=1e-12)
    assert S == dense.q.shape[0] and A == dense.q.shape[1]


def test_clip_bonus_matches_a_numpy_iteration(g12):
    """One clipped M-VI recursion written in numpy: q ← r + α clip(q − τ lse(q/τ), l0, 0) + γ P τ lse(q/τ)."""
    alpha, tau, l0 = 0.9, 0.05, -1.0
    res = munchausen_vi(
        g12, alpha=alpha, tau=tau, n_iter=25, clip=l0, record_iterates=True, track_error=False
    )
    P = g12.dense_P()
    q = np.zeros((g12.n_states, g12.n_actions))
    for k in range(25):
        v = tau * logsumexp(q / tau)
        q = g12.R + alpha * np.clip(q - v[:, None], l0, 0.0) + g12.gamma * P @ v
        np.testing.assert_allclose(res.history["q"][k + 1], q, atol=1e-12)


# ------------------------------------------------------------------------------------------ claim 6, limits


@pytest.mark.parametrize("alpha", [0.5, 0.9])
def test_fixed_point_identity(g30, alpha):
    tau = 0.1
    res = munchausen_vi(g30, alpha=alpha, tau=tau, n_iter=700, track_error=False)
    q_inf, q_soft = munchausen_limit(g30, alpha=alpha, tau=tau)
    assert np.max(np.abs(res.q - q_inf)) <= 1e-8  # T2
    tp = (1 - alpha) * tau
    np.testing.assert_allclose(res.policy, np.exp(log_softmax(q_soft / tp)), atol=1e-8)
    # the action-gap ratio is measured; the fixed-point identity implies 1/(1−α) for this gap definition
    ratio = action_gap_ratio(res.q, q_soft)
    assert ratio.size > 0
    np.testing.assert_allclose(ratio, 1 / (1 - alpha), rtol=1e-6)


def test_advantage_learning_alpha0_is_value_iteration(g12):
    al = advantage_learning(g12, alpha=0.0, n_iter=30, record_iterates=True, track_error=False)
    vi = md_vi(g12, kl_coef=0.0, entropy_coef=0.0, n_iter=30, record_iterates=True)
    np.testing.assert_allclose(al.history["q"], vi.history["q"], atol=1e-12)
    np.testing.assert_array_equal(
        np.isfinite(al.history["log_policy"][1:]), np.isfinite(vi.history["log_policy"][1:])
    )
    al = advantage_learning(g12, alpha=0.8, n_iter=5, record_iterates=True, track_error=False)
    q = np.zeros((12, 3))
    for _ in range(5):
        vmax = q.max(axis=1)
        q = g12.R + g12.gamma * g12.dense_P() @ vmax + 0.8 * (q - vmax[:, None])
    np.testing.assert_allclose(al.q, q, atol=1e-12)
    # M-VI at a small temperature approaches AL
    small = munchausen_vi(g12, alpha=0.8, tau=1e-4, n_iter=5, track_error=False)
    np.testing.assert_allclose(small.q, al.q, atol=1e-2)


# ------------------------------------------------------------------------------------------ histories


def test_histories_are_consistent(g12):
    res = munchausen_vi(g12, alpha=0.9, tau=0.1, n_iter=20, noise_std=0.3, seed=4, record_iterates=True)
    h = res.history
    assert h["error_to_opt"].shape == (20,) and h["action_gap"].shape == (20, 12)
    assert h["support_size"].shape == (20, 12) and np.all(h["support_size"] == 3)
    from klsim.dp import optimal_q

    q_star = optimal_q(g12)[0]
    for k in (1, 7, 20):
        q_pi = policy_evaluation(g12, h["log_policy"][k])[0]
        assert h["error_to_opt"][k - 1] == pytest.approx(np.max(np.abs(q_star - q_pi)), abs=1e-12)
        qs = np.sort(h["q"][k], axis=1)
        np.testing.assert_allclose(h["action_gap"][k - 1], qs[:, -1] - qs[:, -2], atol=1e-13)
    np.testing.assert_allclose(
        h["bellman_residual"], np.abs(np.diff(h["q"], axis=0)).max(axis=(1, 2)), atol=0
    )
    # the errors are C8's draws: the same as md_vi's
    d = md_vi(g12, kl_coef=0.09, entropy_coef=0.01, n_iter=20, noise_std=0.3, seed=4)
    np.testing.assert_allclose(h["error_avg"], d.history["error_avg"], atol=0)


# ------------------------------------------------------------------------------------------ MVI(q), claim 14


def test_mvi_q1_dispatches_and_q_near_1_is_close(g12):
    kw = dict(alpha=0.9, tau=0.1, n_iter=30, noise_std=1.0, seed=0, track_error=False)
    a = munchausen_vi(g12, **kw)
    b = mvi_q(g12, tsallis_q=1.0, **kw)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.log_policy, b.log_policy)
    c = mvi_q(g12, tsallis_q=1 + 1e-6, **kw)
    assert np.max(np.abs(a.q - c.q)) <= 1e-5
    assert np.max(np.abs(a.policy - c.policy)) <= 1e-5


def test_mvi_2_matches_a_numpy_sparsemax_iteration(g12):
    alpha, tau = 0.8, 0.3
    res = mvi_q(g12, tsallis_q=2.0, alpha=alpha, tau=tau, n_iter=15, record_iterates=True, track_error=False)
    P = g12.dense_P()
    q = np.zeros((12, 3))
    for k in range(15):
        pi, thr = _sparsemax(q / (2 * tau))  # π = sparsemax(Q/(2τ)), threshold in z units
        nu_prime = 2 * tau * thr + 2 * tau  # ν = 2τ·thr, ν' = ν + qτ/(q−1) with q = 2
        v = np.sum(pi * q, axis=1) + tau * (1 - np.sum(pi**2, axis=1))
        q = g12.R + alpha * (q - nu_prime[:, None]) + g12.gamma * P @ v
        np.testing.assert_allclose(res.history["q"][k + 1], q, atol=1e-10)
        np.testing.assert_allclose(np.exp(res.history["log_policy"][k + 1]), pi, atol=1e-10)
        np.testing.assert_array_equal(res.history["support_size"][k], (pi > 0).sum(axis=1))


# ------------------------------------------------------------------------------------------ Tsallis-KL VI, claim 16


def test_tsallis_kl_vi_q1_is_md_vi_and_support_never_grows(g12):
    kw = dict(n_iter=25, noise_std=1.0, seed=3)
    a = tsallis_kl_vi(
        g12, tsallis_q=1.0, kl_coef=0.5, entropy_coef=0.1, track_error=False, record_iterates=True, **kw
    )
    d = md_vi(g12, kl_coef=0.5, entropy_coef=0.1, record_iterates=True, **kw)
    assert np.max(np.abs(np.exp(a.history["log_policy"]) - np.exp(d.history["log_policy"]))) <= 1e-10
    np.testing.assert_allclose(a.history["q"], d.history["q"], atol=1e-10)
    for q in (1.5, 2.0, 3.0):
        r = tsallis_kl_vi(g12, tsallis_q=q, kl_coef=0.2, track_error=False, **kw)
        sup = r.history["support_size"]
        assert np.all(np.diff(sup, axis=0) <= 0) and sup[-1].min() >= 1
        assert sup[-1].sum() < sup[0].sum() or q == 1.5  # it does collapse under noise


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input_raises(g12):
    with pytest.raises(ValueError, match="alpha"):
        munchausen_vi(g12, alpha=1.5, tau=0.1, n_iter=3)
    with pytest.raises(ValueError, match="alpha"):
        mvi_q(g12, tsallis_q=2.0, alpha=-0.1, tau=0.1, n_iter=3)
    with pytest.raises(ValueError, match="tau"):
        munchausen_vi(g12, alpha=0.5, tau=0.0, n_iter=3)
    with pytest.raises(ValueError, match="tau"):
        mvi_q(g12, tsallis_q=2.0, alpha=0.5, tau=-1.0, n_iter=3)
    with pytest.raises(ValueError, match="tsallis_q"):
        mvi_q(g12, tsallis_q=0.5, alpha=0.5, tau=0.1, n_iter=3)
    with pytest.raises(ValueError, match="clip"):
        munchausen_vi(g12, alpha=0.5, tau=0.1, n_iter=3, clip=0.5)
    with pytest.raises(ValueError, match="n_iter"):
        munchausen_vi(g12, alpha=0.5, tau=0.1, n_iter=0)
    with pytest.raises(ValueError, match="q0"):
        munchausen_vi(g12, alpha=0.5, tau=0.1, n_iter=3, q0=np.zeros((3, 12)))
    with pytest.raises(ValueError, match="noise_std"):
        munchausen_vi(g12, alpha=0.5, tau=0.1, n_iter=3, noise_std=-1.0)
    with pytest.raises(ValueError, match="mdp"):
        munchausen_vi("garnet", alpha=0.5, tau=0.1, n_iter=3)
    with pytest.raises(ValueError, match="alpha"):
        munchausen_limit(g12, alpha=1.0, tau=0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        tsallis_kl_vi(g12, tsallis_q=2.0, kl_coef=0.0, n_iter=3)


@pytest.mark.slow
def test_repro_smoke(tmp_path):
    from papers_repro._harness import run_module

    report = run_module("tsallis_mvi", tmp_path, quick=True)
    assert report.passed, [c for c in report.claims if not c.passed]
    assert report.figures and all(p.exists() for p in report.figures)


@pytest.mark.usefixtures("dense_kernels")
def test_mvi_q_and_tsallis_kl_vi_dense_equals_csr(g12):
    dense = g12.to_dense()
    for fn, kw in (
        (mvi_q, dict(tsallis_q=2.0, alpha=0.9, tau=0.2)),
        (tsallis_kl_vi, dict(tsallis_q=3.0, kl_coef=0.3)),
    ):
        a = fn(g12, n_iter=20, noise_std=0.5, seed=1, track_error=False, **kw)
        b = fn(dense, n_iter=20, noise_std=0.5, seed=1, track_error=False, **kw)
        np.testing.assert_allclose(a.q, b.q, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(a.history["support_size"], b.history["support_size"])
