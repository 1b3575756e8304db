"""klsim.sequence (numpy only): enumeration, exact sequence objectives vs finite differences, twins vs finite
differences, best-of-N law vs brute force, bad input."""

import itertools

import numpy as np
import pytest

from klsim.sequence import (
    SequenceLM,
    enumerate_sequences,
    expected_loss,
    gather_batch,
    n_prefixes,
    pref_twin,
    prefix_occupancy,
    seq_chi2,
    seq_fkl,
    seq_rkl,
    sequence_logprobs,
    single_samples,
    tuple_samples,
)
from klsim.sequence.twins import bon_log_law, divergence_twin


@pytest.mark.parametrize(
    "V,L,eos,count", [(2, 1, None, 2), (3, 2, None, 9), (3, 3, 2, 1 + 2 + 4 * 3), (4, 2, 0, 1 + 3 * 4)]
)
def test_enumeration_counts_and_normalization(V, L, eos, count):
    e = enumerate_sequences(V, L, eos)
    assert e.n_sequences == count
    lm = SequenceLM.random(2, V, L, eos=eos, seed=1)
    np.testing.assert_allclose(np.exp(sequence_logprobs(lm, e)).sum(1), 1.0, atol=1e-13)
    assert len({tuple(r) for r in e.tokens * e.mask + (~e.mask) * -1}) == count
    d = prefix_occupancy(lm, e)
    np.testing.assert_allclose(d[:, 0], lm.prompt_weights, atol=1e-14)  # the empty prefix is always visited


@pytest.mark.parametrize("fn", [seq_rkl, seq_fkl, seq_chi2])
def test_sequence_objectives_match_finite_differences(fn):
    lm = SequenceLM.random(2, 3, 3, eos=1, seed=2)
    ref = SequenceLM.random(2, 3, 3, eos=1, seed=3)
    e = enumerate_sequences(3, 3, 1)
    v, g = fn(lm, ref, e)
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = rng.normal(size=lm.logits.shape)
        h = 1e-6
        fd = (
            fn(lm.with_logits(lm.logits + h * d), ref, e)[0]
            - fn(lm.with_logits(lm.logits - h * d), ref, e)[0]
        ) / (2 * h)
        assert abs(fd - np.sum(g * d)) <= 1e-7 * max(1.0, abs(fd))
    # brute-force values
    p = np.exp(sequence_logprobs(lm, e))
    q = np.exp(sequence_logprobs(ref, e))
    brute = {
        seq_rkl: np.sum(p * np.log(p / q), 1),
        seq_fkl: np.sum(q * np.log(q / p), 1),
        seq_chi2: np.sum(p**2 / q, 1) - 1,
    }[fn]
    assert abs(v - np.mean(brute)) <= 1e-12


@pytest.mark.parametrize(
    "name,params", [("dpo", {}), ("tdpo1", {}), ("fdpo", {"divergence": "js"}), ("hdpo", {"alpha": 0.6})]
)
def test_pref_twin_gradient_matches_finite_differences(name, params):
    lm = SequenceLM.random(1, 3, 2, seed=4)
    ref = SequenceLM.random(1, 3, 2, seed=5)
    e = enumerate_sequences(3, 2)
    s = tuple_samples(ref, e, 2)

    def value(z):
        pol = lm.with_logits(z)
        return expected_loss(
            pol, e, s, pref_twin(gather_batch(e, s, pol, ref), name=name, beta=0.7, **params)
        )

    v, g = value(lm.logits)
    d = np.random.default_rng(1).normal(size=lm.logits.shape)
    h = 1e-6
    fd = (value(lm.logits + h * d)[0] - value(lm.logits - h * d)[0]) / (2 * h)
    assert abs(fd - np.sum(g * d)) <= 1e-7 * max(1.0, abs(fd))


