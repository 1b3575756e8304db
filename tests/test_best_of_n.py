"""Tests of klsim.best_of_n: exact laws against brute force, Monte Carlo, mpmath and closed forms.

Spec ``best-of-n-vs-kl-rl.md`` §10 (acceptance claims 1–10, 17) and the issue's test list.  The LDP, BoNBoN,
Mroueh, InfAlign and Gao parts are in ``tests/test_best_of_n_extras.py``.
"""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klsim.best_of_n import (
    FiniteDist,
    Levels,
    MemorylessLM,
    beirami_kl_estimate,
    bon_distribution,
    bon_expected_estimator,
    bon_expected_reward,
    bon_kl,
    bon_kl_bound,
    bon_kl_to_tilt,
    bon_level_law_full,
    bon_level_log_probs,
    bon_renyi,
    bon_win_rate,
    bond_reward,
    bond_reward_from_cdf,
    kl_rl_tilt,
    korbak_elbo,
    log_tilt_kl_to_bon,
    renyi_beta_uniform,
    sample_bon,
    sequence_reward_law,
    tilt_kl,
    tilt_kl_identity,
    tilt_moments,
    win_rate,
)
from klsim.best_of_n.data import MemorylessLM as _LM

# ------------------------------------------------------------------------------------------- helpers


