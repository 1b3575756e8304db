"""Chunked per-token log-probabilities and entropies of a causal LM (spec ``llm-bridge.md`` §3, §7).

The policy's decoder gives hidden states ``h`` (B, L, H); the response rows are pushed through the lm_head
in row chunks of ``C_r`` tokens, each chunk upcast to at least float32 before the log-softmax
(``z_y - logsumexp(z)``; bf16 logsumexp is unstable).  With ``checkpoint=True`` every chunk is wrapped in
``torch.utils.checkpoint`` so its logits are recomputed in backward: the (N, V) logits tensor is never
stored, peak temporaries are O(C_r·V).  Models without a decoder / linear lm_head (e.g. a tabular LM with
the ``AutoModelForCausalLM`` forward signature) fall back to ``model(...).logits`` with the same chunked
log-softmax.

:class:`LogProbModule` wraps a model so that the whole computation happens inside ``forward``; the trainer
wraps *that* in DDP / FSDP, so gradient synchronization sees every parameter use.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as _ckpt

__all__ = [
    "TokenLogProbs",
    "LogProbModule",
    "token_logprobs",
    "gather_logprobs",
    "auto_row_chunk",
    "position_ids_from_mask",
    "bf16_autocast",
]


def bf16_autocast(device_type: bool | str | None):
    """``torch.autocast(device_type, dtype=torch.bfloat16)``, or a null context.

    Parameters
    ----------
    device_type : str, bool or None
        ``"cuda"`` / ``"cpu"``: autocast on that device type; ``None`` / ``False``: no autocast;
        ``True``: ``"cuda"`` (the historical boolean flag).
    """
    if device_type is None or device_type is False:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device_type is True else str(device_type), dtype=torch.bfloat16)


@dataclass
class TokenLogProbs:
    """Per-token outputs on the response positions.

    Attributes
    ----------
    logp : Tensor (B, T)
        log π(y_t | x, y_<t) of the tokens in ``input_ids[:, start:]`` at the given temperature.
    entropy : Tensor (B, T)
        Full-vocabulary entropy of π(· | x, y_<t) (detached).
    logits : Tensor (B, T, V) or None
        Next-token logits / temperature, only when requested (full-vocabulary objectives).
    hidden : Tensor (B, T, H) or None
        Last hidden state at the position that predicts y_t (the state (x, y_<t)), only when requested
        (a value head reads it).
    """

    logp: torch.Tensor
    entropy: torch.Tensor
    logits: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions ``cumsum(mask) - 1`` clamped at 0 (left padding), shape (B, L) int64."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def auto_row_chunk(n_rows: int, vocab: int, hidden: int, *, min_elements: int = 1 << 22) -> int:
    """Row chunk ``next_pow2(ceil(N / ceil(V / H)))`` so chunk logits are about the size of ``h`` (spec §3),
    raised to at least ``floor_pow2(min_elements / V)`` rows (chunk logits of ~4M entries, 16 MB in fp32)
    so that small batches are not cut into many tiny matmuls; never more than ``next_pow2(N)``."""
    per = max(1, math.ceil(n_rows / max(1, math.ceil(vocab / max(1, hidden)))))
    rule = 1 << (per - 1).bit_length()
    floor_rows = 1 << max(0, (max(1, min_elements // max(1, vocab))).bit_length() - 1)
    return max(rule, min(floor_rows, 1 << (max(1, n_rows) - 1).bit_length()))


def _chunk_stats(z: torch.Tensor, y: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp of y, entropy) of rows of logits ``z`` (n, V); computed in >= float32.

    Under autocast the logits may arrive in bf16: the chunk is upcast first and autocast is switched off
    for the log-softmax, so the logsumexp, the gather and the entropy all run in >= float32.
    """
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    with torch.autocast(z.device.type, enabled=False):
        if temperature != 1.0:
            z = z / temperature
        lse = torch.logsumexp(z, dim=-1)
        logp = z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
        with torch.no_grad():
            lp = z - lse.unsqueeze(-1)
            ent = -(lp.exp() * lp).sum(-1)
    return logp, ent


def _linear_chunk(
    h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, y: torch.Tensor, temperature: float
):
    return _chunk_stats(torch.nn.functional.linear(h, w, b), y, temperature)


