"""Full-vocabulary divergences, chunked over rows and vocabulary with a running logsumexp (spec §3).

D(p‖q) with p = softmax(logits) (the policy, differentiable) and q = softmax(ref_logits) (no gradient):

=========  ==========================================================  =========================================
name       definition                                                  stable form
=========  ==========================================================  =========================================
rkl        Σ p(ℓp − ℓq)                                                direct
fkl        Σ q(ℓq − ℓp)                                                direct
jsd_beta   β·KL(q‖m) + (1−β)·KL(p‖m), m = βq + (1−β)p                  ℓm = logaddexp(log β + ℓq, log(1−β) + ℓp)
gkd_jsd    ``jsd_beta``; β = 0 ↦ FKL, β = 1 ↦ RKL (TRL GKD / Liger)    endpoints switch (scale jump, spec §3)
alpha      (1 − Σ p^{1−α} q^α)/(α(1−α)); α→0 RKL, α→1 FKL (f-DPO)       −expm1(lse((1−α)ℓp + αℓq))/(α(1−α))
chi2       Σ p²/q − 1                                                  expm1(lse(2ℓp − ℓq))
tsallis    (Σ p^κ q^{1−κ} − 1)/(κ−1) = κ·D_{1−κ}(p‖q)                  via ``alpha``
=========  ==========================================================  =========================================

The chunked path (:class:`_ChunkedDivergence`) never materializes a second (N, V) tensor in the forward:
pass 1 computes lse(z_p), lse(z_q) per row with a running logsumexp over vocabulary chunks; pass 2
accumulates the divergence (a sum or a running logsumexp) and the scalar Σ_v ∂D/∂ℓp_v.  The backward
recomputes each chunk and writes ∂D/∂z = G − p·ΣG (G = ∂D/∂ℓp) into the gradient, the only (N, V)
allocation.  Padded rows (mask False) are never computed.  Twin: ``klsim.sequence.divergence_twin``.
"""

from __future__ import annotations

import math

import torch

from klsim_llm._checks import check_finite_scalar

__all__ = ["DIVERGENCE_NAMES", "divergence_per_token", "divergence_per_token_naive", "divergence_loss"]

DIVERGENCE_NAMES = ("rkl", "fkl", "jsd_beta", "gkd_jsd", "alpha", "chi2", "tsallis")
_LSE_KINDS = ("alpha", "chi2")  # pass 2 accumulates a logsumexp


def _canonical(name: str, beta: float, alpha: float, tsallis_q: float) -> tuple[str, float, float]:
    """Map every name to (kind, parameter, scale) with kind ∈ {rkl, fkl, jsd, alpha, chi2}."""
    if name == "rkl":
        return "rkl", 0.0, 1.0
    if name == "fkl":
        return "fkl", 0.0, 1.0
    if name in ("jsd_beta", "gkd_jsd"):
        check_finite_scalar("beta", beta)
        if name == "gkd_jsd" and beta == 0.0:
            return "fkl", 0.0, 1.0
        if name == "gkd_jsd" and beta == 1.0:
            return "rkl", 0.0, 1.0
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta: must lie in (0, 1) for {name}, got {beta!r}")
        return "jsd", float(beta), 1.0
    if name == "alpha":
        a = check_finite_scalar("alpha", alpha)
        if a == 0.0:
            return "rkl", 0.0, 1.0
        if a == 1.0:
            return "fkl", 0.0, 1.0
        return "alpha", a, 1.0
    if name == "chi2":
        return "chi2", 0.0, 1.0
    if name == "tsallis":
        k = check_finite_scalar("tsallis_q", tsallis_q, positive=True)
        if k == 1.0:
            return "rkl", 0.0, 1.0
        return "alpha", 1.0 - k, k
    raise ValueError(f"name: unknown divergence {name!r}; valid: {', '.join(DIVERGENCE_NAMES)}")


