"""KL estimators on sampled-token log-probabilities (spec ``llm-bridge.md`` §2), pure torch.

δ_t = log π_θ − log π_ref, r_t = e^{−δ_t}, ρ_t = exp(log π_θ − log π_old) (ρ = 1 in value on-policy,
still differentiable).  Schulman's k1 = δ, k2 = δ²/2, k3 = e^{−δ} + δ − 1 [Sch20, note 2020].

Every estimator is one call of :func:`kl_term`; its exact numpy twin is
:func:`klsim.sequence.kl_term_twin` (``klsim.sequence.TWINS['kl_estimators'][name]``).
"""

from __future__ import annotations

import torch

from klsim_llm._checks import check_finite_scalar, check_same_shape, masked

__all__ = ["ESTIMATORS", "AGGREGATIONS", "per_token_kl", "aggregate", "kl_term", "rev_cumsum"]

ESTIMATORS = ("k1", "k2", "k3", "k3_rho", "k2_rho", "k3_st", "is_k1", "rtg", "fv_partial", "fv_rtg")
AGGREGATIONS = ("seq_sum", "token_mean", "seq_mean_token_mean", "seq_sum_over_maxlen")


def rev_cumsum(x: torch.Tensor) -> torch.Tensor:
    """Σ_{s≥t} x_s along the last axis."""
    return torch.flip(torch.cumsum(torch.flip(x, (-1,)), -1), (-1,))


def aggregate(tau: torch.Tensor, mask: torch.Tensor, agg: str) -> torch.Tensor:
    """Reduce per-token terms τ (B, T) to a scalar (spec §2.2).

    ``seq_sum``: (1/B) Σ_b Σ_t m τ (the true sequence KL); ``token_mean``: Σ m τ / Σ m (global token mean,
    effective β ≈ β/mean length); ``seq_mean_token_mean``: (1/B) Σ_b Σ_t m τ/|y_b|;
    ``seq_sum_over_maxlen``: (1/B) Σ_b Σ_t m τ / T.
    """
    m = mask.to(tau.dtype)
    B, T = tau.shape
    t = masked(tau, mask)
    if agg == "seq_sum":
        return t.sum() / B
    if agg == "token_mean":
        return t.sum() / m.sum().clamp_min(1.0)
    if agg == "seq_mean_token_mean":
        return (t.sum(-1) / m.sum(-1).clamp_min(1.0)).sum() / B
    if agg == "seq_sum_over_maxlen":
        return t.sum() / (B * T)
    raise ValueError(f"agg: unknown aggregation {agg!r}; valid: {', '.join(AGGREGATIONS)}")


def _clamp(x: torch.Tensor, c: float | None) -> torch.Tensor:
    return x if c is None else torch.clamp(x, -c, c)


def per_token_kl(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    estimator: str,
    *,
    log_ratio_clamp: float | None = None,
    kl_clamp: float | None = None,
) -> torch.Tensor:
    """k1 / k2 / k3 per token, with verl/OpenRLHF-style clamps (a saturated clamp has zero gradient)."""
    delta = _clamp(logp - ref_logp.detach(), log_ratio_clamp)
    if estimator in ("k1", "is_k1", "rtg"):
        k = delta
    elif estimator in ("k2", "k2_rho"):
        k = 0.5 * delta**2
    elif estimator in ("k3", "k3_rho", "k3_st"):
        k = torch.expm1(-delta) + delta
    else:
        raise ValueError(f"estimator: {estimator!r} has no per-token value; valid: k1, k2, k3")
    return _clamp(k, kl_clamp)


def _rho(logp, old_logp, mask, is_level):
    old = logp.detach() if old_logp is None else old_logp.detach()
    lr = masked(logp - old, mask)
    if is_level == "token":
        return torch.exp(lr)
    if is_level == "sequence":
        n = mask.to(logp.dtype).sum(-1, keepdim=True).clamp_min(1.0)
        return torch.exp(lr.sum(-1, keepdim=True) / n).expand_as(logp)
    raise ValueError(f"is_level: must be 'token' or 'sequence', got {is_level!r}")


def _full_vocab_rkl(logits, ref_logits, mask):
    from klsim_llm.divergences import divergence_per_token

    if logits is None or ref_logits is None:
        raise ValueError("logits, ref_logits: required by the full-vocabulary estimators fv_partial / fv_rtg")
    return divergence_per_token("rkl", logits, ref_logits, mask)


