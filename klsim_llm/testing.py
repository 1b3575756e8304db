"""Test fixtures with the production signatures: :class:`TabularLM` (an ``nn.Module`` with the
``AutoModelForCausalLM`` forward signature that looks up a logit table), a tiny ``transformers`` model built
from a config, its enumerated next-token table, and an in-test WordLevel tokenizer (no model hub).

Token layout: ``input_ids[:, 0]`` is the prompt id x ∈ [0, X); ``input_ids[:, 1:]`` are response tokens in
[0, V).  ``logits[:, i]`` are the next-token logits after reading ``input_ids[:, :i+1]``.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from klsim.sequence import n_prefixes

__all__ = [
    "TabularLM",
    "prefix_index",
    "tiny_transformer",
    "model_logit_table",
    "build_tokenizer",
    "response_logprobs",
]


def prefix_index(tokens: torch.Tensor, n_vocab: int) -> torch.Tensor:
    """Prefix index (length-then-base-V order, as :func:`klsim.sequence.enumerate_sequences`) of
    ``tokens[:, :t]`` for every t = 0..T−1, shape (B, T)."""
    B, T = tokens.shape
    out = torch.zeros((B, T), dtype=torch.long, device=tokens.device)
    code = torch.zeros(B, dtype=torch.long, device=tokens.device)
    offset = 0
    for t in range(T):
        out[:, t] = offset + code
        code = code * n_vocab + tokens[:, t].long()
        offset += n_vocab**t
    return out


class TabularLM(nn.Module):
    """An enumerable LM whose parameters are the logit table ``z[x, h, v]`` (float64 by default).

    ``forward(input_ids, attention_mask=None, **kw)`` returns an object with ``.logits`` (B, T, V); positions
    whose prefix is longer than ``max_len − 1`` get zero logits (never used).
    """

    def __init__(self, logits: torch.Tensor, max_len: int):
        super().__init__()
        if logits.dim() != 3:
            raise ValueError(f"logits: expected shape (X, H, V), got {tuple(logits.shape)}")
        X, H, V = logits.shape
        if H != n_prefixes(V, max_len):
            raise ValueError(f"logits: axis 1 must have {n_prefixes(V, max_len)} prefixes, got {H}")
        self.table = nn.Parameter(logits.clone())
        self.max_len = int(max_len)
        self.n_vocab = int(V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        x = input_ids[:, 0].long()
        resp = input_ids[:, 1:]
        B, T1 = input_ids.shape
        L = self.max_len
        # idx[:, i] is the prefix of resp[:, :i] (i = 0..T1−1)
        idx = prefix_index(
            torch.cat([resp, torch.zeros((B, 1), dtype=resp.dtype)], 1).clamp(0, self.n_vocab - 1),
            self.n_vocab,
        )[:, :T1]
        valid = torch.arange(T1)[None, :] < L
        logits = self.table[x[:, None], torch.where(valid, idx, torch.zeros_like(idx))]
        logits = torch.where(valid[..., None], logits, torch.zeros((), dtype=logits.dtype))
        return SimpleNamespace(logits=logits)


def response_logprobs(
    model: nn.Module, prompts: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The production path: forward ``[x, y]``, shift, selective log-softmax z_y − lse(z) (upcast).

    Returns (token log-probs (B, T), full log-prob vectors (B, T, V)); only the first V logits are used.
    """
    ids = torch.cat([prompts[:, None].long(), tokens.long()], 1)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1]
    V = int(model.n_vocab)
    logits = logits[..., :V].to(torch.promote_types(logits.dtype, torch.float32))
    logq = logits - torch.logsumexp(logits, -1, keepdim=True)
    lp = torch.gather(logq, -1, tokens.long()[..., None])[..., 0]
    return torch.where(mask.bool(), lp, torch.zeros((), dtype=lp.dtype)), logq


def tiny_transformer(n_vocab: int, n_prompts: int, max_len: int, *, seed: int = 0, hidden: int = 8):
    """A 1-layer GPT-2 from ``AutoModelForCausalLM.from_config`` (float64, no hub access); token ids:
    responses 0..V−1, prompts V..V+X−1.  ``model.n_vocab = V`` marks the response vocabulary."""
    from transformers import AutoModelForCausalLM, GPT2Config

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=n_vocab + n_prompts,
        n_positions=max_len + 2,
        n_embd=max(hidden, n_vocab),
        n_layer=1,
        n_head=1,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = AutoModelForCausalLM.from_config(cfg).to(torch.float64)
    model.eval()
    model.n_vocab = n_vocab
    model.prompt_offset = n_vocab
    return model


def model_logit_table(model: nn.Module, n_prompts: int, n_vocab: int, max_len: int) -> torch.Tensor:
    """Enumerate the next-token logits of ``model`` at every (prompt, prefix): a (X, H, V) table,
    differentiable w.r.t. the model parameters (klsim then treats it as a :class:`klsim.sequence.SequenceLM`)."""
    off = getattr(model, "prompt_offset", 0)
    rows = []
    import itertools

    for x in range(n_prompts):
        for k in range(max_len):
            prefixes = list(itertools.product(range(n_vocab), repeat=k))
            ids = torch.tensor([[x + off, *p] for p in prefixes], dtype=torch.long)
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1, :n_vocab]
            rows.append(out)
    H = n_prefixes(n_vocab, max_len)
    return torch.cat(rows, 0).reshape(n_prompts, H, n_vocab)


def build_tokenizer(words: list[str]):
    """A ``PreTrainedTokenizerFast`` over a WordLevel model built in-test (ids in the order of ``words``,
    plus ``[UNK]``, ``[PAD]``, ``[EOS]``)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(words)}
    for special in ("[UNK]", "[PAD]", "[EOS]"):
        vocab.setdefault(special, len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