def test_divergence_twin_gradient_matches_finite_differences():
    lm = SequenceLM.random(2, 3, 2, eos=0, seed=6)
    ref = SequenceLM.random(2, 3, 2, eos=0, seed=7)
    e = enumerate_sequences(3, 2, 0)
    s = single_samples(ref, e)
    for name, kw in (
        ("alpha", {"alpha": 0.3}),
        ("jsd_beta", {"beta": 0.4}),
        ("chi2", {}),
        ("tsallis", {"tsallis_q": 1.5}),
    ):

        def value(z, name=name, kw=kw):
            pol = lm.with_logits(z)
            return expected_loss(pol, e, s, divergence_twin(gather_batch(e, s, pol, ref), name=name, **kw))

        v, g = value(lm.logits)
        d = np.random.default_rng(2).normal(size=lm.logits.shape)
        h = 1e-6
        fd = (value(lm.logits + h * d)[0] - value(lm.logits - h * d)[0]) / (2 * h)
        assert abs(fd - np.sum(g * d)) <= 1e-7 * max(1.0, abs(fd)), name


def test_bon_law_brute_force_with_ties():
    p = np.array([0.1, 0.3, 0.2, 0.4])
    r = np.array([1.0, 0.0, 1.0, 2.0])
    n = 3
    brute = np.zeros(4)
    for draw in itertools.product(range(4), repeat=n):
        w = np.prod(p[list(draw)])
        best = max(r[list(draw)])
        winners = [i for i in draw if r[i] == best]
        for i in winners:  # uniform tie-breaking among the drawn maximizers (with multiplicity)
            brute[i] += w / len(winners)
    np.testing.assert_allclose(np.exp(bon_log_law(np.log(p), r, n)), brute, atol=1e-14)


def test_bad_input():
    with pytest.raises(ValueError, match="logits"):
        SequenceLM(np.zeros((1, 5, 3)), 2)
    with pytest.raises(ValueError, match="logits"):
        SequenceLM(np.full((1, n_prefixes(3, 2), 3), np.nan), 2)
    with pytest.raises(ValueError, match="eos"):
        SequenceLM(np.zeros((1, n_prefixes(3, 2), 3)), 2, eos=3)
    with pytest.raises(ValueError, match="prompt_weights"):
        SequenceLM(np.zeros((2, n_prefixes(3, 2), 3)), 2, prompt_weights=np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="beta"):
        lm = SequenceLM.random(1, 2, 1)
        e = enumerate_sequences(2, 1)
        pref_twin(gather_batch(e, tuple_samples(lm, e, 2), lm, lm), name="dpo", beta=0.0)


def test_occupancy_chi2_penalty_matches_klsim_occupancy():
    """Within the clamp the χ²-occupancy reward penalty λ(e^s − 1) is klsim.occupancy's orpo_penalty(s, λ/2)
    (its coefficient convention: penalty 2·coef·(e^d − 1), gradient coef·∇χ²)."""
    from klsim.occupancy.orpo import orpo_penalty
    from klsim.sequence import occupancy_chi2_twin

    lm = SequenceLM.random(2, 3, 2, seed=8)
    ref = SequenceLM.random(2, 3, 2, seed=9)
    e = enumerate_sequences(3, 2)
    s = single_samples(lm, e)
    b = gather_batch(e, s, lm, ref, rewards=np.zeros((2, e.n_sequences)))
    lam = 0.7
    out = occupancy_chi2_twin(b, kl_coef=lam)
    seq = np.sum(b["mask"] * (b["logp"] - b["ref_logp"]), -1)[:, 0]
    np.testing.assert_allclose(out.value, orpo_penalty(seq, lam / 2, "chi2"), rtol=1e-13, atol=1e-15)


def _descend(lm, e, samples_fn, loss_fn, n_iter=3000, lr=2.0):
    """Exact gradient descent of Σ_s w_s ℓ_s (weights fixed by ``samples_fn``) on the logit table."""
    for _ in range(n_iter):
        s = samples_fn()
        _, g = expected_loss(lm, e, s, loss_fn(lm, s))
        lm = lm.with_logits(lm.logits - lr * g)
    return lm