def kl_term(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    estimator: str,
    old_logp: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
    ref_logits: torch.Tensor | None = None,
    placement: str = "loss",
    agg: str = "seq_sum",
    log_ratio_clamp: float | None = None,
    kl_clamp: float | None = None,
    is_level: str = "token",
    is_clamp: float | None = None,
    reward_to_go: bool = True,
    hand_backward: bool = False,
) -> tuple[torch.Tensor, dict]:
    """The KL term of one estimator × placement × IS level × aggregation × clamp combination.

    Parameters
    ----------
    logp, ref_logp, mask : (B, T)
    estimator : str
        ``k1``, ``k2``, ``k3`` [Sch20]; ``k3_rho`` = ρ·k3 [DSV32 Eq. 7]; ``k2_rho`` = ρ·k2;
        ``k3_st`` = k2 − sg(k2) + sg(k3) (verl PR #2953); ``is_k1``: value w·δ, gradient sg(w)·δ with
        w = min(ρ, ``is_clamp``) (OpenRLHF PR #1309); ``rtg`` = Σ_t log π_t·sg(Σ_{s≥t} δ_s) [TM25] (value
        Σ δ); ``fv_partial`` = Σ_t KL_t(y_<t); ``fv_rtg`` = Σ_t [KL_t + log π_t·sg(Σ_{s>t} KL_s)] [TM25].
    placement : ``loss`` or ``reward``
        ``reward``: value Σ k, gradient Σ_t ∇ρ_t·sg(R_t), R_t = Σ_{s≥t} k_s (``reward_to_go``) or Σ_s k_s
        (the score-function gradient of the token rewards −k_t; ρ_t ≡ log π_t − sg on-policy).
    agg : see :func:`aggregate`
    log_ratio_clamp, kl_clamp : float or None
        Clamp δ to ±c, then k to ±c (verl ±20 / ±10, OpenRLHF ±10); saturation is logged in ``clamp_frac``.
    is_level : ``token`` (ρ_t) or ``sequence`` (ρ̄ = exp(mean_t log ρ_t), broadcast; TRL #6586).
    hand_backward : bool
        Liger's hand-written Triton backward for sequence IS: value ρ̄·k3, gradient ρ̄·δ_t.

    Returns
    -------
    loss : scalar tensor (multiply by β outside)
    metrics : dict with ``kl`` (mean per-row Σ_t k), ``clamp_frac``.

    Twin: ``klsim.sequence.kl_term_twin``.
    """
    check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    if old_logp is not None:
        check_same_shape(logp=logp, old_logp=old_logp)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: unknown {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    for name, c in (("log_ratio_clamp", log_ratio_clamp), ("kl_clamp", kl_clamp), ("is_clamp", is_clamp)):
        if c is not None:
            check_finite_scalar(name, c, positive=True)
    if estimator in ("rtg", "fv_partial", "fv_rtg") and agg != "seq_sum":
        raise ValueError(f"agg: estimator {estimator!r} is a sequence-level estimator; use agg='seq_sum'")
    m = mask.to(logp.dtype)
    sg = logp.detach()
    metrics: dict = {}
    rho = _rho(logp, old_logp, mask, is_level)
    if estimator in ("fv_partial", "fv_rtg"):
        k = _full_vocab_rkl(logits, ref_logits, mask)
    else:
        delta_raw = logp - ref_logp.detach()
        k = per_token_kl(logp, ref_logp, estimator, log_ratio_clamp=log_ratio_clamp, kl_clamp=kl_clamp)
        sat = torch.zeros_like(m, dtype=torch.bool)
        if log_ratio_clamp is not None:
            sat |= delta_raw.abs() > log_ratio_clamp
        if kl_clamp is not None:
            sat |= per_token_kl(sg, ref_logp, estimator, log_ratio_clamp=log_ratio_clamp).abs() > kl_clamp
        metrics["clamp_frac"] = float((sat & mask.bool()).sum() / m.sum().clamp_min(1.0))
    if estimator in ("k3_rho", "k2_rho"):
        value_tok = rho * k
        if hand_backward:
            delta = _clamp(logp - ref_logp.detach(), log_ratio_clamp)
            value_tok = (rho * k).detach() + (logp - sg) * (rho * delta).detach()
    elif estimator == "k3_st":
        k2 = per_token_kl(logp, ref_logp, "k2", log_ratio_clamp=log_ratio_clamp, kl_clamp=kl_clamp)
        value_tok = k2 - k2.detach() + k.detach()
    elif estimator == "is_k1":
        w = rho.detach() if is_clamp is None else torch.clamp(rho.detach(), max=is_clamp)
        value_tok = (w * k).detach() * (1.0 + logp - sg)
    else:
        value_tok = k
    metrics["kl"] = float(masked(value_tok.detach(), mask).sum() / logp.shape[0])

    if placement == "reward":
        kd = masked(value_tok.detach(), mask)
        R = rev_cumsum(kd) if reward_to_go else kd.sum(-1, keepdim=True).expand_as(kd)
        tau = kd + (rho - rho.detach()) * R  # with sequence IS, ρ̄'s gradient carries the cross terms
        return aggregate(tau, mask, agg), metrics
    if placement != "loss":
        raise ValueError(f"placement: must be 'loss' or 'reward', got {placement!r}")
    if estimator == "rtg":
        tau = k.detach() + (logp - sg) * rev_cumsum(masked(k.detach(), mask))
    elif estimator == "fv_rtg":
        kd = masked(k.detach(), mask)
        tau = k + (logp - sg) * (rev_cumsum(kd) - kd)
    else:
        tau = value_tok
    return aggregate(tau, mask, agg), metrics
