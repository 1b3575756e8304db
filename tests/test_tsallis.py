"""Tsallis primitives and the Tsallis-regularized greedy step (spec kl-regularized-dp §6, claims 13-16, 20).

Independent references: closed forms written here from probabilities, a textbook numpy sparsemax
(Martins & Astudillo 2016, Alg. 1), scipy SLSQP on the simplex, and the KKT conditions of the step.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import rel_entr

from klsim._kernels.tsallis import tsallis_threshold_rows, tsallis_threshold_rows_par
from klsim.divergences import (
    chi2_divergence,
    entropy,
    exp_q,
    exp_q_lee,
    kl_divergence,
    log_q,
    log_q_lee,
    log_softmax,
    softmax,
    tsallis_entropy,
    tsallis_greedy,
    tsallis_kl,
    tsallis_normalizer,
    tsallis_policy,
)

# ------------------------------------------------------------------------------------------ references


def sparsemax(z: np.ndarray) -> np.ndarray:
    """Martins & Astudillo (2016), Algorithm 1, row-wise, in numpy."""
    z = np.atleast_2d(z)
    zs = -np.sort(-z, axis=1)
    k = np.arange(1, z.shape[1] + 1)
    cs = np.cumsum(zs, axis=1)
    K = np.max(np.where(1 + k * zs > cs, k, 0), axis=1)
    thr = (cs[np.arange(z.shape[0]), K - 1] - 1) / K
    return np.maximum(z - thr[:, None], 0.0)


def objective(pi, Q, q, lam, tau, mu):
    """⟨π,Q⟩ − λ D_q(π‖μ) + τ S_q(π) with the closed forms (C5)."""
    pi = np.clip(pi, 0.0, None)
    val = pi @ Q
    if tau > 0:
        val += tau * (1 - np.sum(pi**q)) / (q - 1)
    if lam > 0:
        val -= lam * (np.sum(pi**q * mu ** (1 - q)) - 1) / (q - 1)
    return val


def slsqp_best(Q, q, lam, tau, mu, rng, starts=4):
    A = len(Q)
    best = None
    for i in range(starts):
        x0 = np.full(A, 1.0 / A) if i == 0 else rng.dirichlet(np.ones(A))
        r = minimize(
            lambda x: -objective(x, Q, q, lam, tau, mu),
            x0,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * A,
            constraints=[{"type": "eq", "fun": lambda x: np.sum(x) - 1.0}],
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        if best is None or -r.fun > best:
            best = -r.fun
    return best


# ------------------------------------------------------------------------------------------ primitives (claim 13)

QS = [0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]


@pytest.mark.parametrize("q", QS)
def test_exp_q_inverts_log_q_and_pseudo_additivity(q):
    x = np.geomspace(1e-3, 1e3, 41)
    # the round trip is ill-conditioned near the pole of exp_q: relative condition number ~ x^{q−1}
    cond = np.maximum(1.0, x ** (q - 1))
    assert np.all(np.abs(exp_q(log_q(x, q), q) / x - 1) <= 1e-12 * cond)
    assert np.all(np.abs(exp_q_lee(log_q_lee(x, q), q) / x - 1) <= 1e-12 * np.maximum(1.0, x ** (1 - q)))
    X, Y = np.meshgrid(x[::4], x[::5])
    lx, ly = log_q(X, q), log_q(Y, q)
    lhs = log_q(X * Y, q)
    np.testing.assert_allclose(lhs, lx + ly + (1 - q) * lx * ly, rtol=1e-12, atol=1e-12 * np.abs(lhs).max())
    Lx, Ly = log_q_lee(X, q), log_q_lee(Y, q)
    lhs = log_q_lee(X * Y, q)
    np.testing.assert_allclose(lhs, Lx + Ly + (q - 1) * Lx * Ly, rtol=1e-12, atol=1e-12 * np.abs(lhs).max())
    # closed forms, written independently
    if q != 1.0:
        np.testing.assert_allclose(log_q(x, q), (x ** (1 - q) - 1) / (1 - q), rtol=1e-12)
        np.testing.assert_allclose(log_q_lee(x, q), (x ** (q - 1) - 1) / (q - 1), rtol=1e-12)
    np.testing.assert_allclose(
        log_q_lee(x, q), log_q(x, 2 - q) if 2 - q > 0 else (x ** (q - 1) - 1) / (q - 1)
    )


def test_log_q_at_zero_and_the_pole_of_exp_q():
    assert log_q(0.0, 2.0) == -np.inf and log_q(0.0, 1.0) == -np.inf
    assert log_q(0.0, 0.5) == pytest.approx(-2.0, abs=1e-15)
    assert log_q_lee(0.0, 3.0) == pytest.approx(-0.5, abs=1e-15)  # finite: −1/(q−1)
    assert exp_q(1.0, 2.0) == np.inf and exp_q(0.999, 2.0) == pytest.approx(1000.0, rel=1e-12)
    assert exp_q(-3.0, 0.5) == 0.0
    np.testing.assert_array_equal(log_q(np.array([1.0, np.e]), 1.0), np.log([1.0, np.e]))


def _rand_dist(rng, A, zeros=0):
    p = rng.dirichlet(np.ones(A))
    if zeros:
        p[rng.choice(A, zeros, replace=False)] = 0.0
        p /= p.sum()
    return p


@pytest.mark.parametrize("q", [0.5, 1.5, 2.0, 3.0])
def test_tsallis_entropy_and_kl_closed_forms(q, rng):
    for _ in range(20):
        p, m = _rand_dist(rng, 6, zeros=1), _rand_dist(rng, 6)
        with np.errstate(divide="ignore"):
            lp, lm = np.log(p), np.log(m)
        s_closed = (1 - np.sum(p**q)) / (q - 1)
        d_closed = (np.sum(p**q * m ** (1 - q)) - 1) / (q - 1)
        assert tsallis_entropy(lp, q) == pytest.approx(s_closed, rel=1e-12, abs=1e-12)
        assert tsallis_kl(lp, lm, q) == pytest.approx(d_closed, rel=1e-12, abs=1e-12)
        assert tsallis_kl(lp, lm, q) >= -1e-15
        # ⟨π, ln_q(1/π)⟩ and ⟨π, ln^L_q(π/μ)⟩ forms (0·ln 0 = 0)
        nz = p > 0
        assert tsallis_entropy(lp, q) == pytest.approx(np.sum(p[nz] * log_q(1 / p[nz], q)), abs=1e-12)
        assert tsallis_kl(lp, lm, q) == pytest.approx(
            np.sum(p[nz] * log_q_lee(p[nz] / m[nz], q)), rel=1e-12, abs=1e-12
        )


def test_d2_is_pearson_chi2_and_q1_is_kl_entropy(rng):
    P = rng.dirichlet(np.ones(7), size=30)
    M = rng.dirichlet(np.ones(7), size=30)
    np.testing.assert_allclose(
        tsallis_kl(np.log(P), np.log(M), 2.0), chi2_divergence(P, M), rtol=1e-12, atol=1e-13
    )
    np.testing.assert_array_equal(tsallis_kl(np.log(P), np.log(M), 1.0), kl_divergence(np.log(P), np.log(M)))
    np.testing.assert_array_equal(tsallis_entropy(np.log(P), 1.0), entropy(np.log(P)))
    d = 1e-6
    # first-order expansion in δ = q − 1: D_{1+δ} = KL + (δ/2) Σ π ln²(π/μ) + O(δ²), S_{1+δ} = H − (δ/2) Σ π ln² π
    lr = np.log(P / M)
    kl_ref = rel_entr(P, M).sum(axis=1)
    np.testing.assert_allclose(
        tsallis_kl(np.log(P), np.log(M), 1 + d), kl_ref + d / 2 * np.sum(P * lr**2, axis=1), atol=1e-9
    )
    h_ref = -np.sum(P * np.log(P), axis=1)
    np.testing.assert_allclose(
        tsallis_entropy(np.log(P), 1 + d), h_ref - d / 2 * np.sum(P * np.log(P) ** 2, axis=1), atol=1e-9
    )
    # spec claim 13 at δ = 1e-6 on distributions without extreme ratios (Dirichlet(5) rows)
    P5, M5 = rng.dirichlet(np.full(7, 5.0), size=30), rng.dirichlet(np.full(7, 5.0), size=30)
    assert np.max(np.abs(tsallis_kl(np.log(P5), np.log(M5), 1 + d) - rel_entr(P5, M5).sum(axis=1))) <= 1e-5
    assert np.max(np.abs(tsallis_entropy(np.log(P5), 1 + d) + np.sum(P5 * np.log(P5), axis=1))) <= 1e-5


def test_tsallis_kl_support_conventions():
    lp = np.array([np.log(0.5), np.log(0.5), -np.inf])
    lm = np.array([0.0, -np.inf, -np.inf])
    assert tsallis_kl(lp, lm, 2.0) == np.inf  # mass outside supp μ (C11)
    assert np.isfinite(tsallis_kl(lm, lp, 2.0))  # π(a) = μ(a) = 0 contributes 0
    assert tsallis_entropy(lm, 2.0) == 0.0


# ------------------------------------------------------------------------------------------ greedy step (claims 14-16)


def test_q2_is_sparsemax_of_q_over_2tau(rng):
    Q = rng.normal(size=(200, 7)) * rng.uniform(0.1, 5, size=(200, 1))
    for tau in (0.01, 0.3, 2.0, 50.0):
        pi = np.exp(tsallis_policy(Q, 2.0, tau))
        np.testing.assert_allclose(pi, sparsemax(Q / (2 * tau)), atol=1e-10)


def test_q2_closed_form_branch_equals_the_root_finder(rng):
    """q = 2 uses the closed form ν; q = 2 ± 1e-9 goes through sorting + Newton; they agree to O(1e-9)."""
    Q = rng.normal(size=(100, 6))
    p2 = np.exp(tsallis_policy(Q, 2.0, 0.4))
    for qq in (2.0 - 1e-9, 2.0 + 1e-9):
        np.testing.assert_allclose(np.exp(tsallis_policy(Q, qq, 0.4)), p2, atol=1e-7)


@pytest.mark.parametrize("q", [1.5, 2.0, 3.0])
def test_kkt_conditions_of_the_entropy_step(q, rng):
    """On the support Q_a − τ q π_a^{q−1}/(q−1) = c, and off it Q_a <= c (the gradient of S_q at 0 is 0)."""
    Q = rng.normal(size=(50, 8))
    tau = 0.3
    pi = np.exp(tsallis_policy(Q, q, tau))
    np.testing.assert_allclose(pi.sum(axis=1), 1.0, atol=1e-13)
    for s in range(Q.shape[0]):
        on = pi[s] > 0
        g = Q[s] - tau * q * pi[s] ** (q - 1) / (q - 1)
        c = g[on].mean()
        assert np.max(np.abs(g[on] - c)) <= 1e-10 * max(1.0, abs(c))
        assert np.all(Q[s][~on] <= c + 1e-10)


@settings(max_examples=12)
@given(
    seed=st.integers(0, 2**31 - 1),
    A=st.integers(2, 6),
    q=st.sampled_from([1.5, 2.0, 3.0]),
    case=st.sampled_from(["entropy", "kl", "both"]),
    scale=st.floats(0.05, 5.0),
)
def test_greedy_step_beats_slsqp(seed, A, q, case, scale):
    rng = np.random.default_rng(seed)
    Q = rng.normal(size=A) * scale
    mu = _rand_dist(rng, A)
    lam, tau = {"entropy": (0.0, 0.5), "kl": (0.5, 0.0), "both": (0.3, 0.4)}[case]
    lp = tsallis_greedy(Q, q, kl_coef=lam, entropy_coef=tau, log_ref=np.log(mu) if lam else None)
    pi = np.exp(lp)
    assert abs(pi.sum() - 1.0) <= 1e-12
    ours = objective(pi, Q, q, lam, tau, mu)
    assert ours >= slsqp_best(Q, q, lam, tau, mu, rng) - 1e-8  # T3


def test_q1_dispatches_to_softmax_bit_identically(rng):
    Q = rng.normal(size=(20, 5))
    np.testing.assert_array_equal(tsallis_policy(Q, 1.0, 0.7), log_softmax(Q / 0.7))
    lref = log_softmax(rng.normal(size=(20, 5)))
    np.testing.assert_array_equal(tsallis_policy(Q, 1.0, 0.7, lref), log_softmax(lref + Q / 0.7))
    lam, tau = 0.3, 0.2
    beta = lam / (lam + tau)
    np.testing.assert_array_equal(
        tsallis_greedy(Q, 1.0, kl_coef=lam, entropy_coef=tau, log_ref=lref),
        log_softmax(beta * lref + Q / (lam + tau)),
    )


def test_q_close_to_one_is_close_to_softmax(rng):
    Q = rng.normal(size=(50, 6)) * 2
    for tau in (0.1, 1.0):
        pi = np.exp(tsallis_policy(Q, 1 + 1e-6, tau))
        assert np.max(np.abs(pi - softmax(Q / tau))) <= 1e-5
    lref = log_softmax(rng.normal(size=(50, 6)))
    pi = np.exp(tsallis_policy(Q, 1 + 1e-6, 0.5, lref))
    assert np.max(np.abs(pi - softmax(lref + Q / 0.5))) <= 1e-5


@pytest.mark.parametrize("q", [1.5, 2.0, 3.0, 5.0])
def test_edge_cases(q):
    # all-equal q-values: uniform, for any coefficient
    for coef in (1e-8, 1.0, 1e8):
        np.testing.assert_allclose(np.exp(tsallis_policy(np.full(5, 3.0), q, coef)), 0.2, atol=1e-12)
    # one dominant action: exactly one-hot, the others get exactly probability 0
    lp = tsallis_policy(np.array([100.0, 0.0, -1.0, 0.5]), q, 1.0)
    assert lp[0] == 0.0 and np.all(np.isneginf(lp[1:]))
    # tiny coefficient: argmax; a tie at the top splits evenly
    lp = tsallis_policy(np.array([1.0, 0.3, 1.0]), q, 1e-12)
    np.testing.assert_allclose(np.exp(lp), [0.5, 0.0, 0.5], atol=1e-12)
    # huge coefficient: uniform up to O(ΔQ/coef)
    pi = np.exp(tsallis_policy(np.array([1.0, -2.0, 0.5, 3.0]), q, 1e8))
    np.testing.assert_allclose(pi, 0.25, atol=1e-6)
    assert np.all(np.isfinite(np.log(pi)))
    # with a reference: zeros of μ stay zeros
    lref = np.array([np.log(0.5), -np.inf, np.log(0.5)])
    lp = tsallis_policy(np.array([0.0, 10.0, 0.1]), q, 0.2, lref)
    assert np.isneginf(lp[1]) and abs(np.exp(lp).sum() - 1) < 1e-12


@pytest.mark.parametrize("q", [1.5, 2.0, 3.0])
def test_shift_invariance_and_huge_q_values(q, rng):
    """π is invariant to Q + c (ν moves by c); rows near the float64 limit do not overflow."""
    Q = rng.normal(size=(20, 6))
    base = tsallis_policy(Q, q, 0.7)
    for shift in (1e6, -1e9):
        # Q + shift is rounded to about eps·|shift|; π and ν − shift move by that much, no more
        tol = 1e-14 * abs(shift)
        np.testing.assert_allclose(np.exp(tsallis_policy(Q + shift, q, 0.7)), np.exp(base), atol=tol)
        nu = tsallis_normalizer(Q + shift, q, 0.7) - shift
        np.testing.assert_allclose(nu, tsallis_normalizer(Q, q, 0.7), atol=tol)
    np.testing.assert_allclose(np.exp(tsallis_policy(Q + 1e300, q, 0.7)), 1 / 6)  # all rounded to 1e300: ties
    np.testing.assert_allclose(np.exp(tsallis_policy(np.array([1e308, 1e308, 0.0]), q, 1.0)), [0.5, 0.5, 0.0])


def test_batch_shapes_and_kernel_matches_py_func(rng):
    Q = rng.normal(size=(3, 4, 5))
    lp = tsallis_policy(Q, 3.0, 0.5)
    assert lp.shape == Q.shape
    np.testing.assert_array_equal(lp[1, 2], tsallis_policy(Q[1, 2], 3.0, 0.5))
    # T5: the compiled kernel equals its pure-Python twin
    Q2 = rng.normal(size=(10, 5))
    lm = log_softmax(rng.normal(size=(10, 5)))
    for q in (2.0, 2.5):
        o1, n1 = np.empty((10, 5)), np.empty(10)
        o2, n2 = np.empty((10, 5)), np.empty(10)
        tsallis_threshold_rows(Q2, lm, 0.3, 0.2, q, o1, n1)
        tsallis_threshold_rows.py_func(Q2, lm, 0.3, 0.2, q, o2, n2)
        np.testing.assert_allclose(o1, o2, atol=1e-13, rtol=0)
        np.testing.assert_allclose(n1, n2, atol=1e-13, rtol=0)
        # the parallel twin (prange over row chunks) has the same arithmetic: bit-identical
        o3, n3 = np.empty((10, 5)), np.empty(10)
        tsallis_threshold_rows_par(Q2, lm, 0.3, 0.2, q, o3, n3)
        np.testing.assert_array_equal(o1, o3)
        np.testing.assert_array_equal(n1, n3)


def test_normalizer_convention_c6(rng):
    Q = rng.normal(size=(30, 6))
    tau = 0.4
    for q in (1.5, 2.0, 3.0):
        nu = tsallis_normalizer(Q, q, tau)
        pi = np.exp(tsallis_policy(Q, q, tau))
        on = pi > 0
        lhs = (Q - nu[:, None])[on]
        rhs = (q * tau * log_q_lee(pi, q))[on]
        np.testing.assert_allclose(lhs, rhs, atol=1e-10)
    np.testing.assert_allclose(
        tsallis_normalizer(Q, 1.0, tau), tau * np.log(np.exp(Q / tau).sum(axis=1)), rtol=1e-13
    )
    np.testing.assert_allclose(
        tsallis_normalizer(Q, 1 + 1e-7, tau), tsallis_normalizer(Q, 1.0, tau), atol=1e-5
    )


@pytest.mark.parametrize("q", [1.5, 2.0, 3.0])
def test_support_non_decreasing_in_tau(q):
    rng = np.random.default_rng(7)
    Q = rng.normal(size=(200, 10))
    taus = np.geomspace(1e-3, 1e2, 25)
    sizes = np.stack([np.isfinite(tsallis_policy(Q, q, t)).sum(axis=1) for t in taus])
    assert np.all(np.diff(sizes, axis=0) >= 0)
    assert sizes[0].min() >= 1 and sizes[-1].max() == 10


def test_iterated_tsallis_kl_step_never_enlarges_the_support():
    rng = np.random.default_rng(3)
    for q in (1.5, 2.0, 3.0):
        lp = np.full((50, 8), -np.log(8))
        for _ in range(15):
            new = tsallis_policy(rng.normal(size=(50, 8)) * 2, q, 0.3, lp)
            assert np.all(np.isneginf(new) | np.isfinite(lp))  # supp π_{k+1} ⊆ supp π_k
            assert np.all(np.isneginf(new[np.isneginf(lp)]))
            lp = new
        assert np.isfinite(lp).sum(axis=1).max() < 8  # and it does shrink


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input_raises_value_error():
    Q = np.zeros((2, 3))
    with pytest.raises(ValueError, match="tsallis_q"):
        tsallis_policy(Q, 0.9, 1.0)
    with pytest.raises(ValueError, match="tsallis_q"):
        tsallis_policy(Q, np.nan, 1.0)
    with pytest.raises(ValueError, match="coef"):
        tsallis_policy(Q, 2.0, 0.0)
    with pytest.raises(ValueError, match="coef"):
        tsallis_policy(Q, 2.0, -1.0)
    with pytest.raises(ValueError, match="q_values"):
        tsallis_policy(np.array([0.0, np.nan]), 2.0, 1.0)
    with pytest.raises(ValueError, match="ref"):
        tsallis_policy(Q, 2.0, 1.0, np.full((2, 3), 1 / 3))  # probabilities, not log-probabilities
    with pytest.raises(ValueError, match="ref"):
        tsallis_policy(Q, 2.0, 1.0, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="kl_coef"):
        tsallis_greedy(Q, 2.0)
    with pytest.raises(ValueError, match="log_ref"):
        tsallis_greedy(Q, 2.0, kl_coef=1.0)
    with pytest.raises(ValueError, match="tsallis_q"):
        log_q(1.0, 0.0)
    with pytest.raises(ValueError, match="x"):
        log_q(np.array([1.0, -0.5]), 2.0)
    with pytest.raises(ValueError, match="tau"):
        tsallis_normalizer(Q, 2.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        tsallis_kl(np.zeros(3), np.zeros(4), 2.0)


def test_parallel_dispatch_gives_the_same_bits(monkeypatch, rng):
    from klsim._kernels import tsallis as tsk

    Q = rng.normal(size=(40, 7))
    serial = [tsallis_policy(Q, q, 0.3) for q in (2.0, 3.0)]
    monkeypatch.setattr(tsk, "PARALLEL_MIN_ENTRIES", 0)
    monkeypatch.setattr(tsk, "PARALLEL_MIN_THREADS", 0)
    for q, s in zip((2.0, 3.0), serial):
        np.testing.assert_array_equal(tsallis_policy(Q, q, 0.3), s)


def _sorted_q2_rows(Q: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the full sorted q = 2 path (every candidate above ν_lo sorted), row by row."""
    from klsim._kernels.tsallis import _row_q2_sorted_call

    N, A = Q.shape
    out, nu = np.empty_like(Q), np.empty(N)
    idx, lw, qc = np.empty(A, dtype=np.int64), np.empty(A), np.empty(A)
    for i in range(N):
        nu[i] = _row_q2_sorted_call(Q[i], tau, idx, lw, qc, out[i])
    return out, nu