@pytest.mark.parametrize("name,params", [("dpo", {}), ("hdpo", {"alpha": 0.7}), ("ipo", {})])
def test_preference_losses_reach_their_closed_form_optima(name, params):
    """Spec §9 claim 4 on a one-step tabular LM (exact expected gradients): DPO with Bradley-Terry labels →
    π_ref·e^{r/β}; H-DPO → (π_ref·e^{r/β})^{1/α}; IPO with pairs iid ~ μ = π_ref labelled by P →
    π_ref·exp(P(·≻μ)/β)."""
    from klsim.divergences import kl_divergence, log_softmax
    from klsim.sequence import Samples

    V, beta = 4, 0.8
    ref = SequenceLM.random(1, V, 1, seed=11)
    e = enumerate_sequences(V, 1)
    r = np.array([0.3, -0.5, 1.0, 0.1])
    base = tuple_samples(ref, e, 2)  # ordered pairs (y, y′) ~ μ ⊗ μ
    yw, yl = base.seq[:, 0], base.seq[:, 1]
    if name == "ipo":
        rng = np.random.default_rng(3)
        P = rng.uniform(size=(V, V))
        P = 0.5 * (P + 1 - P.T)
        lab = P[yw, yl]
    else:
        lab = 1.0 / (1.0 + np.exp(-(r[yw] - r[yl])))
    pairs = Samples(base.prompt, base.seq, base.weight * lab)  # (y preferred to y′) with its probability
    lm = _descend(
        ref,
        e,
        lambda: pairs,
        lambda lm, s: pref_twin(gather_batch(e, s, lm, ref), name=name, beta=beta, **params),
        n_iter=1500 if name != "ipo" else 800,
        lr=2.0 if name != "ipo" else 0.3,
    )
    lr_ = ref.log_policy[0, 0]
    if name == "dpo":
        star = log_softmax(lr_ + r / beta)
    elif name == "hdpo":
        star = log_softmax((lr_ + r / beta) / params["alpha"])
    else:
        star = log_softmax(lr_ + P @ np.exp(lr_) / beta)
    assert kl_divergence(star, lm.log_policy[0, 0]) <= 1e-8


@pytest.mark.parametrize("div,alpha", [("fkl", 0.5), ("js", 0.5), ("alpha", 0.3), ("alpha", 0.7)])
def test_fdpo_reaches_bisection_oracle(div, alpha):
    """f-DPO with Bradley-Terry labels → π* = π_ref·u with r = β f′(u) + C, C by bisection so that Σ π_ref u = 1
    (spec §4 f-DPO table, §9 claim 4)."""
    from scipy.optimize import brentq

    from klsim.divergences import kl_divergence
    from klsim.sequence import Samples

    V, beta = 4, 0.8
    ref = SequenceLM.random(1, V, 1, seed=12)
    e = enumerate_sequences(V, 1)
    r = np.array([0.3, -0.5, 1.0, 0.1])
    base = tuple_samples(ref, e, 2)
    yw, yl = base.seq[:, 0], base.seq[:, 1]
    pairs = Samples(base.prompt, base.seq, base.weight / (1.0 + np.exp(-(r[yw] - r[yl]))))
    lm = _descend(
        ref,
        e,
        lambda: pairs,
        lambda lm, s: pref_twin(
            gather_batch(e, s, lm, ref), name="fdpo", beta=beta, divergence=div, alpha=alpha
        ),
        n_iter=3000,
        lr=2.0,
    )
    pref = np.exp(ref.log_policy[0, 0])

    def u_of(C):
        if div == "fkl":
            return beta / (C - r)
        if div == "js":
            t = np.exp((r - C) / beta)
            return t / (2 - t)
        return (1 - alpha * (r - C) / beta) ** (-1 / alpha)

    lo = {
        "fkl": r.max() + 1e-9,
        "js": r.max() - beta * np.log(2) + 1e-9,
        "alpha": r.max() - beta / alpha + 1e-9,
    }[div]
    C = brentq(lambda c: np.sum(pref * u_of(c)) - 1.0, lo, lo + 100.0, xtol=1e-15)
    star = np.log(pref * u_of(C))
    assert kl_divergence(star, lm.log_policy[0, 0]) <= 1e-8
