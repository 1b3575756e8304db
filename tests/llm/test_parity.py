"""Parity: every klsim_llm registry entry equals its exact klsim twin (value and logit gradient, 1e-10).

The torch side feeds each enumerated sample through the real registry loss and differentiates by autograd;
the klsim side uses the numpy twin with hand-derived gradients (spec llm-bridge.md §1, §9 claim 1).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from klsim.sequence import PRESET_SPECS, TWINS, SequenceLM, enumerate_sequences  # noqa: E402
from klsim_llm import objectives  # noqa: E402
from klsim_llm.registry import REGISTRIES  # noqa: E402
from klsim_llm.tabular_lm import (  # noqa: E402
    PARITY_CASES,
    Problem,
    klsim_expectation,
    make_problem,
    parity_case_for,
    torch_expectation,
)

pytestmark = [pytest.mark.llm, pytest.mark.usefixtures("one_torch_thread_module")]


ENTRIES = [(reg, name) for reg, r in REGISTRIES.items() if reg != "advantages" for name in r]


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(1.0, float(np.max(np.abs(b)))))


@pytest.mark.parametrize("reg,name", ENTRIES)
def test_entry_matches_klsim_twin(reg, name):
    entry = REGISTRIES[reg][name]
    assert entry.twin is not None, f"{name} has no twin"
    cases = parity_case_for(reg, name)  # KeyError: an entry without a parity case fails
    assert cases
    for i, (pk, params, on_policy) in enumerate(cases):
        for seed in (i, 17 + i) if i == 0 else (i,):
            pr = make_problem(seed=seed, **pk)
            v_t, g_t = torch_expectation(entry, pr, params, on_policy=on_policy)
            v_k, g_k = klsim_expectation(entry, pr, params)
            assert abs(v_t - v_k) <= 1e-10 * max(1.0, abs(v_k)), (params, v_t, v_k)
            assert _rel(g_t, g_k) <= 1e-10, (params, _rel(g_t, g_k))
            assert np.abs(g_k).max() > 1e-6 or name in ("k1",), "degenerate fixture: zero gradient"


def test_every_registry_has_twins_and_cases():
    for reg, r in REGISTRIES.items():
        assert set(r) == set(TWINS[reg]), reg
        for name, e in r.items():
            assert e.resolve_twin() is TWINS[reg][name]
            if reg != "advantages":
                assert name in PARITY_CASES[reg], f"{reg}/{name} has no parity case"


def test_preset_specs_equal_in_both_packages():
    assert objectives.PRESETS == PRESET_SPECS


@pytest.mark.parametrize("name", ["none", "rloo", "group_mean", "grpo"])
def test_advantages_match_twin(name, rng):
    R = rng.normal(size=(4, 3))
    a_t, _ = REGISTRIES["advantages"][name].fn(torch.as_tensor(R.ravel()), group_size=3)
    a_k = TWINS["advantages"][name](R)
    assert np.max(np.abs(a_t.numpy() - a_k.ravel())) <= 1e-12


def test_advantage_closed_forms():
    R = np.array([[1.0, 2.0, 6.0]])
    np.testing.assert_allclose(TWINS["advantages"]["rloo"](R), [[1 - 4, 2 - 3.5, 6 - 1.5]], atol=1e-15)
    np.testing.assert_allclose(
        TWINS["advantages"]["grpo"](R)[0, 2], (6 - 3) / (np.sqrt(7.0) + 1e-4), atol=1e-14
    )


@pytest.mark.parametrize(
    "reg,name,params",
    [
        ("kl_estimators", "k3", {}),
        ("kl_estimators", "fv_rtg", {}),
        ("divergences", "jsd_beta", {"beta": 0.4}),
        ("objectives", "dpo", {"beta": 0.5}),
        ("objectives", "tdpo1", {"beta": 0.5}),
    ],
)
def test_tiny_transformer_parity(reg, name, params):
    """The next-token tables of a tiny GPT-2 (float64) are enumerated for klsim; gradients w.r.t. the table."""
    from klsim_llm.testing import model_logit_table, tiny_transformer

    X, V, L = 2, 3, 2
    model = tiny_transformer(V, X, L, seed=3)
    ref_model = tiny_transformer(V, X, L, seed=4)
    z = model_logit_table(model, X, V, L)
    with torch.no_grad():
        zr = model_logit_table(ref_model, X, V, L)
    base = make_problem(
        n_prompts=X,
        n_vocab=V,
        max_len=L,
        group=2 if reg == "objectives" else 1,
        sampler="ref" if reg == "objectives" else "policy",
        seed=5,
    )
    policy = SequenceLM(z.detach().numpy(), L)
    ref = SequenceLM(zr.numpy(), L)
    from klsim.sequence import single_samples, tuple_samples

    enum = enumerate_sequences(V, L)
    samples = tuple_samples(ref, enum, 2) if reg == "objectives" else single_samples(policy, enum)
    if reg == "objectives":  # a subset of the pairs, with their exact weights (any positive weights work)
        keep = np.arange(0, len(samples.weight), 5)
        samples = type(samples)(samples.prompt[keep], samples.seq[keep], samples.weight[keep])
    pr = Problem(policy, ref, None, enum, samples, base.rewards, base.preference, base.anchor)
    entry = REGISTRIES[reg][name]
    v_t, g_t = torch_expectation(entry, pr, params, z=z)
    v_k, g_k = klsim_expectation(entry, pr, params)
    assert abs(v_t - v_k) <= 1e-10 * max(1.0, abs(v_k))
    assert _rel(g_t, g_k) <= 1e-10
    # and the gradient reaches the transformer's parameters
    (gw,) = torch.autograd.grad((torch.as_tensor(g_k) * z).sum(), model.transformer.wte.weight)
    assert torch.isfinite(gw).all() and gw.abs().max() > 0


ALL_ENTRIES = [(reg, name) for reg, r in REGISTRIES.items() if reg != "advantages" for name in r]


@pytest.mark.parametrize("i", range(24))
def test_random_structures(i):
    """24 random tabular LMs (V ∈ {2,3,4}, L ≤ 3, ± EOS, random masks via EOS, on/off-policy), each checked on
    a rotating slice of the registry with that entry's first parameter set (spec §9 claim 1)."""
    rng = np.random.default_rng(1000 + i)
    V = int(rng.integers(2, 5))
    L = int(rng.integers(1, 4)) if V < 4 else int(rng.integers(1, 3))
    eos = int(rng.integers(0, V)) if (rng.random() < 0.5 and L > 1) else None
    for reg, name in ALL_ENTRIES[i::24]:
        entry = REGISTRIES[reg][name]
        pk, params, on_policy = parity_case_for(reg, name)[0]
        pk = dict(pk, n_vocab=V, max_len=L, eos=eos, n_prompts=int(rng.integers(1, 3)), seed=100 + i)
        pr = make_problem(**pk)
        v_t, g_t = torch_expectation(entry, pr, params, on_policy=on_policy)
        v_k, g_k = klsim_expectation(entry, pr, params)
        assert abs(v_t - v_k) <= 1e-10 * max(1.0, abs(v_k)), (reg, name, V, L, eos)
        assert _rel(g_t, g_k) <= 1e-10, (reg, name, V, L, eos)
