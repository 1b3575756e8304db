"""Reference strategies (spec §6, §9 claim 10): weight-space rules against their formulas, strategy updates,
the PEFT adapter-disabled reference against the frozen base, and the REFERENCES registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from klsim_llm import references as R  # noqa: E402
from klsim_llm.config import ReferenceConfig  # noqa: E402

pytestmark = [pytest.mark.llm, pytest.mark.usefixtures("one_torch_thread")]


def _sd(seed: int, shapes=((3, 4), (5,))) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {f"w{i}": torch.randn(*s, generator=g, dtype=torch.float64) for i, s in enumerate(shapes)}


def _lin(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3).double()


def _tiny_llama(seed: int | None):
    """A 1-layer float64 Llama (vocab 6, hidden 8) from a config; ``seed=None`` keeps the current RNG state."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(
        vocab_size=6,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8,
    )
    if seed is not None:
        torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float64)


def test_ema_interpolate_liti_soup_formulas():
    a, b, c = _sd(0), _sd(1), _sd(2)
    mu = 0.3
    e = R.ema_update({k: v.clone() for k, v in a.items()}, b, mu)
    for k in a:
        np.testing.assert_allclose(
            e[k].numpy(), (1 - mu) * a[k].numpy() + mu * b[k].numpy(), rtol=0, atol=1e-12
        )
    t = R.interpolate({k: v.clone() for k, v in a.items()}, b, 0.25)
    np.testing.assert_allclose(t["w0"].numpy(), 0.25 * b["w0"].numpy() + 0.75 * a["w0"].numpy(), atol=1e-12)
    li = R.liti(a, c, 0.4)
    np.testing.assert_allclose(li["w1"].numpy(), 0.6 * a["w1"].numpy() + 0.4 * c["w1"].numpy(), atol=1e-12)
    s = R.soup([a, b, c])
    np.testing.assert_allclose(s["w0"].numpy(), (a["w0"] + b["w0"] + c["w0"]).numpy() / 3, atol=1e-12)
    with pytest.raises(ValueError, match="different keys"):
        R.soup([a, {"w0": a["w0"]}])


def test_slerp_task_vectors_closed_form():
    init = {"w": torch.zeros(2, dtype=torch.float64)}
    t1 = {"w": torch.tensor([1.0, 0.0], dtype=torch.float64)}
    t2 = {"w": torch.tensor([0.0, 2.0], dtype=torch.float64)}
    lam = 0.3
    out = R.slerp_task_vectors(init, t1, t2, lam)["w"]
    # Ω = π/2: [sin((1−λ)π/2)·δ1 + sin(λπ/2)·δ2] / 1
    want = np.array([math.sin((1 - lam) * math.pi / 2), 2 * math.sin(lam * math.pi / 2)])
    np.testing.assert_allclose(out.numpy(), want, atol=1e-12)
    # endpoints and the parallel (Ω = 0) fallback
    np.testing.assert_allclose(R.slerp_task_vectors(init, t1, t2, 0.0)["w"].numpy(), [1.0, 0.0], atol=1e-12)
    par = R.slerp_task_vectors(init, t1, {"w": 3 * t1["w"]}, 0.5)["w"]
    np.testing.assert_allclose(par.numpy(), [2.0, 0.0], atol=1e-12)


def test_strategy_updates_follow_their_rules():
    pol = _lin(0)
    init = {k: v.clone() for k, v in pol.state_dict().items()}
    # EMA anchor [WARP]
    ema = R.EMAAnchor(ReferenceConfig(mode="ema", ema_rate=0.25), pol)
    with torch.no_grad():
        pol.weight.add_(1.0)
    ema.after_step(pol, 1)
    np.testing.assert_allclose(ema.model.weight.numpy(), init["weight"].numpy() + 0.25, atol=1e-12)
    # TR-DPO sync every 2 steps
    tr = R.TRSync(ReferenceConfig(mode="tr_sync", tr_alpha=0.5, update_every=2), _lin(0))
    assert tr.after_step(pol, 1) == {}
    assert tr.after_step(pol, 2) == {"ref_updated": 1}
    np.testing.assert_allclose(tr.model.weight.numpy(), init["weight"].numpy() + 0.5, atol=1e-12)
    # Elastic Reset [ER]: every n steps θ <- θ_ema, then θ_ema <- θ_init; the KL reference stays θ_init
    p2 = _lin(0)
    er = R.ElasticReset(ReferenceConfig(mode="elastic_reset", ema_rate=0.5, update_every=2), p2)
    with torch.no_grad():
        p2.weight.add_(2.0)
    er.after_step(p2, 1)  # ema = init + 1
    with torch.no_grad():
        p2.weight.add_(2.0)  # θ = init + 4
    assert er.after_step(p2, 2) == {"elastic_reset": 1}  # ema = 0.5(init+1) + 0.5(init+4) = init + 2.5
    np.testing.assert_allclose(p2.weight.detach().numpy(), init["weight"].numpy() + 2.5, atol=1e-12)
    np.testing.assert_allclose(er.ema["weight"].numpy(), init["weight"].numpy(), atol=1e-12)
    np.testing.assert_allclose(er.model.weight.numpy(), init["weight"].numpy(), atol=1e-12)
    # ProRL hard reset: reference <- policy snapshot, optimizer re-initialized
    hr = R.HardReset(ReferenceConfig(mode="hard_reset", update_every=0, hard_reset_kl=0.5), _lin(0))
    assert hr.after_step(pol, 1, kl=0.1) == {}
    assert hr.after_step(pol, 2, kl=0.9) == {"hard_reset": 1, "reset_optimizer": True}
    assert torch.equal(hr.model.weight, pol.weight.detach())