def _elementwise(kind: str, a: float, lp: torch.Tensor, lq: torch.Tensor, need_grad: bool = True):
    """(contribution to the value accumulator, G = ∂D/∂ℓp) for one block; for the lse kinds the first
    element is the exponent whose logsumexp is accumulated."""
    if kind == "rkl":
        p = torch.exp(lp)
        d = lp - lq
        return p * d, (p * (d + 1.0) if need_grad else None)
    if kind == "fkl":
        q = torch.exp(lq)
        return q * (lq - lp), -q
    if kind == "jsd":
        lm = torch.logaddexp(math.log(a) + lq, math.log1p(-a) + lp)
        p, q = torch.exp(lp), torch.exp(lq)
        val = a * q * (lq - lm) + (1 - a) * p * (lp - lm)
        return val, (1 - a) * p * (lp - lm)
    if kind == "alpha":
        e = (1 - a) * lp + a * lq
        return e, -torch.exp(e) / a
    if kind == "chi2":
        e = 2 * lp - lq
        return e, 2 * torch.exp(e)
    raise AssertionError(kind)


def _lse_update(m: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Running logsumexp: fold block ``c`` (R, C) into (max m, scaled sum s), spec §3."""
    cm = c.max(-1).values
    m2 = torch.maximum(m, cm)
    m2s = torch.where(torch.isfinite(m2), m2, torch.zeros_like(m2))
    s = s * torch.exp(m - m2s) + torch.exp(c - m2s[:, None]).sum(-1)
    return m2, s


def _lse_finish(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    ms = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return ms + torch.log(s)


def _row_lse(z: torch.Tensor, cv: int, dtype) -> torch.Tensor:
    R, V = z.shape
    m = torch.full((R,), -math.inf, dtype=dtype, device=z.device)
    s = torch.zeros((R,), dtype=dtype, device=z.device)
    for v0 in range(0, V, cv):
        m, s = _lse_update(m, s, z[:, v0 : v0 + cv].to(dtype))
    return _lse_finish(m, s)


def _finish_value(kind: str, a: float, acc: torch.Tensor) -> torch.Tensor:
    if kind == "alpha":
        return -torch.expm1(acc) / (a * (1 - a))
    if kind == "chi2":
        return torch.expm1(acc)
    return acc


def _sum_G(kind: str, a: float, value: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """Σ_v G_v per row from the accumulated quantities (see module docstring)."""
    if kind == "rkl":
        return value + 1.0
    if kind == "fkl":
        return -torch.ones_like(value)
    if kind == "alpha":
        return -torch.exp(acc) / a
    if kind == "chi2":
        return 2 * torch.exp(acc)
    raise AssertionError(kind)  # jsd accumulates its own ΣG


def _block_logprobs(z: torch.Tensor, lse: torch.Tensor | None, dtype) -> torch.Tensor:
    zz = z.to(dtype)
    if lse is None:  # the whole vocabulary is in this block
        return torch.log_softmax(zz, -1)
    return zz - lse[:, None]


def _row_chunks(rows: torch.Tensor, cr: int) -> list[tuple[int, int, int]]:
    """Chunks ``(o, s, e)`` of at most ``cr`` selected rows that are contiguous in the flat input: rows s..e−1,
    stored at output offset o.  Selected rows come in runs (a right-padded response is one run per
    sequence), so every chunk is a view of the input: no gathered copy forward, no scatter backward.
    ``rows``: sorted unique int64 indices; only the run boundaries go to Python (one sync on GPU)."""
    if rows.numel() == 0:
        return []
    cut = torch.nonzero(rows[1:] - rows[:-1] != 1).reshape(-1) + 1
    starts = torch.cat([cut.new_zeros(1), cut])
    ends = torch.cat([cut, cut.new_full((1,), rows.numel())])
    first, last = rows[starts].tolist(), rows[ends - 1].tolist()
    chunks, o = [], 0
    for a, b in zip(first, last):
        for s in range(a, b + 1, cr):
            e = min(s + cr, b + 1)
            chunks.append((o, s, e))
            o += e - s
    return chunks


class _ChunkedDivergence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, zr, rows, kind, a, cr, cv, temp=1.0):
        dtype = torch.promote_types(z.dtype, torch.float32)
        n = rows.numel()
        V = z.shape[-1]
        one_block = cv >= V
        vals = torch.empty(n, dtype=dtype, device=z.device)
        lse_p = torch.empty(n, dtype=dtype, device=z.device)
        lse_q = torch.empty(n, dtype=dtype, device=z.device)
        sumG = torch.empty(n, dtype=dtype, device=z.device)
        chunks = _row_chunks(rows, cr)
        for o, s0, s1 in chunks:
            r0, r1 = o, o + (s1 - s0)
            zp, zq = _tempered(z[s0:s1], temp, dtype), _tempered(zr[s0:s1], temp, dtype)
            R = r1 - r0
            lp_ = torch.logsumexp(zp.to(dtype), -1) if one_block else _row_lse(zp, cv, dtype)
            lq_ = torch.logsumexp(zq.to(dtype), -1) if one_block else _row_lse(zq, cv, dtype)
            if kind in _LSE_KINDS:
                m = torch.full((R,), -math.inf, dtype=dtype, device=z.device)
                s = torch.zeros((R,), dtype=dtype, device=z.device)
            acc = torch.zeros((R,), dtype=dtype, device=z.device)
            accG = torch.zeros((R,), dtype=dtype, device=z.device)
            for v0 in range(0, V, cv):
                lp = zp[:, v0 : v0 + cv].to(dtype) - lp_[:, None]
                lq = zq[:, v0 : v0 + cv].to(dtype) - lq_[:, None]
                contrib, G = _elementwise(kind, a, lp, lq, need_grad=kind == "jsd")
                if kind in _LSE_KINDS:
                    m, s = _lse_update(m, s, contrib)
                else:
                    acc += contrib.sum(-1)
                if kind == "jsd":
                    accG += G.sum(-1)
            if kind in _LSE_KINDS:
                acc = _lse_finish(m, s)
            v = _finish_value(kind, a, acc)
            vals[r0:r1] = v
            sumG[r0:r1] = accG if kind == "jsd" else _sum_G(kind, a, v, acc)
            lse_p[r0:r1], lse_q[r0:r1] = lp_, lq_
        ctx.save_for_backward(z, zr, lse_p, lse_q, sumG)
        ctx.meta = (kind, a, cv, temp, chunks, n == z.shape[0])
        return vals

    @staticmethod
    def backward(ctx, gout):
        z, zr, lse_p, lse_q, sumG = ctx.saved_tensors
        kind, a, cv, temp, chunks, every_row = ctx.meta
        grad = torch.empty_like(z) if every_row else torch.zeros_like(z)  # unselected rows: 0
        V = z.shape[-1]
        for o, s0, s1 in chunks:
            r0, r1 = o, o + (s1 - s0)
            zp = _tempered(z[s0:s1], temp, lse_p.dtype)
            zq = _tempered(zr[s0:s1], temp, lse_p.dtype)
            for v0 in range(0, V, cv):
                lp = zp[:, v0 : v0 + cv].to(lse_p.dtype) - lse_p[r0:r1, None]
                lq = zq[:, v0 : v0 + cv].to(lse_p.dtype) - lse_q[r0:r1, None]
                dz = _dz(kind, a, lp, lq, sumG[r0:r1, None])
                grad[s0:s1, v0 : v0 + cv] = dz.mul_(gout[r0:r1, None] / temp)
        return grad, None, None, None, None, None, None, None


def _tempered(zc: torch.Tensor, temp: float, dtype) -> torch.Tensor:
    """A row chunk divided by the temperature (a chunk-sized copy only when temp ≠ 1)."""
    return zc if temp == 1.0 else zc.to(dtype) / temp


def _dz(kind: str, a: float, lp: torch.Tensor, lq: torch.Tensor, sumG: torch.Tensor) -> torch.Tensor:
    """∂D/∂z = G − p·ΣG for one block (closed forms for rkl and fkl)."""
    p = torch.exp(lp)
    if kind == "rkl":  # p(ℓp − ℓq + 1) − p(D + 1)
        return p.mul_(lp.sub_(lq).sub_(sumG - 1.0))
    if kind == "fkl":  # p − q
        return p.sub_(torch.exp(lq))
    _, G = _elementwise(kind, a, lp, lq)
    return G.sub_(p.mul_(sumG))


def _default_chunks(n: int, V: int, chunk_rows: int | None, chunk_vocab: int | None) -> tuple[int, int]:
    cv = int(chunk_vocab) if chunk_vocab else min(V, 32768)
    cr = int(chunk_rows) if chunk_rows else max(1, (1 << 20) // cv)
    if cr < 1 or cv < 1:
        raise ValueError(f"chunk_rows, chunk_vocab: must be ≥ 1, got {chunk_rows!r}, {chunk_vocab!r}")
    return cr, cv


def divergence_per_token(
    name: str,
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    beta: float = 0.5,
    alpha: float = 0.5,
    tsallis_q: float = 2.0,
    chunk_rows: int | None = None,
    chunk_vocab: int | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-position D(softmax(logits/T)‖softmax(ref_logits/T)), shape ``logits.shape[:-1]``, 0 where ``mask`` is
    False (T = ``temperature``: the KL between tempered distributions, as TRL and verl compute it).

    Chunked over rows (``chunk_rows``, default ≈ 2²⁰/chunk_vocab) and vocabulary (``chunk_vocab``, default
    min(V, 32768)); the gradient flows to ``logits`` only.  Result dtype: float32 or wider.
    """
    if logits.shape != ref_logits.shape:
        raise ValueError(
            f"ref_logits: shape {tuple(ref_logits.shape)} does not match logits {tuple(logits.shape)}"
        )
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits: need a vocabulary axis, got shape {tuple(logits.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"mask: shape {tuple(mask.shape)} does not match logits[..., 0] {tuple(logits.shape[:-1])}"
        )
    kind, a, scale = _canonical(name, beta, alpha, tsallis_q)
    V = logits.shape[-1]
    z = logits.reshape(-1, V)
    zr = ref_logits.detach().reshape(-1, V)
    flat_mask = (
        torch.ones(z.shape[0], dtype=torch.bool, device=z.device) if mask is None else mask.reshape(-1).bool()
    )
    rows = torch.nonzero(flat_mask).reshape(-1)
    cr, cv = _default_chunks(rows.numel(), V, chunk_rows, chunk_vocab)
    temp = check_finite_scalar("temperature", temperature, positive=True)
    vals = _ChunkedDivergence.apply(z, zr, rows, kind, a, cr, cv, temp)
    dtype = vals.dtype
    out = torch.zeros(z.shape[0], dtype=dtype, device=z.device).index_put((rows,), vals)
    return (scale * out).reshape(logits.shape[:-1])


def divergence_per_token_naive(
    name: str,
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    beta: float = 0.5,
    alpha: float = 0.5,
    tsallis_q: float = 2.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The straightforward full-logits autograd version (the benchmark peer and the differential-test oracle)."""
    kind, a, scale = _canonical(name, beta, alpha, tsallis_q)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    lp = torch.log_softmax(logits.to(dtype) / temperature, -1)
    lq = torch.log_softmax(ref_logits.detach().to(dtype) / temperature, -1)
    contrib, _ = _elementwise(kind, a, lp, lq)
    if kind in _LSE_KINDS:
        val = _finish_value(kind, a, torch.logsumexp(contrib, -1))
    else:
        val = contrib.sum(-1)
    val = scale * val
    if mask is not None:
        val = torch.where(mask.bool(), val, torch.zeros((), dtype=val.dtype))
    return val


def divergence_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    name: str,
    reduction: str = "sum",
    chunk_rows: int | None = None,
    chunk_vocab: int | None = None,
    **param,
) -> tuple[torch.Tensor, dict]:
    """Registry form: Σ (``reduction="sum"``) or mean over masked positions (``"token_mean"``) of D."""
    per = divergence_per_token(
        name, logits, ref_logits, mask, chunk_rows=chunk_rows, chunk_vocab=chunk_vocab, **param
    )
    if reduction == "sum":
        loss = per.sum()
    elif reduction == "token_mean":
        n = per.numel() if mask is None else mask.bool().sum()
        loss = per.sum() / max(float(n), 1.0)
    else:
        raise ValueError(f"reduction: must be 'sum' or 'token_mean', got {reduction!r}")
    return loss, {name: float(loss.detach())}
