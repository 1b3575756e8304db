"""klsim_llm objectives: finite differences, padding, extreme logits, bad input, BoN law, Nash-MP against
klsim.games, the production forward path of TabularLM, the tokenizer fixture and the CLI."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from klsim.sequence import (  # noqa: E402
    SequenceLM,
    bon_log_law,
    enumerate_sequences,
    single_samples,
    token_logprobs,
)
from klsim_llm import objectives as ob  # noqa: E402
from klsim_llm.registry import DIVERGENCES, KL_ESTIMATORS, OBJECTIVES, PRESETS, get  # noqa: E402
from klsim_llm.tabular_lm import Problem, make_problem, torch_batch, torch_expectation  # noqa: E402

pytestmark = [pytest.mark.llm, pytest.mark.usefixtures("one_torch_thread_module")]


# --- finite differences of genuine (non-surrogate) losses ----------------------------------------------------

FD_CASES = [
    (KL_ESTIMATORS, "k2", {}, dict(n_vocab=3, max_len=2)),
    (KL_ESTIMATORS, "k3", {"agg": "token_mean"}, dict(n_vocab=3, max_len=3, eos=2)),
    (KL_ESTIMATORS, "fv_partial", {}, dict(n_vocab=3, max_len=2)),
    (DIVERGENCES, "jsd_beta", {"beta": 0.3}, dict(n_vocab=3, max_len=2)),
    (OBJECTIVES, "dpo", {"beta": 0.5}, dict(n_vocab=3, max_len=2, group=2, sampler="ref", max_samples=12)),
    (
        OBJECTIVES,
        "fdpo",
        {"beta": 0.5, "divergence": "alpha", "alpha": 0.4},
        dict(n_vocab=3, max_len=2, group=2, sampler="ref", max_samples=12),
    ),
    (
        OBJECTIVES,
        "hdpo",
        {"beta": 0.5, "alpha": 0.7},
        dict(n_vocab=3, max_len=2, group=2, sampler="ref", max_samples=12),
    ),
    (OBJECTIVES, "tdpo1", {"beta": 0.5}, dict(n_vocab=3, max_len=2, group=2, sampler="ref", max_samples=12)),
    (OBJECTIVES, "bon_distill", {"n": 3, "divergence": "rkl"}, dict(n_vocab=3, max_len=2, support_rows=True)),
]


@pytest.mark.parametrize("reg,name,params,pk", FD_CASES, ids=[c[1] for c in FD_CASES])
def test_gradient_matches_finite_differences(reg, name, params, pk):
    """Autograd gradient of Σ_s w_s ℓ_s (weights fixed) vs central differences of the same value."""
    pr = make_problem(seed=3, n_prompts=1, **pk)
    entry = reg[name]
    _, g = torch_expectation(entry, pr, params)
    z0 = pr.policy.logits
    rng = np.random.default_rng(0)
    for _ in range(4):
        d = rng.normal(size=z0.shape)
        h = 1e-5
        vals = []
        for s in (1, -1):
            z = torch.tensor(z0 + s * h * d, requires_grad=True)
            vals.append(torch_expectation(entry, pr, params, z=z)[0])
        fd = (vals[0] - vals[1]) / (2 * h)
        assert abs(fd - np.sum(g * d)) <= 1e-6 * max(1.0, abs(fd)), (fd, np.sum(g * d))


# --- padding -----------------------------------------------------------------------------------------------


def _garbage_padded(t, mask, value=123.0):
    return torch.where(mask.bool(), t, torch.full_like(t, value))


@pytest.mark.parametrize("name", sorted(set(KL_ESTIMATORS) - {"fv_partial", "fv_rtg"}))
def test_padding_changes_nothing_estimators(name):
    pr = make_problem(seed=4, n_prompts=2, n_vocab=3, max_len=3, eos=2, sampler="old", off_policy=True)
    z = torch.tensor(pr.policy.logits, requires_grad=True)
    tb = torch_batch(pr, z)
    lp, rl, ol, m = (tb[k][:, 0] for k in ("logp", "ref_logp", "old_logp", "mask"))
    agg = "seq_sum" if name == "rtg" else "seq_mean_token_mean"
    a, _ = KL_ESTIMATORS[name].fn(lp, rl, m, old_logp=ol, agg=agg)
    b, _ = KL_ESTIMATORS[name].fn(
        _garbage_padded(lp, m),
        _garbage_padded(rl, m, -50.0),
        m,
        old_logp=_garbage_padded(ol, m, 7.0),
        agg=agg,
    )
    (ga,) = torch.autograd.grad(a, z, retain_graph=True)
    (gb,) = torch.autograd.grad(b, z)
    assert abs(float((a - b).detach())) <= 1e-12 and torch.max(torch.abs(ga - gb)) <= 1e-12


def test_padding_changes_nothing_objectives():
    pr = make_problem(seed=5, n_prompts=1, n_vocab=3, max_len=3, eos=2)
    z = torch.tensor(pr.policy.logits, requires_grad=True)
    tb = torch_batch(pr, z)
    lp, rl, m = tb["logp"][:8, 0], tb["ref_logp"][:8, 0], tb["mask"][:8, 0]
    R = torch.linspace(-1, 1, 8, dtype=torch.float64)
    for fn, kw in (
        (OBJECTIVES["grpo"].fn, dict(group_size=4, beta=0.1, kl_estimator="k3", kl_placement="loss")),
        (OBJECTIVES["ppo"].fn, dict(beta=0.1, old_logp=lp.detach() - 0.1)),
        (OBJECTIVES["occupancy_chi2"].fn, dict(kl_coef=0.5)),
    ):
        a, _ = fn(lp, rl, m, R, **kw)
        kw2 = dict(kw)
        if "old_logp" in kw2:
            kw2["old_logp"] = _garbage_padded(kw2["old_logp"], m, 9.0)
        b, _ = fn(_garbage_padded(lp, m), _garbage_padded(rl, m, -40.0), m, R, **kw2)
        assert abs(float((a - b).detach())) <= 1e-12
    a, _ = OBJECTIVES["dpo"].fn(lp[:4], rl[:4], m[:4], lp[4:], rl[4:], m[4:], beta=0.3)
    b, _ = OBJECTIVES["dpo"].fn(
        _garbage_padded(lp[:4], m[:4]), rl[:4], m[:4], lp[4:], rl[4:], m[4:], beta=0.3
    )
    assert abs(float((a - b).detach())) <= 1e-12


# --- extreme logits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["k1", "k2", "k3", "k3_rho", "k3_st", "rtg", "fv_rtg"])
def test_extreme_logits_no_nan_with_clamps(name):
    g = torch.Generator().manual_seed(1)
    logits = (1e4 * torch.sign(torch.randn(2, 3, 5, generator=g))).double().requires_grad_(True)
    ref_logits = (1e4 * torch.sign(torch.randn(2, 3, 5, generator=g))).double()
    ids = torch.randint(0, 5, (2, 3, 1), generator=g)
    lp = torch.log_softmax(logits, -1).gather(-1, ids)[..., 0]
    rl = torch.log_softmax(ref_logits, -1).gather(-1, ids)[..., 0]
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, _ = KL_ESTIMATORS[name].fn(
        lp, rl, mask, logits=logits, ref_logits=ref_logits, log_ratio_clamp=20.0, kl_clamp=10.0
    )
    (gr,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and torch.isfinite(gr).all()


def test_extreme_logits_preference_losses():
    s = torch.tensor([[1e4, -1e4]], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, 2, dtype=torch.float64)
    m = torch.ones(1, 2, dtype=torch.bool)
    for name, kw in (
        ("dpo", {}),
        ("fdpo", {"divergence": "fkl"}),
        ("fdpo", {"divergence": "alpha", "alpha": 0.5}),
        ("fdpo", {"divergence": "js"}),
        ("ipo", {}),
        ("is_daa", {"eps": 0.5}),
    ):
        loss, _ = OBJECTIVES[name].fn(s, zero, m, -s, zero, m, beta=0.1, **kw)
        (g,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and torch.isfinite(g).all(), name


# --- bad input ---------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    lp = torch.zeros(2, 3, dtype=torch.float64)
    m = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="ref_logp"):
        KL_ESTIMATORS["k3"].fn(lp, torch.zeros(2, 4), m)
    with pytest.raises(ValueError, match="agg"):
        KL_ESTIMATORS["k3"].fn(lp, lp, m, agg="mean")
    with pytest.raises(ValueError, match="agg"):
        KL_ESTIMATORS["rtg"].fn(lp, lp, m, agg="token_mean")
    with pytest.raises(ValueError, match="placement"):
        KL_ESTIMATORS["k1"].fn(lp, lp, m, placement="advantage")
    with pytest.raises(ValueError, match="logits"):
        KL_ESTIMATORS["fv_rtg"].fn(lp, lp, m)
    with pytest.raises(ValueError, match="beta"):
        OBJECTIVES["dpo"].fn(lp, lp, m, lp, lp, m, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        OBJECTIVES["ipo"].fn(lp, lp, m, lp, lp, m, beta=-1.0)
    with pytest.raises(ValueError, match="beta"):
        OBJECTIVES["nash_mp"].fn(lp, lp, lp, m, torch.zeros(2), beta=0.0, eta=1.0)
    with pytest.raises(ValueError, match="divergence"):
        OBJECTIVES["fdpo"].fn(lp, lp, m, lp, lp, m, beta=0.1, divergence="tv")
    with pytest.raises(ValueError, match="alpha"):
        OBJECTIVES["fdpo"].fn(lp, lp, m, lp, lp, m, beta=0.1, divergence="alpha", alpha=1.5)
    with pytest.raises(ValueError, match="group_size"):
        OBJECTIVES["rloo"].fn(lp, lp, m, torch.zeros(2), group_size=3)
    with pytest.raises(ValueError, match="rewards"):
        OBJECTIVES["reinforce"].fn(lp, lp, m, torch.zeros(3))
    with pytest.raises(ValueError, match="kl_placement"):
        OBJECTIVES["reinforce"].fn(lp, lp, m, torch.zeros(2), beta=0.1, kl_placement="both")
    with pytest.raises(ValueError, match="beta"):
        OBJECTIVES["reinforce"].fn(lp, lp, m, torch.zeros(2), beta=-0.1)
    with pytest.raises(ValueError, match="log_ratio_clamp"):
        KL_ESTIMATORS["k3"].fn(lp, lp, m, log_ratio_clamp=-1.0)
    with pytest.raises(ValueError, match="preset"):
        ob.preset_kl(lp, lp, m, preset="trl_grp")
    with pytest.raises(ValueError, match="allow_double_kl"):
        ob.double_kl_guard(True, True)
    ob.double_kl_guard(True, True, allow_double_kl=True)


@pytest.mark.parametrize("reg", [OBJECTIVES, KL_ESTIMATORS, DIVERGENCES, PRESETS])
def test_unknown_name_lists_valid_names_with_hint(reg):
    name = next(iter(reg))
    with pytest.raises(KeyError) as exc:
        get(name + "x", reg)
    msg = str(exc.value)
    assert f"Did you mean {name!r}" in msg and "Valid names" in msg
    assert get(name, reg).name == name


def test_alpha_from_trl_mapping():
    """TRL #3906 computes u^{α′−1}/(α′−1): α′_TRL = 1 − α (spec §4 b)."""
    for a in (0.0, 0.3, 0.5, 1.0):
        assert abs(ob.alpha_from_trl(ob.alpha_from_trl(a)) - a) <= 1e-15
    assert ob.alpha_from_trl(1.0) == 0.0 and ob.alpha_from_trl(0.5) == 0.5
    # TRL's f′ for α′: (u^{α′−1} − 1)/(α′−1) equals the paper's (1 − u^{−α})/α with α = 1 − α′
    u, ap = 1.7, 0.3
    trl = (u ** (ap - 1) - 1) / (ap - 1)
    a = ob.alpha_from_trl(ap)
    assert abs(trl - (1 - u ** (-a)) / a) <= 1e-14