@pytest.mark.parametrize("kind", ["normal", "integers", "quarters", "one_decimal"])
def test_q2_entropy_fast_path_matches_sorted_path_and_sparsemax(kind, rng):
    """The λ = 0, q = 2 fast path (top-two candidate filter) gives the sorted path's bits, on random and
    tie-heavy rows (ties at the threshold get probability 0), and equals an independent sparsemax."""
    for A in (1, 2, 3, 7, 20, 33):
        N = 150
        if kind == "normal":
            Q = rng.normal(size=(N, A)) * rng.uniform(0.01, 10.0)
        elif kind == "integers":
            Q = rng.integers(-3, 4, size=(N, A)).astype(np.float64)
        elif kind == "quarters":
            Q = rng.integers(-2, 3, size=(N, A)) * 0.25
        else:
            Q = np.round(rng.normal(size=(N, A)), 1)
        for tau in (1e-12, 0.125, 0.25, 0.5, 1.5, 1e8):
            out, nu = np.empty_like(Q), np.empty(N)
            tsallis_threshold_rows(Q, np.zeros((1, A)), 0.0, tau, 2.0, out, nu)
            ref_out, ref_nu = _sorted_q2_rows(Q, tau)
            np.testing.assert_array_equal(out, ref_out)
            np.testing.assert_array_equal(nu, ref_nu)
            pi = np.exp(out)
            # the reference works on z = Q/(2τ) uncentered: its rounding is ~eps·max|z| (large for tiny τ)
            tol = 1e-12 + 1e-15 * float(np.max(np.abs(Q))) / tau
            np.testing.assert_allclose(pi, sparsemax(Q / (2 * tau)), atol=tol, rtol=0)
            assert np.all(np.abs(pi.sum(axis=1) - 1.0) <= 1e-13)
    # the compiled fast path equals its pure-Python twin (the rows' helpers stay compiled)
    Q = np.round(rng.normal(size=(40, 9)), 1)
    o1, n1, o2, n2 = np.empty_like(Q), np.empty(40), np.empty_like(Q), np.empty(40)
    tsallis_threshold_rows(Q, np.zeros((1, 9)), 0.0, 0.5, 2.0, o1, n1)
    tsallis_threshold_rows.py_func(Q, np.zeros((1, 9)), 0.0, 0.5, 2.0, o2, n2)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(n1, n2)


