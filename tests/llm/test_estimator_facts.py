"""Known facts about KL estimators, checked by exact enumeration (spec llm-bridge.md §2.1, §9 claim 2).

Targets (∇RKL_seq, ∇FKL_seq, per-step partial gradients) come from klsim.sequence's closed forms, which
are independent of the estimator code paths.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from klsim.sequence import (  # noqa: E402
    partial_fkl_grad,
    partial_rkl_grad,
    seq_fkl,
    seq_rkl,
)
from klsim_llm.registry import KL_ESTIMATORS, PRESETS  # noqa: E402
from klsim_llm.tabular_lm import klsim_expectation, make_problem, torch_expectation  # noqa: E402

pytestmark = [pytest.mark.llm, pytest.mark.usefixtures("one_torch_thread_module")]


ONE_STEP = dict(n_prompts=2, n_vocab=4, max_len=1)
TWO_TOK = dict(n_prompts=1, n_vocab=3, max_len=2)


def _g(name, pr, on_policy=True, **params):
    _, g_t = torch_expectation(KL_ESTIMATORS[name], pr, params, on_policy=on_policy)
    _, g_k = klsim_expectation(KL_ESTIMATORS[name], pr, params)
    assert np.abs(g_t - g_k).max() <= 1e-10
    return g_t


@pytest.mark.parametrize("fix", [ONE_STEP, TWO_TOK])
def test_k1_loss_has_zero_expected_gradient(fix):
    pr = make_problem(seed=1, **fix)
    assert np.abs(_g("k1", pr)).max() <= 1e-12


def test_k3_loss_follows_forward_kl():
    pr = make_problem(seed=2, **ONE_STEP)
    _, gf = seq_fkl(pr.policy, pr.ref, pr.enum)
    _, gr = seq_rkl(pr.policy, pr.ref, pr.enum)
    g = _g("k3", pr)
    assert np.abs(g - gf).max() <= 1e-10 and np.abs(g - gr).max() > 1e-2
    pr2 = make_problem(seed=2, **TWO_TOK)  # sequences: the per-step (partial) FKL gradient
    assert np.abs(_g("k3", pr2) - partial_fkl_grad(pr2.policy, pr2.ref, pr2.enum)).max() <= 1e-10


@pytest.mark.parametrize("off", [False, True])
def test_rho_k3_unbiased_for_per_step_reverse_kl(off):
    pr = make_problem(seed=3, sampler="old" if off else "policy", off_policy=off, **TWO_TOK)
    target = partial_rkl_grad(pr.policy, pr.ref, pr.enum)  # prefixes from π_θ
    g = _g("k3_rho", pr, on_policy=not off)
    if not off:
        assert np.abs(g - target).max() <= 1e-10
    else:  # one step: ρ·k3 under π_old has exactly the ∇RKL expectation
        pr1 = make_problem(seed=3, sampler="old", off_policy=True, **ONE_STEP)
        _, gr = seq_rkl(pr1.policy, pr1.ref, pr1.enum)
        assert np.abs(_g("k3_rho", pr1, on_policy=False) - gr).max() <= 1e-10


def test_k2_unbiased_only_on_policy():
    pr = make_problem(seed=4, **ONE_STEP)
    _, gr = seq_rkl(pr.policy, pr.ref, pr.enum)
    assert np.abs(_g("k2", pr) - gr).max() <= 1e-10
    pro = make_problem(seed=4, sampler="old", off_policy=True, **ONE_STEP)
    assert np.abs(_g("k2", pro, on_policy=False) - gr).max() >= 1e-3


def test_k3_in_reward_is_rkl_minus_fkl():
    pr = make_problem(seed=5, **ONE_STEP)
    _, gr = seq_rkl(pr.policy, pr.ref, pr.enum)
    _, gf = seq_fkl(pr.policy, pr.ref, pr.enum)
    g = _g("k3", pr, placement="reward")
    assert np.abs(g - (gr - gf)).max() <= 1e-10 and np.abs(g - gr).max() > 1e-2
    g1 = _g("k1", pr, placement="reward")
    assert np.abs(g1 - gr).max() <= 1e-10


def test_rho_k2_biased():
    pr = make_problem(seed=6, **ONE_STEP)
    _, gr = seq_rkl(pr.policy, pr.ref, pr.enum)
    assert np.abs(_g("k2_rho", pr) - gr).max() >= 1e-3


def test_per_token_pairing_biased_on_two_tokens_exact_on_one():
    for fix, biased in ((TWO_TOK, True), (ONE_STEP, False)):
        pr = make_problem(seed=7, **fix)
        _, gr = seq_rkl(pr.policy, pr.ref, pr.enum)
        _, g = torch_expectation(PRESETS["trl_nash_md"], pr, {})
        gap = np.abs(g - gr).max()
        assert (gap >= 0.05) if biased else (gap <= 1e-10), gap


def test_rtg_and_fv_rtg_equal_sequence_rkl():
    pr = make_problem(seed=8, n_prompts=2, n_vocab=3, max_len=3, eos=2)
    _, gr = seq_rkl(pr.policy, pr.ref, pr.enum)
    for name in ("rtg", "fv_rtg"):
        assert np.abs(_g(name, pr) - gr).max() <= 1e-10
    assert np.abs(_g("fv_partial", pr) - gr).max() > 1e-3  # partial only


def test_k3_st_has_k3_value_and_k2_gradient():
    pr = make_problem(seed=9, **TWO_TOK)
    v_st, g_st = torch_expectation(KL_ESTIMATORS["k3_st"], pr, {})
    v3, _ = torch_expectation(KL_ESTIMATORS["k3"], pr, {})
    _, g2 = torch_expectation(KL_ESTIMATORS["k2"], pr, {})
    assert abs(v_st - v3) <= 1e-12 and np.abs(g_st - g2).max() <= 1e-12


def test_rho_k3_has_k3_value_on_policy_but_new_gradient():
    """TRL #4637 / PR #6503: ρ·k3 is not a no-op on-policy."""
    pr = make_problem(seed=10, **ONE_STEP)
    v_r, g_r = torch_expectation(KL_ESTIMATORS["k3_rho"], pr, {})
    v3, g3 = torch_expectation(KL_ESTIMATORS["k3"], pr, {})
    assert abs(v_r - v3) <= 1e-12 and np.abs(g_r - g3).max() > 1e-2


def test_sequence_is_broadcast_adds_spurious_term():
    """TRL #6586: ρ̄·k3_t differs from token-level ρ_t·k3_t; the hand-written backward differs from both."""
    pr = make_problem(seed=11, **TWO_TOK)
    _, g_seq = torch_expectation(PRESETS["trl_grpo_bc_seq"], pr, {})
    _, g_tok = torch_expectation(PRESETS["trl_grpo_bc"], pr, {})
    _, g_hand = torch_expectation(PRESETS["liger_grpo_triton_seq"], pr, {})
    assert np.abs(g_seq - g_tok).max() > 1e-3
    assert np.abs(g_hand - g_seq).max() > 1e-3


def test_saturated_clamp_has_zero_gradient():
    lp = torch.tensor([[0.0, -30.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-1.0, 0.0]], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, m = KL_ESTIMATORS["k3"].fn(lp, ref, mask, log_ratio_clamp=20.0)
    (g,) = torch.autograd.grad(loss, lp)
    assert g[0, 1] == 0.0 and g[0, 0] != 0.0 and m["clamp_frac"] == 0.5
