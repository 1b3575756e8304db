"""Tests for klsim.games (spec nash-preference-games §7): closed forms, certificates, rates, identities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp as sp_lse
from scipy.special import softmax as sp_softmax

import klsim.games as G


def _log(p):
    return np.log(np.asarray(p, dtype=np.float64))


def _kl(p, q):  # plain KL(p‖q) from probabilities (independent of klsim)
    p = np.asarray(p)
    q = np.asarray(q)
    return float(np.sum(p * (np.log(p) - np.log(q))))


# ---------------------------------------------------------------------------------------------------------
# container and generators
# ---------------------------------------------------------------------------------------------------------
def test_random_game_draw_order_is_normative():
    rng = np.random.default_rng(7)
    L = rng.random((4, 4))
    z = rng.normal(size=4)
    P = np.full((4, 4), 0.5)
    for i in range(4):
        for j in range(i):
            P[i, j] = L[i, j]
            P[j, i] = 1 - L[i, j]
    g = G.random_game(4, np.random.default_rng(7))
    np.testing.assert_allclose(g.preferences, P, atol=1e-15)
    np.testing.assert_allclose(g.log_ref, z - sp_lse(z), atol=1e-15)
    t = G.tournament(6, 3)
    off = t.preferences[~np.eye(6, dtype=bool)]
    assert set(np.unique(off)) <= {0.0, 1.0}


def test_contextual_batch_draws_contexts_in_sequence():
    gb = G.random_game(5, np.random.default_rng(1), n_contexts=3)
    rng = np.random.default_rng(1)
    for c in range(3):
        g1 = G.random_game(5, rng)  # same generator, consumed in sequence
        np.testing.assert_array_equal(gb.preferences[c], g1.preferences)
        np.testing.assert_array_equal(gb.log_ref[c], g1.log_ref)
    assert gb.preferences.shape == (3, 5, 5) and gb.n_contexts == 3


@pytest.mark.parametrize(
    "P, match",
    [
        (np.array([[0.5, 0.7], [0.4, 0.5]]), r"i=0, j=1"),
        (np.array([[0.5, 1.2], [-0.2, 0.5]]), r"i=0, j=1"),
        (np.array([[0.5, np.nan], [0.5, 0.5]]), r"non-finite"),
        (np.array([[0.6, 0.5], [0.5, 0.5]]), r"i=0, j=0"),
    ],
)
def test_bad_preferences_raise_naming_index(P, match):
    with pytest.raises(ValueError, match=match):
        G.PreferenceGame(P, np.log([0.5, 0.5]))


def test_bad_batch_and_ref_raise():
    P = np.stack([np.full((2, 2), 0.5), np.array([[0.5, 0.9], [0.2, 0.5]])])
    with pytest.raises(ValueError, match=r"context 1, i=0, j=1"):
        G.PreferenceGame(P, np.log(np.full((2, 2), 0.5)))
    with pytest.raises(ValueError, match="log_ref"):
        G.PreferenceGame(np.full((2, 2), 0.5), np.log([0.6, 0.6]))
    with pytest.raises(ValueError, match="log_ref"):
        G.PreferenceGame(np.full((2, 2), 0.5), np.array([0.0, -np.inf]))
    with pytest.raises(ValueError, match="span"):
        G.bradley_terry_game([0.0, 1.5], link="linear")
    with pytest.raises(ValueError, match="link"):
        G.bradley_terry_game([0.0, 0.5], link="probit")


def test_bad_parameters_raise():
    g = G.random_game(4, 0)
    for b in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="beta"):
            G.regularized_nash(g, b)
        with pytest.raises(ValueError, match="beta"):
            G.nash_mirror_prox(g, b, n_iter=1)
    with pytest.raises(ValueError, match=r"eta.*2\*beta"):
        G.nash_mirror_prox(g, 0.1, eta=0.3, n_iter=1)
    G.nash_mirror_prox(g, 0.1, eta=0.3, n_iter=1, allow_unstable=True)  # explicitly allowed
    with pytest.raises(ValueError, match="lr"):
        G.egpo(g, 0.1, lr=0.9)  # implied eta > 2 beta
    with pytest.raises(ValueError, match="eta"):
        G.nash_md(g, 0.5, eta=3.0, n_iter=1)  # eta*beta > 1
    with pytest.raises(ValueError, match="estimator"):
        G.nash_mirror_prox(g, 0.1, n_iter=1, n_samples=3, estimator="bogus")


# ---------------------------------------------------------------------------------------------------------
# exact solver: closed forms and certificate
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [0.05, 0.5])
def test_linear_preference_closed_form_is_rlhf_at_2beta(beta):
    rng = np.random.default_rng(3)
    r = rng.random(20)
    z = rng.normal(size=20)
    log_ref = z - sp_lse(z)
    game = G.bradley_terry_game(r, link="linear", log_ref=log_ref)
    expected = log_ref + r / (2 * beta)
    expected -= sp_lse(expected)
    got = G.regularized_nash(game, beta).log_policy
    assert np.abs(got - expected).max() <= 1e-10


def test_rock_paper_scissors_digits_and_circulant_uniform():
    table = {
        0.1: (0.46818, 0.27286, 0.25896),
        0.01: (0.47744, 0.21516, 0.30740),
        1e-3: (0.47411, 0.21096, 0.31494),
        1e-4: (0.47373, 0.21057, 0.31570),
    }
    g = G.rps3(0.3, 0.2, 0.45)
    for beta, want in table.items():
        pi = np.exp(G.regularized_nash(g, beta).log_policy)
        assert np.abs(pi - np.array(want)).max() <= 6e-6, (beta, pi)
    for n in (4, 7):
        for beta in (0.01, 1.0):
            pi = np.exp(G.regularized_nash(G.cyclic_game(n, 0.4), beta).log_policy)
            assert np.abs(pi - 1 / n).max() <= 1e-12


def test_solver_certificate_and_cross_checks():
    game = G.random_game(10, 11)
    for beta in (0.01, 0.1, 1.0):
        res = G.regularized_nash(game, beta)
        lp = res.log_policy
        pi = np.exp(lp)
        # defining fixed point, checked with scipy: log π* = θ_ref + Pπ*/β − log Z
        rhs = game.log_ref + game.preferences @ pi / beta
        assert np.ptp(lp - (rhs - sp_lse(rhs))) <= 1e-10
        assert G.exploitability(game, lp, beta) <= 1e-13
        # second algorithm: a long Nash-MP run reaches the same point
        mp = G.nash_mirror_prox(game, beta, n_iter=5000, log_opt=lp)
        assert G.span(mp.log_policy - lp) <= 1e-10

        # third: L-BFGS on the convex form φ(π) + βKL(π‖π_ref) (softmax parametrization)
        def obj(x, beta=beta):
            q = sp_softmax(x)
            return beta * sp_lse(game.log_ref + game.preferences @ q / beta) + beta * _kl(
                q, np.exp(game.log_ref)
            )

        x = minimize(obj, game.log_ref.copy(), method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12}).x
        assert np.abs(sp_softmax(x) - pi).sum() <= 1e-3


def test_solver_raises_when_not_certified():
    game = G.random_game(6, 2)
    with pytest.raises(G.NashNotCertifiedError, match="beta"):
        G.regularized_nash(game, 1e-3, max_iter=1, log_init=game.log_ref)


def test_batch_equals_per_context():
    gb = G.random_game(8, 5, n_contexts=4)
    res = G.regularized_nash(gb, 0.02)
    mp = G.nash_mirror_prox(gb, 0.02, n_iter=30)
    for c in range(4):
        gc = gb.context(c)
        assert np.abs(res.log_policy[c] - G.regularized_nash(gc, 0.02).log_policy).max() <= 1e-12
        one = G.nash_mirror_prox(gc, 0.02, n_iter=30)
        assert np.abs(mp.log_policy[c] - one.log_policy).max() <= 1e-12
    np.testing.assert_allclose(
        mp.history["exploitability"][-1], G.exploitability(gb, mp.log_policy, 0.02), rtol=1e-12
    )


# ---------------------------------------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------------------------------------
def test_exploitability_decomposition_and_gap():
    rng = np.random.default_rng(0)
    worst = 0.0
    for t in range(60):
        n = int(rng.integers(2, 12))
        beta = float(10 ** rng.uniform(-2, 0.5))
        game = G.random_game(n, rng) if t % 2 else G.tournament(n, rng)
        lp_opt = G.regularized_nash(game, beta).log_policy
        x = rng.normal(scale=2.0, size=n)
        lp = x - sp_lse(x)
        pi, ps = np.exp(lp), np.exp(lp_opt)
        P, ref = game.preferences, game.log_ref
        phi_pi, phi_ps = (beta * sp_lse(ref + P @ q / beta) for q in (pi, ps))
        expl_def = phi_pi + beta * _kl(pi, np.exp(ref)) - 0.5  # definition, scipy only
        bregman = phi_pi - phi_ps - (P.T @ ps) @ (pi - ps)
        expl = G.exploitability(game, lp, beta)
        assert abs(expl - expl_def) <= 1e-12
        assert bregman >= -1e-14
        worst = max(worst, abs(expl - beta * _kl(pi, ps) - bregman))
        assert expl >= beta * _kl(pi, ps) - 1e-14
        assert abs(G.duality_gap(game, lp, beta) - 2 * expl) <= 1e-14
        # brute force: the best response beats every random competitor
        for _ in range(3):
            y = rng.normal(size=n)
            q = np.exp(y - sp_lse(y))
            assert q @ P @ pi - beta * _kl(q, np.exp(ref)) + beta * _kl(pi, np.exp(ref)) - 0.5 <= expl + 1e-14
    assert worst <= 1e-12


# ---------------------------------------------------------------------------------------------------------
# algorithms: fixed point, rate bound, invariants, query counts
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_nash_is_fixed_point_for_every_eta(beta):
    game = G.random_game(10, 4)
    lp = G.regularized_nash(game, beta).log_policy
    tol = max(1e-12, 1e-13 / beta)
    for eta in (0.1 * beta, 2 * beta, 10 * beta, 5.0):
        half, nxt = G.nash_mp_step(game.preferences, lp, game.log_ref, beta, eta)
        assert G.span(nxt - lp) <= tol and G.span(half - lp) <= tol
        assert G.span(G.mirror_descent_step(game.preferences, lp, game.log_ref, beta, eta) - lp) <= tol
        for res in (
            G.nash_mirror_prox(game, beta, eta=eta, n_iter=1, log_init=lp, log_opt=lp, allow_unstable=True),
            G.mirror_descent(game, beta, eta=eta, n_iter=1, log_init=lp, log_opt=lp),
            G.omwu(game, beta=beta, eta=eta, n_iter=1, log_init=lp, log_opt=lp),
        ):
            assert G.span(res.log_policy - lp) <= tol, res.algorithm


def test_rate_bound_never_violated_on_200_games():
    rng = np.random.default_rng(2024)
    worst = 0.0
    for t in range(200):
        n = int(rng.choice([3, 5, 10]))
        game = G.random_game(n, rng) if t % 2 == 0 else G.tournament(n, rng)
        beta = float(np.exp(rng.uniform(np.log(0.003), np.log(3.0))))
        eta = float(rng.choice([0.25, 0.5, 1.0, 2.0])) * beta
        x = rng.normal(scale=2.0, size=n)
        res = G.nash_mirror_prox(game, beta, eta=eta, n_iter=150, log_init=x - sp_lse(x))
        kl = res.history["kl_to_opt"]
        bound = (1 + eta) ** -np.arange(kl.size) * kl[0]
        assert np.all(kl <= bound * (1 + 1e-9) + 1e-14), (t, n, beta, eta)
        worst = max(worst, kl[1] / bound[1])
    assert worst > 0.9  # nearly tight at k = 1


def test_query_counts():
    game = G.random_game(5, 1)
    k = 7
    counts = {
        "nash_mirror_prox": G.nash_mirror_prox(game, 0.1, n_iter=k),
        "egpo": G.egpo(game, 0.1, n_iter=k),
        "extragradient": G.extragradient(game, n_iter=k),
        "mirror_descent": G.mirror_descent(game, 0.1, n_iter=k),
        "nash_md": G.nash_md(game, 0.1, n_iter=k),
        "sppo": G.sppo(game, n_iter=k),
        "omwu": G.omwu(game, n_iter=k),
        "omwu_reg": G.omwu(game, beta=0.1, eta=0.2, n_iter=k),
    }
    per_iter = {"nash_mirror_prox": 2, "egpo": 2, "extragradient": 2}
    for name, res in counts.items():
        q = res.history["queries"]
        assert q.size == k + 1
        if name.startswith("omwu"):
            assert q[-1] == k + 1
        else:
            assert q[-1] == per_iter.get(name, 1) * k, name


def test_egpo_step_equals_prox_step():
    rng = np.random.default_rng(9)
    for n in (3, 10, 40):
        game = G.random_game(n, rng)
        beta, lr = 0.07, 0.013 * n
        theta = rng.normal(size=n)
        pref = game.preferences @ np.exp(theta - sp_lse(theta))
        c = 4 * lr / n
        sgd = G.egpo_sgd_step(theta, game.log_ref, pref, beta, lr)
        prox = G.prox_step(theta - sp_lse(theta), game.log_ref, pref, beta, c / (1 - c))
        assert np.abs((sgd - sp_lse(sgd)) - prox).max() <= 1e-9
        # the loss gradient is the analytic one (finite differences)
        e = np.eye(n)[0] * 1e-6
        fd = (
            G.egpo_loss(theta + e, game.log_ref, pref, beta)
            - G.egpo_loss(theta - e, game.log_ref, pref, beta)
        ) / 2e-6
        assert abs(fd - G.egpo_grad(theta, game.log_ref, pref, beta)[0]) <= 1e-6
    game = G.random_game(12, 0)
    a = G.egpo(game, 0.05, n_iter=40)
    b = G.nash_mirror_prox(game, 0.05, eta=a.params["eta"], n_iter=40)
    assert np.abs(a.log_policy - b.log_policy).max() <= 1e-9


def test_nash_md_one_step_inequality_and_theory_rate():
    game = G.random_game(20, 3)
    for beta in (0.05, 0.5):
        lp_opt = G.regularized_nash(game, beta).log_policy
        ps = np.exp(lp_opt)
        lp = game.log_ref.copy()
        T = 300
        for t in range(T):
            eta = 2 / (beta * (t + 2))
            _, nxt = G.nash_md_step(game.preferences, lp, game.log_ref, beta, eta)
            assert _kl(ps, np.exp(nxt)) <= (1 - eta * beta) * _kl(ps, np.exp(lp)) + 2 * eta**2 + 1e-12
            lp = nxt
        res = G.nash_md(game, beta, n_iter=T, log_opt=lp_opt)
        assert np.abs(res.log_policy - lp).max() <= 1e-10
        assert res.history["kl_to_opt"][-1] <= 8 / (beta**2 * (T + 1))


def test_span_invariant_from_reference():
    for seed in range(4):
        game = G.tournament(15, seed) if seed % 2 else G.random_game(15, seed)
        for beta in (0.01, 0.3):
            for res in (G.nash_mirror_prox(game, beta, n_iter=60), G.nash_md(game, beta, n_iter=60)):
                assert beta * G.span(res.log_policy - game.log_ref) <= 1 + 1e-12
    # and every iterate of the LLM-facing step functions
    game = G.random_game(9, 1)
    lp = game.log_ref.copy()
    for _ in range(50):
        _, lp = G.nash_mp_step(game.preferences, lp, game.log_ref, 0.02, 0.04)
        assert 0.02 * np.ptp(lp - game.log_ref) <= 1 + 1e-12


def test_step_functions_match_algorithms():
    game = G.random_game(6, 8)
    beta, eta = 0.1, 0.15
    lp = game.log_ref.copy()
    for _ in range(5):
        _, lp = G.nash_mp_step(game.preferences, lp, game.log_ref, beta, eta)
    assert np.abs(G.nash_mirror_prox(game, beta, eta=eta, n_iter=5).log_policy - lp).max() <= 1e-13
    lp = game.log_ref.copy()
    for _ in range(5):
        lp = G.mirror_descent_step(game.preferences, lp, game.log_ref, beta, eta)
    assert np.abs(G.mirror_descent(game, beta, eta=eta, n_iter=5).log_policy - lp).max() <= 1e-13


def test_constant_step_nash_md_is_biased_but_nash_mp_is_not():
    game = G.random_game(10, 2)
    beta = 0.1
    lp_opt = G.regularized_nash(game, beta).log_policy
    md = G.nash_md(game, beta, eta=1.0, n_iter=400, log_opt=lp_opt)
    mp = G.nash_mirror_prox(game, beta, n_iter=400, log_opt=lp_opt)
    assert md.history["exploitability"][-1] >= 1e-9
    assert np.ptp(md.history["exploitability"][-50:]) <= 1e-12  # plateau, not slow convergence
    assert mp.history["exploitability"][-1] <= 1e-14


# ---------------------------------------------------------------------------------------------------------
# beta = 0, cycle, stochastic
# ---------------------------------------------------------------------------------------------------------
def test_unregularized_cycle_last_iterates():
    P = np.array([[0.5, 0.9, 0.1], [0.1, 0.5, 0.9], [0.9, 0.1, 0.5]])
    g = G.PreferenceGame(P, _log([0.7, 0.2, 0.1]))
    mwu = G.sppo(g, eta=0.1, n_iter=20000)
    eg = G.extragradient(g, eta=0.1, n_iter=20000)
    om = G.omwu(g, eta=0.1, n_iter=20000)
    assert mwu.history["exploitability"][-1000:].min() > 0.05
    assert mwu.history["exploitability_avg"][-1] < 0.01
    assert eg.history["exploitability"][-1] < 0.01 and om.history["exploitability"][-1] < 0.01
    assert np.abs(np.exp(eg.log_policy) - 1 / 3).sum() < 0.02  # the NE of the circulant cycle


def test_rlhf_blind_cycle():
    P = np.array([[0.5, 0.9, 0.1], [0.1, 0.5, 0.9], [0.9, 0.1, 0.5]])
    game = G.PreferenceGame(P, _log([0.7, 0.2, 0.1]))
    s = G.bradley_terry_fit(game)
    assert np.ptp(s) <= 1e-10
    assert np.abs(np.exp(G.rlhf_policy(game.log_ref, s, 0.1)) - [0.7, 0.2, 0.1]).max() <= 1e-12
    s_ref = G.bradley_terry_fit(game, pair_weights=np.outer([0.7, 0.2, 0.1], [0.7, 0.2, 0.1]))
    assert np.ptp(s_ref) > 1e-3  # the π_ref⊗π_ref design breaks the symmetry
    for beta in (1e-3, 0.1, 10.0):
        lp = G.regularized_nash(game, beta).log_policy
        kl = _kl(np.exp(lp), [0.7, 0.2, 0.1])
        assert kl > 1e-6
        assert G.win_probability(game, lp, game.log_ref) >= 0.5 + beta * kl - 1e-12
    assert np.abs(np.exp(G.regularized_nash(game, 1e-3).log_policy) - 1 / 3).sum() <= 1e-2


def test_sampled_oracle_unbiased_and_seeded():
    game = G.random_game(6, 0, n_contexts=2)
    lp = game.log_ref
    exact = np.einsum("cij,cj->ci", game.preferences, np.exp(lp))
    for est in ("column", "bernoulli"):
        o = G.algorithms._Oracle(game, 20000, est, 0)
        g = o(lp, np.empty_like(lp))
        se = np.sqrt(0.25 / 20000)
        assert np.abs(g - exact).max() <= 5 * se
        assert o.comparisons == 20000 * 6
    a = G.nash_mirror_prox(game, 0.1, n_iter=20, n_samples=10, seed=3)
    b = G.nash_mirror_prox(game, 0.1, n_iter=20, n_samples=10, seed=3)
    np.testing.assert_array_equal(a.log_policy, b.log_policy)
    assert a.history["comparisons"][-1] == 40 * 10 * 6
    # fixed m: a noise floor, far above the exact run
    a200 = G.nash_mirror_prox(game, 0.1, n_iter=200, n_samples=10, seed=3)
    ex = G.nash_mirror_prox(game, 0.1, n_iter=200)
    assert a200.history["kl_to_opt"][-50:].min() > 1e4 * ex.history["kl_to_opt"][-1]


def test_policy_gradient_prox_natural_lr_c_is_exact():
    game = G.random_game(7, 3)
    beta = 0.1
    c = 2 * beta / (1 + 2 * beta)
    pg = G.nash_mirror_prox_pg(game, beta, lr=c, inner_steps=1, n_iter=10)
    mp = G.nash_mirror_prox(game, beta, n_iter=10)
    assert np.abs(pg.log_policy - mp.log_policy).max() <= 1e-12
    vg = G.nash_mirror_prox_pg(
        game, beta, lr=0.5, inner_steps=3, natural=False, n_iter=3, n_samples=50, seed=1
    )
    assert np.isfinite(vg.log_policy).all()


@pytest.mark.slow
def test_repro_smoke(tmp_path):
    from papers_repro._harness import run_module

    report = run_module("nash_mirror_prox", tmp_path, quick=True)
    failed = [c.name for c in report.claims if not c.passed]
    assert report.passed, failed


def test_docs_games_example_runs(capsys):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "games.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    exec(compile(blocks[0], str(page), "exec"), {"__name__": "docs_games_example"})  # noqa: S102
    out = capsys.readouterr().out
    assert "certified: True" in out and "rate bound holds: True" in out and "(100, 50) True" in out
    nmp, mmd = (int(x) for x in re.search(r"Nash-MP (\d+), MMD (\d+)", out).groups())
    assert nmp < mmd
    assert float(re.search(r"closed form error ([\d.e+-]+)", out).group(1)) <= 1e-10


# ---------------------------------------------------------------------------------------------------------
# kernel properties (hypothesis): random shapes, extreme coefficients, ties
# ---------------------------------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25)
@given(
    n=st.integers(1, 12),
    C=st.integers(1, 3),
    log_beta=st.floats(-4, 3),
    scale=st.sampled_from([0.0, 1.0, 30.0]),
    seed=st.integers(0, 2**31),
)
def test_kernels_match_direct_formulas(n, C, log_beta, scale, seed):
    from klsim._kernels.games import affine_normalize, game_metrics

    rng = np.random.default_rng(seed)
    beta = 10.0**log_beta
    game = G.random_game(n, rng, n_contexts=C)
    x = rng.normal(scale=scale, size=(C, n))  # scale 0: ties everywhere
    lp = x - sp_lse(x, axis=1, keepdims=True)
    lo = rng.normal(size=(C, n))
    lo -= sp_lse(lo, axis=1, keepdims=True)
    ref = game.log_ref2
    g = np.einsum("cij,cj->ci", game.P3, np.exp(lp))
    kl, ex, sp, spr = (np.empty(C) for _ in range(4))
    game_metrics(lp, lo, ref, g, beta, kl, ex, sp, spr)
    p, q = np.exp(lo), np.exp(lp)
    np.testing.assert_allclose(kl, np.sum(p * (lo - lp), axis=1), atol=1e-12, rtol=1e-9)
    direct = beta * sp_lse(ref + g / beta, axis=1) + beta * np.sum(q * (lp - ref), axis=1) - 0.5
    np.testing.assert_allclose(ex, direct, atol=1e-12 * max(1.0, beta), rtol=1e-9)
    assert np.all(ex >= -1e-15 * max(1.0, beta))
    np.testing.assert_allclose(sp, np.ptp(lp - lo, axis=1), atol=1e-12)
    np.testing.assert_allclose(spr, np.ptp(lp - ref, axis=1), atol=1e-12)
    a, b, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(-1e3, 1e3)
    out = np.empty_like(lp)
    affine_normalize(lp, ref, g, a, b, s, out)
    want = a * lp + b * ref + s * g
    np.testing.assert_allclose(out, want - sp_lse(want, axis=1, keepdims=True), atol=1e-12 * max(1.0, abs(s)))