def test_soup_reference_averages_saved_checkpoints(tmp_path):
    paths, sds = [], []
    for seed in (1, 2):
        m = _tiny_llama(seed)
        m.save_pretrained(tmp_path / f"m{seed}")
        paths.append(str(tmp_path / f"m{seed}"))
        sds.append(m.state_dict())
    pol = _tiny_llama(None)  # continues the RNG stream after the saved checkpoints
    ref = R.SoupReference(ReferenceConfig(mode="soup", soup_checkpoints=paths), pol)
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(v, (sds[0][k] + sds[1][k]) / 2, rtol=0, atol=1e-12)


def test_adapter_disabled_reference_equals_frozen_base():
    from peft import LoraConfig, get_peft_model

    base = _tiny_llama(0).eval()
    frozen = R.FrozenCopy(ReferenceConfig(), base)
    pol = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # move the adapter away from its zero init
        for n, p in pol.named_parameters():
            if "lora_" in n:
                p.add_(0.3 * torch.randn_like(p))
    ad = R.AdapterDisabled(ReferenceConfig(mode="adapter_disabled"), pol)
    ids = torch.tensor([[1, 2, 3, 4], [0, 5, 2, 1]])
    m = torch.ones_like(ids)
    a = ad.logprobs(ids, m, 1, return_logits=True)
    b = frozen.logprobs(ids, m, 1, return_logits=True)
    torch.testing.assert_close(a.logp, b.logp, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=1e-12)
    from klsim_llm.logprobs import token_logprobs

    with torch.no_grad():
        p = token_logprobs(pol, ids, m, 1).logp
    assert float((p - a.logp).abs().max()) > 1e-4  # the adapter is on outside the context


def test_references_registry_names_and_errors():
    from klsim_llm.config import REFERENCE_MODES

    assert set(R.REFERENCES) == set(REFERENCE_MODES)
    with pytest.raises(KeyError, match="Did you mean 'frozen_copy'"):
        R.make_reference(type("C", (), {"mode": "frozen_cpy"})(), _lin(0))
    pre = R.Precomputed(ReferenceConfig(mode="precomputed"), _lin(0))
    with pytest.raises(ValueError, match="no stored log-probs"):
        pre.logprobs(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2), 1, keys=[3])


def _peft_llama():
    from peft import LoraConfig, get_peft_model

    base = _tiny_llama(0).eval()
    return get_peft_model(base, LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj"]))


def _bump_lora(pol, scale):
    with torch.no_grad():
        for n, p in pol.named_parameters():
            if "lora_" in n:
                p.copy_(scale * torch.ones_like(p))


def test_ema_under_peft_factors_vs_merged_delta():
    """spec §6: an EMA of the LoRA factors (A, B) is not an EMA of BA; both spaces follow their formula."""
    pol = _peft_llama()
    w0 = pol.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight.detach().clone()
    _bump_lora(pol, 0.0)  # B = A = 0: the initial delta is 0
    merged = R.EMAAnchor(ReferenceConfig(mode="ema", ema_rate=0.5, ema_space="merged_delta"), pol)
    factors = R.EMAAnchor(ReferenceConfig(mode="ema", ema_rate=0.5, ema_space="factors"), pol)
    _bump_lora(pol, 0.5)  # B A = 0.5·0.5·r = 0.5 in every entry (scaling alpha/r = 1)
    merged.after_step(pol, 1)
    factors.after_step(pol, 1)
    delta = torch.full_like(w0, 0.5)
    got_m = merged.model.model.layers[0].self_attn.q_proj.weight
    torch.testing.assert_close(got_m, w0 + 0.5 * delta, rtol=0, atol=1e-12)  # EMA of BA
    got_f = _merged_weight(factors.model)
    torch.testing.assert_close(
        got_f, w0 + 0.25 * 0.25 * 2 * torch.ones_like(w0), rtol=0, atol=1e-12
    )  # (B/2)(A/2)


def _merged_weight(peft_model):
    import copy

    return copy.deepcopy(peft_model).merge_and_unload().model.layers[0].self_attn.q_proj.weight


def test_precomputed_variable_length_rows_match_frozen():
    model = _lin_lm()
    pre = R.Precomputed(ReferenceConfig(mode="precomputed"), model)
    frozen = R.FrozenCopy(ReferenceConfig(), model)
    seqs = {0: [1, 2, 3], 1: [4], 2: [2, 2]}
    batches = []
    for k, r in seqs.items():
        ids = torch.tensor([[0] + r])
        batches.append(([k], ids, torch.ones_like(ids), 1, torch.ones(1, len(r))))
    pre.precompute(batches)
    assert pre.model is None  # the model is dropped after the offline pass
    ids = torch.tensor([[0, 4, 0, 0], [0, 1, 2, 3], [0, 2, 2, 0]])
    rm = torch.tensor([[1, 0, 0], [1, 1, 1], [1, 1, 0]], dtype=torch.float64)
    got = pre.logprobs(ids, torch.ones_like(ids), 1, keys=[1, 0, 2]).logp
    want = frozen.logprobs(ids, torch.ones_like(ids), 1).logp
    torch.testing.assert_close(got * rm, want * rm, rtol=0, atol=1e-12)


def _lin_lm():
    return _tiny_llama(3).eval()