def random_instance(rng: np.random.Generator, k_max: int = 40) -> FiniteDist:
    """Spec §10 'random': K ∈ [2, 40], Dirichlet concentration in {0.05, 0.3, 1, 5}, half integer rewards."""
    k = int(rng.integers(2, k_max + 1))
    conc = float(rng.choice([0.05, 0.3, 1.0, 5.0]))
    p = rng.dirichlet(np.full(k, conc))
    p = np.maximum(p, 1e-300)
    p /= p.sum()
    r = (
        rng.integers(0, max(2, k // 3), size=k).astype(float)
        if rng.random() < 0.5
        else rng.standard_normal(k)
    )
    return FiniteDist(p, r)


def brute_force_bon(p: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    """Enumerate all N-tuples; the winner is uniform among the positions attaining the max reward."""
    out = np.zeros(p.size)
    for tup in itertools.product(range(p.size), repeat=n):
        w = float(np.prod(p[list(tup)]))
        rs = r[list(tup)]
        winners = [t for t, x in zip(tup, rs) if x == rs.max()]
        for t in winners:
            out[t] += w / len(winners)
    return out


def kl(a: np.ndarray, b: np.ndarray) -> float:
    m = a > 0
    return float(np.sum(a[m] * np.log(a[m] / b[m])))


def mp_log_q(probs_sorted_levels: list, n) -> list:
    """60-digit ln(F_k^N − F_{k−1}^N)."""
    mpmath.mp.dps = 60
    out, f_prev = [], mpmath.mpf(0)
    acc = mpmath.mpf(0)
    for k, pk in enumerate(probs_sorted_levels):
        acc += mpmath.mpf(pk)
        f = acc if k < len(probs_sorted_levels) - 1 else mpmath.mpf(1)
        out.append(mpmath.log(f**n - f_prev**n))
        f_prev = f
    return out


TIED = FiniteDist([0.1, 0.2, 0.15, 0.25, 0.05, 0.25], [0.0, 1.0, 1.0, 2.0, 0.5, 2.0])


# ------------------------------------------------------------------------------------------- BoN law


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_bon_law_matches_brute_force_enumeration(seed, n):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    p = rng.dirichlet(np.ones(k))
    r = rng.integers(0, 3, size=k).astype(float)  # ties
    d = FiniteDist(p, r)
    bf = brute_force_bon(p, r, n)
    res = bon_distribution(d, n_samples=n)
    np.testing.assert_allclose(res.probs, bf, atol=1e-14, rtol=0)
    assert res.expected_reward == pytest.approx(float(bf @ r), abs=1e-14)
    assert res.kl == pytest.approx(kl(bf, p), abs=1e-13)
    # win rate vs p with ties ½, by brute force over pairs
    w = sum(
        bf[i] * p[j] * (1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0)
        for i in range(k)
        for j in range(k)
    )
    assert res.win_rate == pytest.approx(w, abs=1e-14)
    assert bon_win_rate(d, n_samples=n) == pytest.approx(w, abs=1e-14)


def test_bon_law_monte_carlo_direct_argmax():
    """Seeded Monte Carlo of the N-draw argmax (uniform tie-break); tolerance 5 standard errors."""
    rng = np.random.default_rng(7)
    d = TIED
    n, m = 3, 200_000
    draws = rng.choice(d.n_outcomes, size=(m, n), p=d.probs)
    rew = d.rewards[draws]
    is_max = rew == rew.max(axis=1, keepdims=True)
    pick = np.argmax(np.where(is_max, rng.random((m, n)), -1.0), axis=1)  # uniform among tied maxima
    chosen = draws[np.arange(m), pick]
    freq = np.bincount(chosen, minlength=d.n_outcomes) / m
    law = bon_distribution(d, n_samples=n).probs
    se = np.sqrt(law * (1 - law) / m)
    assert np.all(np.abs(freq - law) <= 5 * se + 1e-12)
    # sample_bon (quantile construction, real N) against the exact law
    s = sample_bon(d, 100_000, np.random.default_rng(3), n_samples=2.5)
    law = bon_distribution(d, n_samples=2.5).probs
    freq = np.bincount(s, minlength=d.n_outcomes) / 100_000
    assert np.all(np.abs(freq - law) <= 5 * np.sqrt(law * (1 - law) / 100_000) + 1e-12)


@pytest.mark.parametrize("n", [2.0, 7.5, 1e3, 1e8, 1e15])
def test_log_q_matches_mpmath(n):
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.full(8, 0.5))
    p = p / p.sum()
    d = FiniteDist(p, np.arange(8.0))
    lq = bon_distribution(d, n_samples=n).level_log_probs
    ref = mp_log_q([mpmath.mpf(float(x)) for x in p], mpmath.mpf(n))
    for k in range(8):
        assert abs(lq[k] - float(ref[k])) <= 1e-12 * max(1.0, abs(float(ref[k])))


@pytest.mark.parametrize("log_n", [math.log(1e6), 500.0])
def test_no_cancellation_at_huge_n(log_n):
    p = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    d = FiniteDist(p, np.arange(5.0))
    law = bon_level_law_full(d.levels.log_mass, log_n)
    mpmath.mp.dps = 80
    n = mpmath.exp(mpmath.mpf(log_n))
    f_prev, acc = mpmath.mpf(0), mpmath.mpf(0)
    for k in range(5):
        acc += mpmath.mpf(float(p[k]))
        f = acc if k < 4 else mpmath.mpf(1)
        # top level: −ln Q = −log1p(−F_{K−1}^N) (80 digits cannot hold 1 − e^{−1e217})
        neg_log_q = -mpmath.log1p(-(f_prev**n)) if k == 4 else -mpmath.log(f**n - f_prev**n)
        ell_ref = float(mpmath.log(neg_log_q))
        assert np.isfinite(law["ell"][k])
        assert abs(law["ell"][k] - ell_ref) <= 1e-12 * max(1.0, abs(ell_ref))
        f_prev = f
    assert abs(float(np.exp(law["log_q"]).sum()) - 1.0) <= 1e-12
    # saturation: D = ln(1/P_K)
    assert bon_kl(d, log_n_samples=log_n) == pytest.approx(-math.log(0.1), abs=1e-12)


def test_stable_up_to_log_n_1e4_and_sum_to_one(rng):
    for _ in range(30):
        d = random_instance(rng)
        for ln in (0.0, 0.5, 3.0, 30.0, 700.0, 1e4):
            law = bon_level_law_full(d.levels.log_mass, ln)
            assert not np.isnan(law["log_q"]).any()
            assert np.all(np.isfinite(law["ell"][:-1])) or d.levels.n_levels == 1
            assert abs(float(np.exp(law["log_q"]).sum()) - 1.0) <= 1e-12


def test_fused_kl_kernel_equals_sum_over_law(rng):
    """bon_kl (fused kernel, linear fast path) against Σ Q ln(Q/P) from the full §3.2 law, incl. the LM tails."""
    cases = [random_instance(rng) for _ in range(40)] + [
        MemorylessLM([0.4, 0.3, 0.2, 0.1], [0, 1, 2, 3], 300)
    ]
    for d in cases:
        for ln in (0.0, 0.7, 5.0, 60.0, 599.0, 601.0, 2000.0, 1e4):
            res = bon_distribution(d, log_n_samples=ln)
            assert bon_kl(d, log_n_samples=ln) == pytest.approx(res.kl, rel=1e-12, abs=1e-13)


def test_saturation_tied_top_and_binary_uniform():
    # tied top: saturates at ln(1/P_K) with P_K = 0.5, not ln(1/p(y*)) = ln 4
    d = TIED
    assert bon_kl(d, log_n_samples=800.0) == pytest.approx(math.log(2.0), abs=1e-12)
    b = FiniteDist([0.5, 0.5], [0.0, 1.0])
    for n in (1, 2, 3, 10, 40):
        q = 1 - 2.0**-n
        expect = q * math.log(2 * q) + (1 - q) * math.log(2 * (1 - q)) if q < 1 else math.log(2)
        assert bon_kl(b, n_samples=n) == pytest.approx(expect, abs=1e-14)
        assert bon_win_rate(b, n_samples=n) == pytest.approx(0.75 - 2.0 ** -(n + 1), abs=1e-14)
    assert bon_kl(b, n_samples=2) == pytest.approx(0.130812, abs=5e-7)


def test_expected_reward_positive_terms_match_direct_sum(rng):
    for _ in range(20):
        d = random_instance(rng)
        for n in (2, 50, 1e6):
            res = bon_distribution(d, n_samples=n)
            direct = float(np.dot(np.exp(res.level_log_probs), d.levels.values))
            assert res.expected_reward == pytest.approx(direct, abs=1e-12 * (1 + np.abs(d.rewards).max()))
            assert bon_expected_reward(d, n_samples=n) == res.expected_reward


# ------------------------------------------------------------------------------------------- bound


def test_bound_is_upper_bound_strict_on_finite_spaces(rng):
    for _ in range(300):
        d = random_instance(rng)
        for n in (2, 3, 5, 10, 50, 200, 1e6):
            dk = bon_kl(d, n_samples=n)
            b = bon_kl_bound(d, n_samples=n)
            assert dk < b  # strict: every level of a finite space carries mass
    assert bon_kl(TIED, n_samples=1) == 0.0 == bon_kl_bound(n_samples=1)


def test_bound_gap_closes_when_no_level_carries_mass():
    gaps = []
    for size in (10, 1000, 100_000):
        d = FiniteDist(np.full(size, 1.0 / size), np.arange(size, dtype=float))
        gaps.append(bon_kl_bound(n_samples=4) - bon_kl(d, n_samples=4))
    assert gaps[0] > gaps[1] > gaps[2] > 0
    assert gaps[2] < 1e-7  # G_N ≤ 2N(N−1)Σ P² = 24e-5 ... and in fact O(1/L²)


def test_gap_bounds_with_level_masses(rng):
    for _ in range(300):
        d = random_instance(rng)
        s2 = float(np.sum(d.levels.mass**2))
        for n in (2, 3, 5, 10, 50, 200, 1e6):
            g = bon_kl_bound(n_samples=n) - bon_kl(d, n_samples=n)
            assert g <= 2 * n * (n - 1) * s2 * (1 + 1e-12)
            w = bon_win_rate(d, n_samples=n)
            assert w <= n / (n + 1) + 1e-15
            assert n / (n + 1) - w <= 0.5 * (n - 1) * s2 * (1 + 1e-12) + 1e-15


def test_outcome_mass_version_of_winrate_bound_fails_with_ties():
    d = FiniteDist(np.full(10, 0.1), np.zeros(10))  # all tied: W = ½, KL = 0
    n = 3
    w = bon_win_rate(d, n_samples=n)
    assert w == pytest.approx(0.5, abs=1e-15) and bon_kl(d, n_samples=n) == 0.0
    outcome = 0.5 * (n - 1) * float(np.sum(d.probs**2))
    level = 0.5 * (n - 1) * float(np.sum(d.levels.mass**2))
    assert n / (n + 1) - w > outcome  # the outcome-mass version is false
    assert n / (n + 1) - w <= level


# ------------------------------------------------------------------------------------------- tilt


def test_tilt_derivatives_kl_and_frontier_slope(rng):
    for _ in range(40):
        lev = random_instance(rng).levels
        v, lm = lev.values, lev.log_mass
        if v.size < 2:
            continue
        th = float(rng.uniform(0.1, 3.0))
        h = 1e-4
        ts = th + h * np.array([-2.0, -1.0, 1.0, 2.0])
        stencil = np.array([1.0, -8.0, 8.0, -1.0]) / (12 * h)  # 4th-order central difference
        k = np.array([math.log(np.sum(np.exp(lm + t * v))) for t in ts])
        kp = np.array([tilt_moments(v, lm, t)[0] for t in ts])
        m1, m2, _ = tilt_moments(v, lm, th)
        assert m1 == pytest.approx(float(stencil @ k), rel=1e-7, abs=1e-10)
        assert m2 == pytest.approx(float(stencil @ kp), rel=1e-7, abs=1e-10)
        phi = np.exp(lm + th * v - math.log(np.sum(np.exp(lm + th * v))))
        assert tilt_kl(v, lm, th) == pytest.approx(float(np.sum(phi * (np.log(phi) - lm))), abs=1e-12)


def test_round_trip_and_edge_cases(rng):
    for _ in range(100):
        d = random_instance(rng)
        dmax = -float(d.levels.log_mass[-1])
        delta = float(rng.uniform(0, 1)) * dmax
        t = kl_rl_tilt(d, delta)
        assert t.kl == pytest.approx(delta, abs=1e-10)
        # dR/dΔ = 1/λ by central differences
        if 0.05 * dmax < delta < 0.95 * dmax:
            e = 1e-6 * dmax
            slope = (kl_rl_tilt(d, delta + e).expected_reward - kl_rl_tilt(d, delta - e).expected_reward) / (
                2 * e
            )
            assert slope == pytest.approx(1.0 / t.kl_coef, rel=1e-5)
    assert kl_rl_tilt(TIED, 0.0).kl_coef == 0.0
    assert kl_rl_tilt(FiniteDist([0.3, 0.7], [1.0, 1.0]), 0.5).kl_coef == 0.0
    top = kl_rl_tilt(TIED, math.log(2.0))  # Δ = Δ_max, tied top: p conditioned on the top level
    assert top.kl_coef == np.inf and top.kl == pytest.approx(math.log(2), abs=1e-15)
    np.testing.assert_allclose(top.probs, [0, 0, 0, 0.5, 0, 0.5], atol=1e-15)
    assert kl_rl_tilt(TIED, 5.0).kl_coef == np.inf


def test_kl_identity_random_policies_and_bon(rng):
    for _ in range(200):
        d = random_instance(rng)
        dmax = -float(d.levels.log_mass[-1])
        delta = float(rng.uniform(0.01, 0.99)) * dmax
        pi = rng.dirichlet(np.full(d.n_outcomes, float(rng.choice([0.1, 1.0]))))
        with np.errstate(divide="ignore"):
            lp = np.log(pi)
        lhs, rhs = tilt_kl_identity(d, lp, delta)
        t = kl_rl_tilt(d, delta)
        e_pi = float(pi @ d.rewards)
        scale = 1 + kl(pi, d.probs) + t.kl_coef * (abs(t.expected_reward) + abs(e_pi))
        assert abs(lhs - rhs) <= 1e-12 * scale
        # corollary: D(π‖φ) ≤ ε1 + λ ε2
        e1 = max(0.0, kl(pi, d.probs) - delta)
        e2 = max(0.0, t.expected_reward - e_pi)
        assert lhs <= e1 + t.kl_coef * e2 + 1e-12 * scale
        bon = bon_distribution(d, n_samples=int(rng.choice([2, 10, 200])))
        lhs, rhs = tilt_kl_identity(d, bon.log_probs, delta)
        assert abs(lhs - rhs) <= 1e-12 * (
            1 + bon.kl + t.kl_coef * (abs(t.expected_reward) + abs(bon.expected_reward))
        )
        assert lhs == pytest.approx(
            bon_kl_to_tilt(d, delta, log_n_samples=bon.log_n_samples), abs=1e-12 * scale
        )
    # λ = inf: D(π‖φ) = D(π‖p) − Δ_max on the top level, +inf otherwise
    pi_top = np.array([-np.inf, -np.inf, -np.inf, math.log(0.3), -np.inf, math.log(0.7)])
    lhs, rhs = tilt_kl_identity(TIED, pi_top, 3.0)
    assert lhs == pytest.approx(rhs, abs=1e-15)
    assert tilt_kl_identity(TIED, np.log(TIED.probs), 3.0) == (np.inf, np.inf)


def test_reverse_kl_log_matches_direct():
    d = TIED
    delta = 0.3
    for n in (2, 5, 30):
        bon = bon_distribution(d, n_samples=n)
        t = kl_rl_tilt(d, delta)
        direct = kl(t.probs, bon.probs)
        assert math.exp(log_tilt_kl_to_bon(d, delta, n_samples=n)) == pytest.approx(direct, rel=1e-12)


# ------------------------------------------------------------------------------------------- BOND / estimator


@pytest.mark.parametrize("n", [2, 3, 7, 2.5, 1e6])
def test_bond_reward_reproduces_bon(n, rng):
    for d in (TIED, random_instance(rng)):
        r = bond_reward(d, n_samples=n)
        bon = bon_distribution(d, n_samples=n)
        with np.errstate(divide="ignore"):
            lp = np.log(d.probs) + (n - 1) * r
        np.testing.assert_allclose(np.exp(lp), bon.probs, atol=1e-14, rtol=1e-12)
        assert abs(float(np.exp(lp).sum()) - 1.0) <= 1e-12
        lev = d.levels
        law = bon_level_law_full(lev.log_mass, math.log(n))
        lcdf = law["log_cdf"][lev.outcome_level]
        lstrict = np.concatenate(([-np.inf], law["log_cdf"][:-1]))[lev.outcome_level]
        np.testing.assert_allclose(
            bond_reward_from_cdf(lcdf, lstrict, n_samples=n), r, rtol=1e-11, atol=1e-12
        )
        if float(n).is_integer() and n < 100:  # the integer-N closed form of spec §3.4
            f, fs = np.exp(lcdf), np.exp(lstrict)
            alt = np.log(f) + np.log(sum((fs / f) ** i for i in range(int(n)))) / (n - 1)
            np.testing.assert_allclose(alt, r, rtol=1e-12, atol=1e-13)


def test_beirami_estimator_is_exact_for_atom_plus_atomless():
    big = 1_000_000
    for eps in (0.01, 0.1, 0.5):
        # levels given directly (sorted): 1e6 equal atoms below one top atom of mass ε
        d = Levels(np.arange(big + 1.0), np.log(np.concatenate((np.full(big, (1 - eps) / big), [eps]))))
        for n in (2, 5, 16, 64):
            est = float(beirami_kl_estimate(eps, n_samples=n)[0])
            assert est == pytest.approx(bon_kl(d, n_samples=n), abs=1e-8)
            assert 0 <= est <= bon_kl_bound(n_samples=n)
    assert float(beirami_kl_estimate(1.0, n_samples=5)[0]) == 0.0
    assert float(beirami_kl_estimate(1e-12, n_samples=5)[0]) == pytest.approx(
        bon_kl_bound(n_samples=5), abs=1e-9
    )
    b = FiniteDist([0.5, 0.5], [0.0, 1.0])
    assert bon_expected_estimator(b, n_samples=2) == pytest.approx(0.179099, abs=1e-6)


def test_beirami_estimator_monte_carlo_average():
    d = TIED
    exact = bon_expected_estimator(d, n_samples=4)
    s = sample_bon(d, 200_000, np.random.default_rng(5), n_samples=4)
    vals = beirami_kl_estimate(d.probs[s], n_samples=4)
    assert abs(vals.mean() - exact) <= 5 * vals.std() / math.sqrt(vals.size)


# ------------------------------------------------------------------------------------------- win rates


def test_win_rate_identities(rng):
    for _ in range(50):
        d = random_instance(rng)
        a = np.log(rng.dirichlet(np.ones(d.n_outcomes)))
        b = np.log(rng.dirichlet(np.ones(d.n_outcomes)))
        assert win_rate(d, a, b) + win_rate(d, b, a) == pytest.approx(1.0, abs=1e-14)
        assert win_rate(d, np.log(d.probs)) == pytest.approx(0.5, abs=1e-14)
    big = Levels(np.arange(1_000_000, dtype=float), np.full(1_000_000, math.log(1e-6)))
    for n in (2, 4, 16):
        assert abs(bon_win_rate(big, n_samples=n) - n / (n + 1)) <= 1e-5


def test_renyi_of_bon_below_beta_uniform(rng):
    for _ in range(50):
        d = random_instance(rng)
        for n in (2, 10, 200):
            for a in (0.5, 2.0, 5.0):
                assert bon_renyi(d, a, n_samples=n) <= renyi_beta_uniform(n, a) + 1e-12


# ------------------------------------------------------------------------------------------- Korbak


def test_korbak_elbo_identity(rng):
    for _ in range(50):
        d = random_instance(rng)
        q = rng.dirichlet(np.ones(d.n_outcomes))
        beta = float(rng.uniform(0.1, 5))
        out = korbak_elbo(d, np.log(q), beta)
        post = d.probs * np.exp(d.rewards / beta)
        post /= post.sum()
        assert out["objective"] == pytest.approx(
            beta * out["log_partition"] - beta * kl(q, post), abs=1e-12 * (1 + abs(out["objective"]))
        )
        assert out["kl_to_posterior"] == pytest.approx(kl(q, post), abs=1e-12)
        assert out["elbo"] <= out["log_partition"] + 1e-12


# ------------------------------------------------------------------------------------------- memoryless LM


def brute_levels(p, r, n):
    """Law of S_n by enumerating X^n."""
    vals, ws = {}, {}
    for seq in itertools.product(range(len(p)), repeat=n):
        s = round(sum(r[i] for i in seq), 9)
        ws[s] = ws.get(s, 0.0) + float(np.prod([p[i] for i in seq]))
        vals[s] = s
    keys = sorted(ws)
    return np.array(keys), np.array([ws[k] for k in keys])


@pytest.mark.parametrize("rewards", [[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, math.sqrt(2.0), math.pi]])
def test_memoryless_levels_match_brute_force(rewards):
    p = np.array([0.4, 0.3, 0.2, 0.1])
    n = 6
    lm = MemorylessLM(p, rewards, n)
    v, w = brute_levels(p, rewards, n)
    np.testing.assert_allclose(lm.levels.values, v, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lm.levels.mass, w, rtol=1e-10)
    # E_BoN, both KLs and W by brute force on the levels of S_n
    for ln in (0.5, 3.0):
        f = np.cumsum(w)
        f[-1] = 1.0
        q = f ** math.exp(ln) - np.concatenate(([0.0], f[:-1])) ** math.exp(ln)
        res = bon_distribution(lm, log_n_samples=ln)
        assert res.expected_reward == pytest.approx(float(q @ v), rel=1e-10)
        assert res.kl == pytest.approx(kl(q, w), rel=1e-10)
        t = kl_rl_tilt(lm, 0.4 * n)
        assert bon_kl_to_tilt(lm, 0.4 * n, log_n_samples=ln) == pytest.approx(kl(q, t.probs), rel=1e-10)
        mid = np.concatenate(([0.0], f[:-1])) + w / 2
        assert res.win_rate == pytest.approx(float(q @ mid), rel=1e-10)


def test_memoryless_sequence_law_matches_full_enumeration_of_sequences():
    """Brute force over X^n of BoN on *sequences* (ties uniform), k = 4, n = 4, N = 2."""
    p = np.array([0.4, 0.3, 0.2, 0.1])
    r = np.array([0.0, 1.0, 2.0, 3.0])
    n = 4
    seqs = list(itertools.product(range(4), repeat=n))
    ps = np.array([np.prod(p[list(s)]) for s in seqs])
    rs = np.array([r[list(s)].sum() for s in seqs])
    bon_seq = brute_force_bon_fast(ps, rs, 2)
    lm = MemorylessLM(p, r, n)
    res = bon_distribution(lm, n_samples=2)
    assert res.expected_reward == pytest.approx(float(bon_seq @ rs), rel=1e-12)
    assert res.kl == pytest.approx(kl(bon_seq, ps), rel=1e-10)


def brute_force_bon_fast(p, r, n):
    """N = 2 pairs: winner uniform among tied maxima."""
    assert n == 2
    out = np.zeros(p.size)
    gt = r[:, None] > r[None, :]
    eq = r[:, None] == r[None, :]
    out += (p[:, None] * p[None, :] * (2 * gt + eq)).sum(axis=1)
    return out


def test_dp_equals_type_classes_and_tensorization():
    p = np.array([0.4, 0.3, 0.2, 0.1])
    n = 40
    lm = MemorylessLM(p, [0.0, 1.0, 2.0, 3.0], n)
    # type classes: rewards shifted by an irrational-looking offset that keeps the lattice out of reach
    lm_tc = _LM(p, [0.0, 1.0, 2.0, 3.0 + 1e-7], n, tie_tol=0.0)
    v, lw = sequence_reward_law(lm_tc)
    # aggregate type classes back onto the integer lattice (S rounded)
    lat = np.rint(v).astype(int)
    agg = np.zeros(3 * n + 1)
    np.add.at(agg, lat, np.exp(lw))
    np.testing.assert_allclose(agg[agg > 0], lm.levels.mass, rtol=1e-10)
    delta = 0.5
    t = kl_rl_tilt(lm, n * delta)
    tok = lm.token_dist.levels
    m1 = tilt_moments(tok.values, tok.log_mass, t.kl_coef)[0]
    assert t.expected_reward == pytest.approx(n * m1, rel=1e-10)
    assert t.kl == pytest.approx(n * delta, rel=1e-10)


def test_memoryless_n2000_under_two_seconds():
    import time

    assert MemorylessLM([0.4, 0.3, 0.2, 0.1], [0, 1, 2, 3], 10).levels.n_levels == 31  # compile first
    t0 = time.perf_counter()
    lm = MemorylessLM([0.4, 0.3, 0.2, 0.1], [0, 1, 2, 3], 2000)
    res = bon_distribution(lm, log_n_samples=1000.0)
    t = kl_rl_tilt(lm, 1000.0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    assert res.kl <= bon_kl_bound(log_n_samples=1000.0)
    assert t.kl == pytest.approx(1000.0, rel=1e-10)


# ------------------------------------------------------------------------------------------- bad input


def test_bad_input_raises():
    with pytest.raises(ValueError, match="probs"):
        FiniteDist([-0.1, 1.1], [0, 1])
    with pytest.raises(ValueError, match="probs"):
        FiniteDist([0.5, 0.6], [0, 1])
    with pytest.raises(ValueError, match="rewards"):
        FiniteDist([0.5, 0.5], [0, np.nan])
    with pytest.raises(ValueError, match="rewards"):
        FiniteDist([0.5, 0.5], [0, 1, 2])
    with pytest.raises(ValueError, match="n_samples"):
        bon_kl(TIED, n_samples=0.5)
    with pytest.raises(ValueError, match="n_samples"):
        bon_kl(TIED, n_samples=np.nan)
    with pytest.raises(ValueError, match="log_n_samples"):
        bon_kl(TIED, log_n_samples=-1.0)
    with pytest.raises(ValueError, match="n_samples"):
        bon_kl(TIED)
    with pytest.raises(ValueError, match="kl_budget"):
        kl_rl_tilt(TIED, -0.1)
    with pytest.raises(ValueError, match="kl_budget"):
        bon_kl_to_tilt(TIED, -1.0, n_samples=2)
    with pytest.raises(ValueError, match="token_probs"):
        MemorylessLM([0.5, 0.4], [0, 1], 3)
    with pytest.raises(ValueError, match="length"):
        MemorylessLM([0.5, 0.5], [0, 1], 0)
    with pytest.raises(ValueError, match="token_rewards"):
        MemorylessLM([0.5, 0.5], [0, np.inf], 3)
    with pytest.raises(ValueError, match="eps"):
        beirami_kl_estimate(0.0, n_samples=2)
    with pytest.raises(ValueError, match="dist"):
        bon_kl([0.5, 0.5], n_samples=2)
    with pytest.raises(ValueError, match="values"):
        Levels([0.0, 0.0], np.log([0.5, 0.5]))
    with pytest.raises(ValueError, match="log_mass"):
        Levels([0.0, 1.0], np.log([0.5, 0.6]))
    with pytest.raises(ValueError, match="level_log_mass"):
        bon_level_log_probs(np.log([0.5, 0.6]), n_samples=2)


# ------------------------------------------------------------------------------------------- property tests


@settings(max_examples=40)
@given(
    masses=st.lists(st.floats(1e-12, 1.0), min_size=1, max_size=12),
    log_n=st.sampled_from([0.0, 1e-9, 0.3, 2.0, 30.0, 600.0, 700.0, 5000.0]),
    reward_levels=st.integers(1, 4),
)
def test_kernels_property_random_pmfs_with_ties(masses, log_n, reward_levels):
    """Random shapes, extreme N and ties: the law sums to 1, matches the direct (linear) formula where it
    is representable, both KL kernels agree, and D ≤ ln N − (N−1)/N."""
    p = np.array(masses) / np.sum(masses)
    r = np.arange(p.size) % reward_levels  # ties when reward_levels < size
    d = FiniteDist(p, r.astype(float))
    law = bon_level_law_full(d.levels.log_mass, log_n)
    q = np.exp(law["log_q"])
    assert abs(q.sum() - 1.0) <= 1e-12
    if log_n <= 30.0:
        f = np.cumsum(d.levels.mass)
        f[-1] = 1.0
        n = math.exp(log_n)
        direct = f**n - np.concatenate(([0.0], f[:-1])) ** n
        np.testing.assert_allclose(q, direct, atol=1e-13)
    k = bon_kl(d, log_n_samples=log_n)
    assert k == pytest.approx(kl(q, d.levels.mass), abs=1e-12, rel=1e-12)
    assert k <= bon_kl_bound(log_n_samples=log_n) + 1e-15
    assert np.all(np.isfinite(law["ell"][:-1]))


def test_secondary_tie_break_key_is_a_finer_reward():
    """Spec §3.1: an identity-dependent tie-break (larger key wins) equals BoN of a tie-free refined reward."""
    p = np.array([0.1, 0.2, 0.15, 0.25, 0.05, 0.25])
    r = np.array([0.0, 1.0, 1.0, 2.0, 0.5, 2.0])
    key = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    d = FiniteDist(p, r, tie_break=key)
    refined = FiniteDist(p, r + 0.01 * key)  # same order, no ties
    for n in (1, 2, 3):
        bf = np.zeros(6)
        for tup in itertools.product(range(6), repeat=n):  # winner: max reward, then max key
            best = max(tup, key=lambda t: (r[t], key[t]))
            bf[best] += float(np.prod(p[list(tup)]))
        res = bon_distribution(d, n_samples=n)
        np.testing.assert_allclose(res.probs, bf, atol=1e-14)
        np.testing.assert_allclose(res.probs, bon_distribution(refined, n_samples=n).probs, atol=1e-14)
        assert res.expected_reward == pytest.approx(float(bf @ r), abs=1e-14)
    # the tilt depends on r only: same as without the key, including the λ = inf edge case (P(r = 2) = 0.5)
    for delta in (0.3, math.log(2.0), 3.0):
        np.testing.assert_allclose(kl_rl_tilt(d, delta).probs, kl_rl_tilt(TIED, delta).probs, atol=1e-13)
    with pytest.raises(ValueError, match="tie_break"):
        FiniteDist(p, r, tie_break=[0.0, 1.0])