def test_rows_flagged_by_the_fast_path_are_redone_on_the_sorted_path(rng):
    """The fast path flags a row (ν = NaN) when its shortened support test fails (rounding only, not seen
    in practice); the redo pass recomputes exactly the flagged rows with the full sorted path."""
    from klsim._kernels.tsallis import _redo_flagged_q2_rows

    Q = np.round(rng.normal(size=(30, 6)), 1)
    ref_out, ref_nu = _sorted_q2_rows(Q, 0.3)
    out, nu = np.full_like(Q, 7.0), ref_nu.copy()
    flagged = np.arange(30) % 3 == 0
    nu[flagged] = np.nan
    out[~flagged] = ref_out[~flagged]
    _redo_flagged_q2_rows(Q, 0.3, 0, 30, np.zeros(6, dtype=np.int64), np.empty(6), np.empty(6), out, nu)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(nu, ref_nu)


@pytest.mark.parametrize("parallel", [False, True])
def test_sparsemax_path_reports_non_finite_q_values_by_index(monkeypatch, parallel):
    """q = 2, λ = 0 checks finiteness inside the kernel (no separate pass); the error names the entry."""
    from klsim._kernels import tsallis as tsk

    if parallel:
        monkeypatch.setattr(tsk, "PARALLEL_MIN_ENTRIES", 0)
        monkeypatch.setattr(tsk, "PARALLEL_MIN_THREADS", 0)
    for bad in (np.nan, np.inf, -np.inf):
        Q = np.zeros((3, 4, 5))
        Q[1, 2, 3] = bad
        for f, args, kwargs in (
            (tsallis_policy, (Q, 2.0, 0.5), {}),
            (tsallis_greedy, (Q, 2.0), {"entropy_coef": 0.5}),
            (tsallis_normalizer, (Q, 2.0, 0.5), {}),
            (tsallis_policy, (Q, 3.0, 0.5), {}),
        ):
            with pytest.raises(ValueError, match=r"q_values: non-finite value .* at \(1, 2, 3\)"):
                f(*args, **kwargs)