# --- best of N ---------------------------------------------------------------------------------------------


def test_bon_law_matches_klsim_best_of_n_and_sampler():
    from klsim.best_of_n import FiniteDist, bon_distribution

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7))
    r = np.array([0.0, 1.0, 1.0, 2.0, 0.0, 3.0, 1.0])  # ties
    for n in (1, 2, 5):
        ours = bon_log_law(np.log(p), r, n)
        theirs = bon_distribution(FiniteDist(p, r), n_samples=n).log_probs
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
        t = ob.bon_log_law(torch.as_tensor(np.log(p)), torch.as_tensor(r), n).numpy()
        np.testing.assert_allclose(t, ours, atol=1e-12)
    # sampler frequencies (TRL #4301): draw N from p, keep the best with uniform tie-breaking
    n, M = 4, 40000
    draws = rng.choice(7, size=(M, n), p=p)
    rr = r[draws] + 1e-9 * rng.random((M, n))  # uniform tie-breaking
    best = draws[np.arange(M), np.argmax(rr, 1)]
    from scipy.stats import chisquare

    law = np.exp(bon_log_law(np.log(p), r, n))
    counts = np.bincount(best, minlength=7)
    assert chisquare(counts, M * law).pvalue > 1e-3


# --- Nash-MP against klsim.games ----------------------------------------------------------------------------


