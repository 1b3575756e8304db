"""Base log-space primitives of klsim.divergences against scipy and direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp as sp_logsumexp
from scipy.special import rel_entr

from klsim.divergences import (
    alpha_divergence,
    chi2_divergence,
    entropy,
    f_divergence,
    js_divergence,
    kl_divergence,
    log_softmax,
    logsumexp,
    softmax,
)

finite = st.floats(-50, 50, allow_nan=False)


@given(arrays(np.float64, (3, 5), elements=finite))
def test_logsumexp_matches_scipy(x):
    np.testing.assert_allclose(logsumexp(x, axis=1), sp_logsumexp(x, axis=1), rtol=1e-14, atol=1e-13)


def test_logsumexp_neg_inf_rows_and_huge_values():
    x = np.array([[-np.inf, -np.inf], [1e300, 1e300], [-1e4, -np.inf]])
    out = logsumexp(x)
    assert out[0] == -np.inf and not np.isnan(out).any()
    assert out[1] == pytest.approx(1e300 + np.log(2.0), rel=1e-15)
    assert out[2] == -1e4


@given(arrays(np.float64, (4, 6), elements=finite))
def test_softmax_rows_sum_to_one_and_kl_matches_scipy(x):
    p = softmax(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-14)
    q = softmax(x[::-1])
    expected = rel_entr(p, q).sum(axis=1)
    np.testing.assert_allclose(kl_divergence(log_softmax(x), log_softmax(x[::-1])), expected, atol=1e-12)


def test_kl_convention_c11():
    lp = np.log(np.array([0.5, 0.5, 0.0]))
    lq = np.log(np.array([0.25, 0.75, 0.0]))
    assert kl_divergence(lp, lq) == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(0.5 / 0.75), abs=1e-15)
    # p > 0 = q gives +inf
    assert kl_divergence(lq, np.log(np.array([1.0, 0.0, 0.0]))) == np.inf
    assert entropy(lp) == pytest.approx(np.log(2), abs=1e-15)


def test_chi2_js_alpha_against_direct_formulas(rng):
    p = rng.dirichlet(np.ones(7))
    q = rng.dirichlet(np.ones(7))
    assert chi2_divergence(p, q) == pytest.approx(np.sum(p**2 / q) - 1.0, rel=1e-12)
    assert chi2_divergence(p, q) == pytest.approx(f_divergence(p, q, lambda t: (t - 1) ** 2), rel=1e-12)
    m = 0.3 * p + 0.7 * q
    js = 0.3 * rel_entr(p, m).sum() + 0.7 * rel_entr(q, m).sum()
    assert js_divergence(np.log(p), np.log(q), beta=0.3) == pytest.approx(js, rel=1e-12)
    a = 0.4
    direct = (1 - np.sum(p**a * q ** (1 - a))) / (a * (1 - a))
    assert alpha_divergence(np.log(p), np.log(q), a) == pytest.approx(direct, rel=1e-12)
    # alpha -> 1 approaches KL(p||q)
    assert alpha_divergence(np.log(p), np.log(q), 1 - 1e-6) == pytest.approx(rel_entr(p, q).sum(), rel=1e-4)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        kl_divergence(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="beta"):
        js_divergence(np.zeros(2), np.zeros(2), beta=1.0)