def _decoder_and_head(model: nn.Module):
    """(decoder, lm_head Linear) when the fused path applies, else None."""
    get_dec = getattr(model, "get_decoder", None)
    get_head = getattr(model, "get_output_embeddings", None)
    if get_dec is None or get_head is None:
        return None
    cfg = getattr(model, "config", None)
    # architectures that post-process logits (soft-capping, scaling) take the plain path
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if cfg is not None and getattr(cfg, attr, None) not in (None, 1.0):
            return None
    try:
        dec, head = get_dec(), get_head()
    except (AttributeError, NotImplementedError, TypeError):
        return None
    if dec is None or dec is model or not isinstance(head, nn.Linear):
        return None
    return dec, head


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    start: int,
    *,
    temperature: float = 1.0,
    row_chunk: int = 0,
    checkpoint: bool = True,
    return_logits: bool = False,
    return_hidden: bool = False,
) -> TokenLogProbs:
    """Log-probs of ``input_ids[:, start:]`` under ``model`` (chunked over rows).

    Parameters
    ----------
    model : AutoModelForCausalLM-like
    input_ids, attention_mask : Tensor (B, L)
        Left-padded prompt followed by the response; ``start`` is the first response column.
    temperature : float
        Logits are divided by it (``kl_temperature='sampling'``); 1 gives the untempered policy.
    row_chunk : int
        Rows per lm_head chunk; 0 picks :func:`auto_row_chunk`.
    checkpoint : bool
        Recompute chunk logits in backward (memory flat in N).
    return_logits : bool
        Also return the (B, T, V) tempered logits (needed by full-vocabulary objectives only).
    return_hidden : bool
        Also return the (B, T, H) last hidden states of the positions predicting the response tokens.

    Returns
    -------
    TokenLogProbs
        ``logp`` (B, T) with T = L - start, ``entropy`` (B, T), optional ``logits`` and ``hidden``.
    """
    if not 1 <= start < input_ids.shape[1]:
        raise ValueError(f"start must lie in [1, {input_ids.shape[1] - 1}], got {start}")
    B, L = input_ids.shape
    T = L - start
    pos = position_ids_from_mask(attention_mask)
    y = input_ids[:, start:].reshape(-1)
    parts = _decoder_and_head(model)
    if parts is not None:
        dec, head = parts
        out = dec(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=False)
        h = out[0][:, start - 1 : L - 1].reshape(B * T, -1)
        V, H = head.weight.shape
        rc = row_chunk or auto_row_chunk(B * T, V, H)
        lps, ents = [], []
        for i in range(0, B * T, rc):
            hc, yc = h[i : i + rc], y[i : i + rc]
            if checkpoint and torch.is_grad_enabled() and h.requires_grad:
                lp, en = _ckpt(
                    _linear_chunk, hc, head.weight, head.bias, yc, temperature, use_reentrant=False
                )
            else:
                lp, en = _linear_chunk(hc, head.weight, head.bias, yc, temperature)
            lps.append(lp)
            ents.append(en)
        logits = None
        if return_logits:
            logits = head(h).reshape(B, T, V)
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
        hidden = h.reshape(B, T, -1) if return_hidden else None
    else:
        kw = {"output_hidden_states": True} if return_hidden else {}
        mo = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, **kw)
        hidden = mo.hidden_states[-1][:, start - 1 : L - 1] if return_hidden else None
        z = mo.logits
        z = z[:, start - 1 : L - 1]
        V = z.shape[-1]
        zf = z.reshape(B * T, V)
        rc = row_chunk or B * T
        lps, ents = [], []
        for i in range(0, B * T, rc):
            lp, en = _chunk_stats(zf[i : i + rc], y[i : i + rc], temperature)
            lps.append(lp)
            ents.append(en)
        logits = z.to(torch.promote_types(z.dtype, torch.float32)) / temperature if return_logits else None
    return TokenLogProbs(torch.cat(lps).reshape(B, T), torch.cat(ents).reshape(B, T).detach(), logits, hidden)


