"""Tests of klsim.best_of_n beyond the finite laws: LDP / SCGF / Rényi, BoNBoN, Mroueh, InfAlign, Gao fits.

Spec ``best-of-n-vs-kl-rl.md`` §5–§8, acceptance claims 12–16; the repro smoke test (slow).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.optimize import brentq, minimize_scalar

from klsim.best_of_n import (
    FiniteDist,
    MemorylessLM,
    bahadur_rao_log_tail,
    bon_kl,
    bon_kl_bound,
    bonbon_beta,
    bonbon_frontier,
    bonbon_kl,
    bonbon_win_rate,
    calibrated_reward,
    calibrated_tilt,
    exact_cumulants,
    exact_scgf,
    fit_gao,
    gao_peak,
    gao_reward,
    gao_toy,
    gaussian_bon_gain,
    infalign_best_transform,
    infalign_fixed_point,
    infalign_transform,
    inference_reward_gradient,
    inference_win_rate,
    kl_rl_tilt,
    lattice_span,
    mroueh_bound,
    rate_function,
    renyi_beta_uniform,
    renyi_cross_entropy,
    renyi_log_partition,
    scgf,
    tail_log_prob,
    threshold_policy,
    tilt_kl_coef,
    tilt_moments,
    uniform_levels,
    win_rate,
)

P4 = np.array([0.4, 0.3, 0.2, 0.1])
R4 = np.array([0.0, 1.0, 2.0, 3.0])


# ------------------------------------------------------------------------------------------- LDP


def test_rate_function_is_legendre_transform_and_kl():
    lm = MemorylessLM(P4, R4, 50)
    lam = tilt_kl_coef(lm, 25.0)
    for x in (0.3, 1.5, 2.6, 2.95):
        r = minimize_scalar(
            lambda t, x=x: -(t * x - float(scgf(lm, t, kl_coef=lam)[0])), bracket=(-1, 1), tol=1e-12
        )
        i_x = float(rate_function(lm, x, kl_coef=lam)[0])
        assert i_x == pytest.approx(-r.fun, abs=1e-10)
    # endpoints and outside the support
    lphi = np.log(P4) + lam * R4
    lphi -= np.log(np.exp(lphi).sum())
    assert float(rate_function(lm, 3.0, kl_coef=lam)[0]) == pytest.approx(-lphi[-1], abs=1e-14)
    assert float(rate_function(lm, 3.5, kl_coef=lam)[0]) == np.inf
    mean = tilt_moments(R4, np.log(P4), lam)[0]
    assert float(rate_function(lm, mean, kl_coef=lam)[0]) == pytest.approx(0.0, abs=1e-12)


def test_scgf_three_ways_and_cumulants():
    lm = MemorylessLM(P4, R4, 50)
    lam = tilt_kl_coef(lm, 25.0)
    ts = np.array([-1.0, -0.3, 0.5, 2.0])
    ex = exact_scgf(lm, ts, kl_coef=lam)
    np.testing.assert_allclose(ex, scgf(lm, ts, kl_coef=lam), atol=1e-10)
    renyi = [renyi_log_partition(lm, lam + t) - renyi_log_partition(lm, lam) for t in ts]
    np.testing.assert_allclose(ex, renyi, atol=1e-10)
    # cumulants / n against K', K'', K''' by finite differences of K
    k = lambda t: math.log(np.sum(P4 * np.exp(t * R4)))  # noqa: E731
    h = 1e-3
    d1 = (k(lam + h) - k(lam - h)) / (2 * h)
    d3 = (k(lam + 2 * h) - 2 * k(lam + h) + 2 * k(lam - h) - k(lam - 2 * h)) / (2 * h**3)
    c1, c2, c3 = exact_cumulants(lm, kl_coef=lam)
    assert c1 == pytest.approx(d1, rel=1e-6)
    assert c2 == pytest.approx(tilt_moments(R4, np.log(P4), lam)[1], rel=1e-10)
    assert c3 == pytest.approx(d3, rel=1e-4)


def test_renyi_cross_entropy_alpha_one_limit():
    p = np.array([0.2, 0.5, 0.3])
    q = np.array([0.1, 0.6, 0.3])
    assert renyi_cross_entropy(p, q, 1.0 + 1e-7) == pytest.approx(renyi_cross_entropy(p, q, 1.0), abs=1e-6)
    assert renyi_cross_entropy(p, q, 1.0) == pytest.approx(-float(p @ np.log(q)), abs=1e-15)


@pytest.mark.parametrize("n", [1000, 2000])
def test_exact_tails_against_rate_and_bahadur_rao(n):
    lm = MemorylessLM(P4, R4, n)
    lam = tilt_kl_coef(lm, 0.5 * n)
    for x in (2.6, 1.5):
        lt = tail_log_prob(lm, x, kl_coef=lam)
        i_x = float(rate_function(lm, x, kl_coef=lam)[0])
        if n == 2000:
            assert abs(-lt / n - i_x) <= 2e-2 * i_x
        assert abs(lt - bahadur_rao_log_tail(lm, x, kl_coef=lam)) <= 1e-4 * abs(lt)


def test_tail_matches_brute_force_small_n():
    import itertools

    n = 7
    lm = MemorylessLM(P4, R4, n)
    lam = 0.8
    seqs = np.array(list(itertools.product(range(4), repeat=n)))
    w = np.prod(P4[seqs], axis=1) * np.exp(lam * R4[seqs].sum(axis=1))
    w /= w.sum()
    s = R4[seqs].sum(axis=1)
    for x in (2.0, 0.9):
        upper = x >= tilt_moments(R4, np.log(P4), lam)[0]
        ref = w[s >= n * x - 1e-9].sum() if upper else w[s <= n * x + 1e-9].sum()
        assert math.exp(tail_log_prob(lm, x, kl_coef=lam)) == pytest.approx(ref, rel=1e-12)


def test_lattice_span_detection():
    assert lattice_span(np.array([0.0, 0.5, 1.5]))[0] == pytest.approx(0.5)
    assert lattice_span(np.array([0.0, 2.0, 4.0]))[0] == pytest.approx(2.0)
    assert lattice_span(np.array([0.0, 1.0, math.sqrt(2)])) is None


# ------------------------------------------------------------------------------------------- BoNBoN / threshold


def test_bonbon_table():
    table = {2: (0.66667, 2.289, 0.67591), 4: (0.80000, 4.917, 0.80400), 8: (0.88889, 9.055, 0.88968),
             16: (0.94118, 17.032, 0.94129), 32: (0.96970, 33.016, 0.96971)}  # fmt: skip
    gaps = []
    for n, (wb, c, wo) in table.items():
        f = bonbon_frontier(n_samples=n)
        assert f["w_bon"] == pytest.approx(wb, abs=6e-6)
        assert f["c_star"] == pytest.approx(c, abs=1e-3)
        assert f["w_opt"] == pytest.approx(wo, abs=6e-6)
        assert bonbon_kl(f["c_star"]) == pytest.approx(bon_kl_bound(n_samples=n), abs=1e-12)
        gaps.append(f["gap"])
    assert all(g > 0 for g in gaps) and all(np.diff(gaps) < 0)


def test_bonbon_closed_forms_by_quadrature_and_beta():
    c = 3.7
    dens = lambda u: c * math.exp(c * u) / math.expm1(c)  # noqa: E731
    w = integrate.quad(lambda u: u * dens(u), 0, 1, epsabs=1e-14)[0]
    kl = integrate.quad(lambda u: dens(u) * math.log(dens(u)), 0, 1, epsabs=1e-14)[0]
    assert float(bonbon_win_rate(c)) == pytest.approx(w, abs=1e-12)
    assert float(bonbon_kl(c)) == pytest.approx(kl, abs=1e-12)
    assert bonbon_beta(2) == pytest.approx(0.5)
    assert bonbon_beta(4) == pytest.approx(1 / (2 * 3 * (1 + 1 / 2 + 1 / 3)))


def test_calibrated_tilt_is_optimal_win_rate_at_fixed_kl(rng):
    d = FiniteDist(rng.dirichlet(np.ones(12)), rng.integers(0, 5, 12).astype(float))
    delta = 0.3
    best = calibrated_tilt(d, delta)
    assert best["kl"] == pytest.approx(delta, abs=1e-10)
    # any other tilt of any reward at the same KL has a lower win rate (LP optimality of e^{cC})
    for _ in range(20):
        r2 = rng.standard_normal(12)
        t = kl_rl_tilt(FiniteDist(d.probs, r2), delta)
        assert win_rate(d, t.log_probs) <= best["win_rate"] + 1e-12
    c = calibrated_reward(d)
    lev = d.levels
    assert np.all(np.diff(np.unique(c)) > 0) and np.unique(c).size == lev.n_levels


def test_threshold_policy_atomless():
    kl, w = threshold_policy(np.array([0.5, 0.1]))
    np.testing.assert_allclose(kl, [math.log(2), math.log(10)])
    np.testing.assert_allclose(w, [0.75, 0.95])
    n_eq = brentq(lambda n: bon_kl_bound(n_samples=n) - math.log(2), 1.001, 100)
    assert n_eq == pytest.approx(4.311, abs=1e-3)
    assert n_eq / (n_eq + 1) == pytest.approx(0.8117, abs=1e-4)


# ------------------------------------------------------------------------------------------- Mroueh


def test_renyi_beta_uniform_closed_form():
    for n in (2, 5, 30):
        for a in (0.5, 2.0, 5.0):
            integ = integrate.quad(
                lambda u, n=n, a=a: (n * u ** (n - 1)) ** a, 0, 1, epsabs=1e-14, epsrel=1e-13
            )[0]
            assert renyi_beta_uniform(n, a) == pytest.approx(math.log(integ) / (a - 1), abs=1e-10)
    assert renyi_beta_uniform(2, 2.0) == pytest.approx(math.log(4 / 3), abs=1e-15)
    assert renyi_beta_uniform(7, 1.0) == pytest.approx(bon_kl_bound(n_samples=7), abs=1e-15)


def test_gaussian_bon_below_mroueh_and_tilt_attains():
    assert gaussian_bon_gain(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-12)
    # E max of 3 standard normals = 3/(2√π)
    assert gaussian_bon_gain(3) == pytest.approx(3 / (2 * math.sqrt(math.pi)), abs=1e-12)
    for n in (2, 10, 1e3, 1e6):
        kl = bon_kl_bound(n_samples=n)
        assert gaussian_bon_gain(n) < float(mroueh_bound(1.0, kl))
    x = np.linspace(-12, 12, 24001)
    w = np.exp(-0.5 * x * x)
    g = FiniteDist(w / w.sum(), x)
    for kl in (0.1, 1.0, 4.0):
        gain = kl_rl_tilt(g, kl).expected_reward - float(g.probs @ x)
        assert gain == pytest.approx(float(mroueh_bound(1.0, kl)), rel=1e-6)


# ------------------------------------------------------------------------------------------- InfAlign


def test_inference_win_rate_power_density_and_brute_force():
    lp = uniform_levels(3000)
    u = np.arange(3001) / 3000
    for k in (1, 3):
        pi = np.log(np.diff(u ** (k + 1)))
        for n in (1, 2, 4, 8):
            assert inference_win_rate(pi, lp, n, "bon") == pytest.approx((k + 1) / (k + 2), abs=1e-5)
    # small discrete space: brute force over N-tuples of both players, ties ½
    import itertools

    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4))
    pi = rng.dirichlet(np.ones(4))
    for mode, n in (("bon", 2), ("won", 2), ("bon", 3), ("won", 3)):
        pick = max if mode == "bon" else min
        ref = 0.0
        for a in itertools.product(range(4), repeat=n):
            wa = np.prod(pi[list(a)])
            for b in itertools.product(range(4), repeat=n):
                wb = np.prod(p[list(b)])
                x, y = pick(a), pick(b)
                ref += wa * wb * (1.0 if x > y else 0.5 if x == y else 0.0)
        assert inference_win_rate(np.log(pi), np.log(p), n, mode) == pytest.approx(ref, abs=1e-14)


def test_inference_gradient_matches_finite_differences():
    """R is the gradient of W on the simplex: R_i − R_0 = directional derivative along e_i − e_0."""
    from klsim.best_of_n.frontier import _base, _transformed_masses

    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(7))
    pi = rng.dirichlet(np.ones(7))
    for mode in ("bon", "won"):
        g = inference_reward_gradient(np.log(pi), np.log(p), 3, mode)

        def w(x, mode=mode):
            return float(np.dot(_transformed_masses(x, 3.0, mode)[0], _base(p, 3.0, mode)))

        h = 1e-6
        for i in range(1, 7):
            e = np.zeros(7)
            e[i], e[0] = h, -h
            fd = (w(pi + e) - w(pi - e)) / (2 * h)
            assert g[i] - g[0] == pytest.approx(fd, abs=1e-8)


def test_infalign_fixed_points_and_transforms():
    lp = uniform_levels(3000)
    c = brentq(lambda c: float(bonbon_kl(c)) - 0.5, 1e-3, 100)
    fp1 = infalign_fixed_point(lp, 0.5, n_samples=1)
    assert fp1["win_rate"] == pytest.approx(float(bonbon_win_rate(c)), abs=1e-6)
    for mode in ("bon", "won"):
        for n, kl in ((2, 0.5), (4, 0.5)):
            fp = infalign_fixed_point(lp, kl, n_samples=n, mode=mode)
            assert fp["converged"] and fp["residual"] <= 1e-10
            assert fp["kl"] == pytest.approx(kl, abs=1e-9)
            bt = infalign_best_transform(lp, kl, n_samples=n, mode=mode)
            ident = infalign_transform(lp, kl, n_samples=n, mode=mode, transform="identity")
            assert fp["win_rate"] >= bt["win_rate"] - 1e-4
            assert bt["win_rate"] >= ident["win_rate"]
            assert bt["kl"] == pytest.approx(kl, abs=1e-10)


def test_infalign_grid_refinement():
    a = infalign_transform(uniform_levels(3000), 0.5, n_samples=2, transform="exp", t=5.0)["win_rate"]
    b = infalign_transform(uniform_levels(48000), 0.5, n_samples=2, transform="exp", t=5.0)["win_rate"]
    assert abs(a - b) <= 1e-4


# ------------------------------------------------------------------------------------------- Gao


def test_gao_fit_recovers_noiseless_forms_and_peaks():
    d = np.linspace(0.05, 5, 40)
    for form, (a, b) in (("bon", (1.3, 0.2)), ("rl", (0.9, 0.35))):
        fit = fit_gao(d, gao_reward(d, a, b, form), form)
        assert fit["alpha"] == pytest.approx(a, rel=1e-8) and fit["beta"] == pytest.approx(b, rel=1e-8)
        assert fit["alpha"] == pytest.approx(fit["alpha_lstsq"], abs=1e-10)
        ds, rs = gao_peak(a, b, form)
        res = minimize_scalar(lambda x, a=a, b=b, form=form: -float(gao_reward(x, a, b, form)[0]),
                              bounds=(1e-6, 100), method="bounded", options={"xatol": 1e-10})  # fmt: skip
        assert res.x == pytest.approx(ds, rel=1e-6) and -res.fun == pytest.approx(rs, rel=1e-10)
    with pytest.raises(ValueError, match="form"):
        fit_gao(d, d, "linear")


def test_gao_toy_is_exact_and_consistent():
    toy = gao_toy(2**10, noise="student", nu=3.0, seed=1, n_values=np.array([1.0, 4.0, 64.0]))
    assert toy["bon_d"][0] == 0.0 and toy["bon_gold"][0] == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(1)
    p = np.full(2**10, 2.0**-10)
    gold = rng.standard_normal(2**10)
    proxy = gold + rng.standard_t(3.0, 2**10)
    d = FiniteDist(p, proxy)
    assert toy["bon_d"][1] ** 2 == pytest.approx(bon_kl(d, n_samples=4.0), abs=1e-14)
    assert np.all(np.diff(toy["bon_proxy"]) > 0)


# ------------------------------------------------------------------------------------------- bad input


def test_extras_bad_input():
    lm = MemorylessLM(P4, R4, 10)
    with pytest.raises(ValueError, match="kl_budget"):
        rate_function(lm, 1.0)
    with pytest.raises(ValueError, match="kl_coef"):
        rate_function(lm, 1.0, kl_coef=-1.0)
    with pytest.raises(ValueError, match="mode"):
        inference_win_rate(uniform_levels(3), uniform_levels(3), 2, "median")
    with pytest.raises(ValueError, match="alpha"):
        renyi_beta_uniform(3, 0.0)
    with pytest.raises(ValueError, match="n_samples"):
        bonbon_beta(1)


def test_docs_example_runs(capsys):
    import re
    from pathlib import Path

    src = (Path(__file__).resolve().parents[1] / "docs" / "best_of_n.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", src, re.S).group(1)
    exec(compile(code, "docs/best_of_n.md", "exec"), {})
    out = capsys.readouterr().out.split("\n")
    assert float(out[1]) == pytest.approx(math.log(2.0), abs=1e-12)  # saturation at ln(1/P_K)


# ------------------------------------------------------------------------------------------- repro smoke


@pytest.mark.slow
def test_repro_bon_asymptotics_quick(tmp_path):
    from papers_repro._harness import run_module

    report = run_module("bon_asymptotics", tmp_path, quick=True)
    failed = [c.name for c in report.claims if not c.passed]
    assert report.passed, failed
    assert len(report.figures) == 8 and all(f.exists() for f in report.figures)