def test_nash_mp_expected_gradient_reproduces_klsim_prox_steps():
    """Single-token game: one natural-gradient step per prox (lr = η/(1+η)) on the exact expected gradient
    of the torch nash_mp loss reproduces klsim.games.nash_mp_step over 20 iterations (spec §9 claim 5)."""
    from klsim.games.steps import nash_mp_step

    V, beta, eta = 3, 0.1, 0.5
    a, b, c = 0.3, 0.2, 0.45
    P = 0.5 + np.array([[0, a, -b], [-a, 0, c], [b, -c, 0]])
    log_ref = np.log(np.full(V, 1 / V))
    enum = enumerate_sequences(V, 1)
    theta = np.log(np.array([0.6, 0.3, 0.1]))
    theta_k = theta.copy()
    entry = OBJECTIVES["nash_mp"]
    ref = SequenceLM(log_ref[None, None, :], 1)

    def prox(center, opp):
        lm = SequenceLM(center[None, None, :], 1)
        pref = (P @ np.exp(opp))[None, :]
        pr = Problem(lm, ref, None, enum, single_samples(lm, enum), np.zeros((1, V)), pref, anchor=lm)
        _, g = torch_expectation(entry, pr, {"beta": beta, "eta": eta})
        pi = np.exp(center)
        new = center - eta / (1 + eta) * g[0, 0] / pi  # natural gradient of the softmax
        return new - np.log(np.sum(np.exp(new)))

    for _ in range(20):
        half = prox(theta_k, theta_k)
        full = prox(theta_k, half)
        ref_half, ref_full = nash_mp_step(P, theta_k, log_ref, beta, eta)
        assert np.max(np.abs(half - ref_half)) <= 1e-10
        assert np.max(np.abs(full - ref_full)) <= 1e-10
        theta_k = full


