"""Chunked log-probs (= unchunked autograd, spec §9 claim 7 on CPU) and keyed rollouts (temperature recorded,
samples independent of the batch split, frequencies match the softmax)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from klsim_llm.logprobs import (  # noqa: E402
    LogProbModule,
    auto_row_chunk,
    gather_logprobs,
    token_logprobs,
)
from klsim_llm.rollout import generate, left_pad, sample_seeds  # noqa: E402

pytestmark = [pytest.mark.llm, pytest.mark.usefixtures("one_torch_thread")]


def _model(tie: bool = False):
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(
        vocab_size=7,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float64).eval()


def _reference(model, ids, mask, start, temperature=1.0):
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    z = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, start - 1 : -1] / temperature
    lp = torch.log_softmax(z, -1)
    return lp.gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1), -(lp.exp() * lp).sum(-1)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 5, 0, 1000])
@pytest.mark.parametrize("ckpt", [True, False])
def test_chunked_equals_unchunked(tie, chunk, ckpt):
    model = _model(tie)
    ids = torch.tensor([[0, 3, 4, 1, 2, 6], [5, 5, 2, 0, 1, 3], [6, 1, 0, 0, 2, 4]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    w = torch.linspace(-1, 1, 9, dtype=torch.float64).reshape(3, 3)
    out = LogProbModule(model)(ids, mask, 3, temperature=0.7, row_chunk=chunk, checkpoint=ckpt)
    (out[0] * w).sum().backward()
    g1 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lp, ent = _reference(model, ids, mask, 3, temperature=0.7)
    (lp * w).sum().backward()
    g2 = [p.grad.clone() for p in model.parameters()]
    torch.testing.assert_close(out[0], lp, rtol=0, atol=1e-12)
    torch.testing.assert_close(out[1], ent.detach(), rtol=0, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_auto_row_chunk_rule():
    # spec §3: N = 16k, V = 32k, H = 4096 -> 2048
    assert auto_row_chunk(16384, 32768, 4096) == 2048
    assert auto_row_chunk(16384, 151936, 4096, min_elements=1) == 512  # ceil(V/H) = 38: ceil(16384/38) = 432
    assert auto_row_chunk(5, 7, 8) == 8
    # small batches: at least ~4M logits per chunk, never more than next_pow2(N)
    assert auto_row_chunk(128, 8192, 256) == 128
    assert auto_row_chunk(4096, 50257, 768) == 64


def test_fallback_path_for_models_without_decoder():
    from klsim.sequence import n_prefixes
    from klsim_llm.testing import TabularLM

    tab = TabularLM(torch.randn(1, n_prefixes(3, 3), 3, dtype=torch.float64), 3)
    ids = torch.tensor([[0, 1, 2, 0], [0, 2, 2, 1]])
    out = token_logprobs(tab, ids, torch.ones_like(ids), 1, row_chunk=2)
    lp, _ = _reference(tab, ids, torch.ones_like(ids), 1)
    torch.testing.assert_close(out.logp, lp, rtol=0, atol=1e-12)


def test_keyed_sampling_is_independent_of_the_batch_split():
    from klsim_llm.rollout import _keeps_last_logits

    model = _model()
    assert _keeps_last_logits(model) == {"logits_to_keep": 1}  # lm_head on the last position only
    prompts = [[1, 2], [3], [4, 5, 6], [2]] * 2
    pid, pm = left_pad(prompts, 0)
    seeds = sample_seeds(0, 3, range(8))
    full = generate(model, pid, pm, seeds, max_new_tokens=4, temperature=0.8, eos_token_id=6, pad_token_id=0)
    half = generate(
        model, pid[4:], pm[4:], seeds[4:], max_new_tokens=4, temperature=0.8, eos_token_id=6, pad_token_id=0
    )
    assert full.temperature == 0.8
    r_full, r_half = full.response_ids[4:], half.response_ids
    T = min(r_full.shape[1], r_half.shape[1])
    assert torch.equal(
        r_full[:, :T] * full.response_mask[4:, :T].long(), r_half[:, :T] * half.response_mask[:, :T].long()
    )
    # sampler log-probs are the tempered log-softmax at the sampled tokens; masks stop after EOS
    lp, _ = _reference(model, full.input_ids, full.attention_mask, full.prompt_len, temperature=0.8)
    m = full.response_mask
    torch.testing.assert_close(full.sampler_logp * m, lp.detach() * m, rtol=0, atol=1e-12)
    for row, mm in zip(full.response_ids, m):
        hits = (row == 6).nonzero()
        if len(hits):
            assert mm[: hits[0, 0] + 1].all() and not mm[hits[0, 0] + 1 :].any()


def test_sampling_frequencies_match_softmax():
    from scipy.stats import chisquare

    model = _model()
    n = 4000
    pid, pm = left_pad([[2, 3]] * n, 0)
    ro = generate(model, pid, pm, sample_seeds(5, 0, range(n)), max_new_tokens=1, temperature=1.5)
    with torch.no_grad():
        p = torch.softmax(model(input_ids=pid[:1]).logits[0, -1] / 1.5, -1).numpy()
    counts = np.bincount(ro.response_ids[:, 0].numpy(), minlength=7)
    assert chisquare(counts, n * p).pvalue > 1e-3


# --- gather_logprobs: log softmax(z)[y] with a chunked forward and a one-buffer chunked backward -----------------


def _gather_ref(z, y):
    return torch.log_softmax(z, -1).gather(-1, y[..., None])[..., 0]


@pytest.mark.parametrize("chunk_rows", [None, 1, 3, 7, 64])
def test_gather_logprobs_equals_log_softmax_gather_float64(chunk_rows):
    g = torch.Generator().manual_seed(3)
    z = (3.0 * torch.randn(2, 10, 37, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, 37, (2, 10), generator=g)
    w = torch.randn(2, 10, generator=g, dtype=torch.float64)  # a non-uniform upstream gradient
    out = gather_logprobs(z, y, chunk_rows=chunk_rows)  # 20 rows: 3 and 7 do not divide them
    assert out.shape == (2, 10) and out.dtype == torch.float64
    (gz,) = torch.autograd.grad((out * w).sum(), z)
    ref = _gather_ref(z, y)
    (gr,) = torch.autograd.grad((ref * w).sum(), z)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(gz, gr, rtol=0, atol=1e-12)
    # closed form of the gradient: w·(onehot(y) − softmax(z))
    closed = w[..., None] * (torch.nn.functional.one_hot(y, 37).double() - torch.softmax(z.detach(), -1))
    torch.testing.assert_close(gz, closed, rtol=0, atol=1e-12)


def test_gather_logprobs_gradcheck_tiny():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 4, 2])
    assert torch.autograd.gradcheck(lambda t: gather_logprobs(t, y, chunk_rows=2), (z,))


def test_gather_logprobs_extreme_logits_are_finite():
    z = torch.tensor([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4]], dtype=torch.float64)
    z.requires_grad_(True)
    y = torch.tensor([1, 2])
    out = gather_logprobs(z, y, chunk_rows=1)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    # closed forms: row 0 has two maxima 1e4, so log p(y=1) = −2e4 − log 2; row 1 is uniform over 4
    expect = torch.tensor([-2e4 - np.log(2.0), -np.log(4.0)], dtype=torch.float64)
    torch.testing.assert_close(out.detach(), expect, rtol=0, atol=1e-9)
    torch.testing.assert_close(
        z.grad, torch.tensor([[-0.5, 1.0, 0.0, -0.5], [-0.25, -0.25, 0.75, -0.25]], dtype=torch.float64)
    )
    zf = torch.tensor([[1e4, -1e4, 3.0], [-1e4, 1e4, 1e4]], dtype=torch.float32, requires_grad=True)
    of = gather_logprobs(zf, torch.tensor([0, 0]))
    of.sum().backward()
    assert torch.isfinite(of).all() and torch.isfinite(zf.grad).all()
    torch.testing.assert_close(of, _gather_ref(zf.detach(), torch.tensor([0, 0])))


def test_gather_logprobs_bfloat16_upcasts_per_chunk():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(6, 11, generator=g).to(torch.bfloat16).requires_grad_(True)
    y = torch.randint(0, 11, (6,), generator=g)
    out = gather_logprobs(z, y, chunk_rows=4)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _gather_ref(z.detach().float(), y), rtol=0, atol=1e-6)
    out.sum().backward()
    assert z.grad.dtype == torch.bfloat16
    closed = torch.nn.functional.one_hot(y, 11).float() - torch.softmax(z.detach().float(), -1)
    torch.testing.assert_close(z.grad.float(), closed.to(torch.bfloat16).float(), rtol=0, atol=0)


def test_gather_logprobs_rejects_bad_input():
    z = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match="tokens"):
        gather_logprobs(z, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens"):
        gather_logprobs(z, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="entry 4"):
        gather_logprobs(z, torch.tensor([[0, 1, 2], [3, 5, 0]]))
    with pytest.raises(ValueError, match="chunk_rows"):
        gather_logprobs(z, torch.zeros(2, 3, dtype=torch.long), chunk_rows=0)