class _GatherLogProbs(torch.autograd.Function):
    """log softmax(z)[y] on rows of ``z`` (N, V); forward keeps only the per-row logsumexp, backward writes
    g·(onehot(y) − softmax(z)) into one gradient buffer, ``chunk`` rows at a time."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
        ct = torch.promote_types(z.dtype, torch.float32)
        n = z.shape[0]
        lse = torch.empty(n, dtype=ct, device=z.device)
        for r0 in range(0, n, chunk):
            lse[r0 : r0 + chunk] = torch.logsumexp(z[r0 : r0 + chunk].to(ct), dim=-1)
        out = z.gather(-1, y[:, None])[:, 0].to(ct) - lse
        ctx.save_for_backward(z, y, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        z, y, lse = ctx.saved_tensors
        chunk = ctx.chunk
        grad = torch.empty_like(z)
        same = lse.dtype == z.dtype
        for r0 in range(0, z.shape[0], chunk):
            sl = slice(r0, r0 + chunk)
            gc = grad[sl] if same else torch.empty(grad[sl].shape, dtype=lse.dtype, device=z.device)
            torch.sub(z[sl], lse[sl, None], out=gc)  # (c, V) log-softmax, in place in the buffer
            gc.exp_().mul_(-g[sl, None])
            gc.scatter_add_(-1, y[sl, None], g[sl, None].to(gc.dtype))
            if not same:
                grad[sl].copy_(gc)
        return grad, None, None


def gather_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, *, chunk_rows: int | None = None
) -> torch.Tensor:
    r"""Log-probabilities of the given tokens under softmax(logits), memory-lean in backward.

    .. math:: \ell_{b,t} = z_{b,t,y_{b,t}} - \log \sum_{v} e^{z_{b,t,v}},
       \qquad \frac{\partial \ell_{b,t}}{\partial z_{b,t,v}} = \mathbb 1[v = y_{b,t}] - \mathrm{softmax}(z_{b,t})_v

    (the sampled-token log-probability of a causal LM; spec ``llm-bridge.md`` §3).  Equal to
    ``torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]``, but forward runs a row-chunked
    logsumexp and saves only the per-row logsumexp (not the (…, V) softmax), and backward writes
    g·(onehot(y) − softmax(z)) chunk by chunk into a single buffer of the logits' shape, so the peak extra
    memory is about the gradient itself.  Computed in at least float32 (bf16/fp16 logits are upcast per
    chunk; the gradient has the logits' dtype).  Masks (padding) are applied by the caller.  Not twice
    differentiable.

    Parameters
    ----------
    logits : Tensor (..., V)
        Unnormalized next-token scores, e.g. (B, T, V).
    tokens : Tensor (...) integer
        Token ids in [0, V), the shape of ``logits`` without its last axis, e.g. (B, T).
    chunk_rows : int or None
        Rows (positions) per chunk; None picks ``max(1, floor_pow2(2**22 / V))`` (chunks of ~4M entries).

    Returns
    -------
    Tensor (...)
        log softmax(logits)[tokens], dtype ``promote_types(logits.dtype, float32)``.

    References
    ----------
    Spec ``llm-bridge.md`` §3 (chunked log-probs); the sequence log-likelihood log π(y|x) = Σ_t ℓ_t entering
    the DPO loss, Rafailov et al. (2023), "Direct Preference Optimization", Eq. (7).
    """
    if logits.dim() < 1 or tuple(tokens.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"tokens: shape {tuple(tokens.shape)} must equal logits.shape[:-1] = {tuple(logits.shape[:-1])}"
        )
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise ValueError(f"tokens: must be an integer tensor, got {tokens.dtype}")
    V = logits.shape[-1]
    if V < 1:
        raise ValueError("logits: the vocabulary axis is empty")
    y = tokens.reshape(-1).long()
    bad = ((y < 0) | (y >= V)).nonzero()
    if len(bad):
        i = int(bad[0, 0])
        raise ValueError(f"tokens: entry {i} (flat index) is {int(y[i])}, outside [0, {V})")
    if chunk_rows is None:
        chunk_rows = 1 << max(0, max(1, (1 << 22) // V).bit_length() - 1)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows: must be a positive int, got {chunk_rows!r}")
    z = logits.reshape(-1, V)
    return _GatherLogProbs.apply(z, y, chunk_rows).reshape(tokens.shape)


class LogProbModule(nn.Module):
    """``forward(input_ids, attention_mask, start, ...) -> (logp, entropy, logits)`` around a causal LM.

    Wrapping this module (not the bare LM) in DDP/FSDP keeps the lm_head chunks inside ``forward``.
    With a ``value_head`` (e.g. ``nn.Linear(hidden, 1)``, the PPO critic) ``forward`` returns a fourth
    tensor, the values V_t = head(h_t) (B, T) on the hidden state of the state (x, y_<t), computed outside
    autocast in the head's dtype; the head is a submodule, so DDP/FSDP synchronize it with the policy.
    """

    def __init__(self, model: nn.Module, value_head: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.value_head = value_head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        start: int,
        temperature: float = 1.0,
        row_chunk: int = 0,
        checkpoint: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        out = token_logprobs(
            self.model,
            input_ids,
            attention_mask,
            start,
            temperature=temperature,
            row_chunk=row_chunk,
            checkpoint=checkpoint,
            return_logits=return_logits,
            return_hidden=self.value_head is not None,
        )
        if self.value_head is None:
            return out.logp, out.entropy, out.logits
        h = out.hidden
        with torch.autocast(h.device.type, enabled=False):
            values = self.value_head(h.to(self.value_head.weight.dtype)).squeeze(-1)
        return out.logp, out.entropy, out.logits, values