# --- production forward path, fixtures, CLI -----------------------------------------------------------------


def test_tabular_lm_forward_matches_klsim_token_logprobs():
    from klsim_llm.testing import TabularLM, response_logprobs

    lm = SequenceLM.random(2, 3, 3, eos=2, seed=8)
    enum = enumerate_sequences(3, 3, 2)
    model = TabularLM(torch.tensor(lm.logits), 3)
    for x in range(2):
        lp, _ = response_logprobs(
            model,
            torch.full((enum.n_sequences,), x),
            torch.as_tensor(enum.tokens),
            torch.as_tensor(enum.mask),
        )
        np.testing.assert_allclose(lp.detach().numpy(), token_logprobs(lm, enum)[x], atol=1e-13)
    with pytest.raises(ValueError, match="prefixes"):
        TabularLM(torch.zeros(1, 5, 3), 3)


def test_tokenizer_fixture_roundtrip():
    from klsim_llm.testing import build_tokenizer

    tok = build_tokenizer(["a", "b", "c"])
    ids = tok("a c b")["input_ids"]
    assert ids == [0, 2, 1] and tok.decode(ids) == "a c b"


def test_cli_list_and_audit(tmp_path, capsys):
    from klsim_llm.cli import main

    assert main(["list", "presets"]) == 0
    assert "trl_grpo" in capsys.readouterr().out
    assert main(["list", "nope"]) == 2
    assert main(["audit-kl", "--preset", "trl_grpo", "--preset", "library_rtg", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "audit.md").exists() and (tmp_path / "audit.json").exists()
    assert (tmp_path / "kl_estimator_audit.png").exists()
