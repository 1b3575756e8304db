"""Torch objectives (spec ``llm-bridge.md`` §4–5): preference losses, KL-regularized policy gradient,
Nash-MP, χ²-occupancy, best-of-N distillation, advantages and the framework KL presets.

All functions are pure: tensors in, ``(loss, metrics)`` out (``metrics``: dict of floats).  Shapes and
keyword arguments are listed in :mod:`klsim_llm.registry`.  Each function names its exact numpy twin in
:mod:`klsim.sequence.twins`; the parity test checks value and logit gradient to 1e-10.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from klsim_llm._checks import check_finite_scalar, check_group, check_same_shape, masked
from klsim_llm.divergences import divergence_per_token
from klsim_llm.estimators import aggregate, kl_term, rev_cumsum

__all__ = [
    "PREF_LOSSES",
    "pref_loss",
    "advantages",
    "token_rewards",
    "gae",
    "value_loss",
    "pg_loss",
    "nash_mp_loss",
    "occupancy_chi2_loss",
    "bon_log_law",
    "bon_distill_loss",
    "PRESETS",
    "preset_kl",
    "alpha_from_trl",
]

PREF_LOSSES = ("dpo", "ipo", "ipo_lennorm", "fdpo", "is_daa", "hdpo", "tdpo1", "tdpo2")


def _seq_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked(x, mask).sum(-1)


def _clamp(x: torch.Tensor, c: float) -> torch.Tensor:
    return torch.clamp(x, -c, c)


def _fdpo_logit(sw, sl, divergence, alpha, beta, clamp):
    """β(f′(u_w) − f′(u_l)), u = π/π_ref = e^s (spec §4 f-DPO table; constants of f′ cancel)."""
    if divergence == "rkl":
        return beta * (sw - sl)
    if divergence == "fkl":
        return beta * (torch.exp(-_clamp(sl, clamp)) - torch.exp(-_clamp(sw, clamp)))
    if divergence == "js":
        return beta * (F.logsigmoid(sw) - F.logsigmoid(sl))
    if divergence == "alpha":
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha: must lie in (0, 1) for the alpha divergence, got {alpha!r}")
        return beta / alpha * (torch.exp(-alpha * _clamp(sl, clamp)) - torch.exp(-alpha * _clamp(sw, clamp)))
    raise ValueError(f"divergence: must be rkl, fkl, js or alpha, got {divergence!r}")


def alpha_from_trl(alpha_trl: float) -> float:
    """TRL's f-DPO α′ (``u^{α′−1}/(α′−1)``, TRL PR #3906) → this library's (paper) α: α = 1 − α′ (spec §4 b)."""
    return 1.0 - float(alpha_trl)


def pref_loss(
    logp_w: torch.Tensor,
    ref_logp_w: torch.Tensor,
    mask_w: torch.Tensor,
    logp_l: torch.Tensor,
    ref_logp_l: torch.Tensor,
    mask_l: torch.Tensor,
    *,
    name: str,
    beta: float,
    divergence: str = "rkl",
    alpha: float = 0.5,
    eps: float = 0.5,
    base: str = "dpo",
    data_logp_w: torch.Tensor | None = None,
    data_logp_l: torch.Tensor | None = None,
    logits_w: torch.Tensor | None = None,
    ref_logits_w: torch.Tensor | None = None,
    logits_l: torch.Tensor | None = None,
    ref_logits_l: torch.Tensor | None = None,
    log_ratio_clamp: float = 80.0,
) -> tuple[torch.Tensor, dict]:
    """Preference losses, mean over the B pairs (spec §4).  s = Σ_t m(log π − log π_ref), Δ = s_w − s_l.

    * ``dpo`` [DPO]: −log σ(βΔ);  ``ipo`` [IPO]: (Δ − 1/(2β))²;  ``ipo_lennorm`` (TRL): s/|y|;
    * ``fdpo`` [fDPO]: −log σ(β f′(u_w) − β f′(u_l)), ``divergence`` ∈ rkl/fkl/js/alpha (paper α);
      exp(−α·s) after clamping s to ±``log_ratio_clamp`` (TRL: 80 outside fp16);
    * ``is_daa`` [ISDAA]: sg(w)·ℓ_base, w = exp(min(Σlog π_θ(y_w) + Σlog π_θ(y_l) − Σlog π_data(…), 2ε)),
      π_data = π_ref unless ``data_logp_*`` are given;
    * ``hdpo`` [HDPO]: −log σ(β[α log π(y_w) − log π_ref(y_w)] − β[α log π(y_l) − log π_ref(y_l)]);
    * ``tdpo1``/``tdpo2`` [TDPO]: −log σ(βΔ − c[βD(y_l) − β·D(y_w)]), D(y) = Σ_t KL(π_ref,t‖π_θ,t) exact
      full-vocabulary (chunked), c = 1 (``tdpo1``) or α with sg on D(y_w) (``tdpo2``).

    Twin: ``klsim.sequence.pref_twin``.
    """
    check_same_shape(logp_w=logp_w, ref_logp_w=ref_logp_w, mask_w=mask_w)
    check_same_shape(logp_l=logp_l, ref_logp_l=ref_logp_l, mask_l=mask_l)
    if logp_w.shape[0] != logp_l.shape[0]:
        raise ValueError(f"logp_l: {logp_l.shape[0]} rejected rows for {logp_w.shape[0]} chosen rows")
    beta = check_finite_scalar("beta", beta, positive=True)
    sw = _seq_sum(logp_w - ref_logp_w.detach(), mask_w)
    sl = _seq_sum(logp_l - ref_logp_l.detach(), mask_l)
    metrics: dict = {"margin": float((sw - sl).detach().mean())}
    if name == "dpo" or (name == "is_daa" and base == "dpo"):
        loss = -F.logsigmoid(beta * (sw - sl))
    elif name == "ipo" or (name == "is_daa" and base == "ipo"):
        loss = (sw - sl - 1.0 / (2 * beta)) ** 2
    elif name == "is_daa":
        raise ValueError(f"base: must be 'dpo' or 'ipo', got {base!r}")
    elif name == "ipo_lennorm":
        nw = mask_w.to(sw.dtype).sum(-1).clamp_min(1.0)
        nl = mask_l.to(sl.dtype).sum(-1).clamp_min(1.0)
        loss = (sw / nw - sl / nl - 1.0 / (2 * beta)) ** 2
    elif name == "fdpo":
        loss = -F.logsigmoid(_fdpo_logit(sw, sl, divergence, alpha, beta, log_ratio_clamp))
        metrics["clamp_frac"] = float(
            ((sw.abs() > log_ratio_clamp) | (sl.abs() > log_ratio_clamp)).float().mean()
        )
    elif name == "hdpo":
        h = beta * (alpha * _seq_sum(logp_w, mask_w) - _seq_sum(ref_logp_w.detach(), mask_w))
        h = h - beta * (alpha * _seq_sum(logp_l, mask_l) - _seq_sum(ref_logp_l.detach(), mask_l))
        loss = -F.logsigmoid(h)
    elif name in ("tdpo1", "tdpo2"):
        if any(t is None for t in (logits_w, ref_logits_w, logits_l, ref_logits_l)):
            raise ValueError(f"logits_w, ref_logits_w, logits_l, ref_logits_l: required by {name}")
        Dw = divergence_per_token("fkl", logits_w, ref_logits_w, mask_w).sum(-1)
        Dl = divergence_per_token("fkl", logits_l, ref_logits_l, mask_l).sum(-1)
        c = 1.0 if name == "tdpo1" else float(alpha)
        if name == "tdpo2":
            Dw = Dw.detach()
        loss = -F.logsigmoid(beta * (sw - sl) - c * (beta * Dl - beta * Dw))
    else:
        raise ValueError(f"name: unknown preference loss {name!r}; valid: {', '.join(PREF_LOSSES)}")
    if name == "is_daa":
        dw = ref_logp_w if data_logp_w is None else data_logp_w
        dl = ref_logp_l if data_logp_l is None else data_logp_l
        lw = _seq_sum(logp_w.detach() - dw.detach(), mask_w) + _seq_sum(logp_l.detach() - dl.detach(), mask_l)
        w = torch.exp(torch.clamp(lw, max=2 * eps))
        loss = w * loss
        metrics["is_weight"] = float(w.mean())
    loss = loss.mean()
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def advantages(
    rewards: torch.Tensor, *, name: str, group_size: int, std_eps: float = 1e-4
) -> tuple[torch.Tensor, dict]:
    """Group advantages (spec §5): ``none`` R; ``rloo`` [RLOO] R − leave-one-out mean; ``group_mean`` R − mean;
    ``grpo`` [GRPO] (R − mean)/(std + ε) with Bessel's correction.  Rows ``[gG, (g+1)G)`` form a group.
    Twin: ``klsim.sequence.advantage_twin``."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards: expected shape (B,), got {tuple(rewards.shape)}")
    G = check_group(rewards.shape[0], group_size)
    R = rewards.detach().reshape(-1, G)
    if name == "none":
        A = R
    elif name == "rloo":
        if G < 2:
            raise ValueError("group_size: RLOO needs at least 2 samples per prompt")
        A = R - (R.sum(-1, keepdim=True) - R) / (G - 1)
    elif name == "group_mean":
        A = R - R.mean(-1, keepdim=True)
    elif name == "grpo":
        if G < 2:
            raise ValueError("group_size: GRPO's std needs at least 2 samples per prompt")
        std = R.std(-1, keepdim=True)
        A = (R - R.mean(-1, keepdim=True)) / (std + std_eps)
    else:
        raise ValueError(f"name: unknown advantage {name!r}; valid: none, rloo, group_mean, grpo")
    return A.reshape(-1), {"adv_mean": float(A.mean()), "adv_std": float(A.std()) if A.numel() > 1 else 0.0}


def _check_right_padded(mask: torch.Tensor) -> None:
    m = mask.to(torch.int8)
    bad = (m[..., 1:] > m[..., :-1]).nonzero()
    if len(bad):
        raise ValueError(
            f"mask: must be right-padded (1…1 0…0 per row); row {tuple(bad[0, :-1].tolist())} is not"
        )


def token_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards r_t = R·1[t = last active token] of a right-padded batch, shape (B, T).

    ``rewards`` (B,) sequence rewards, ``mask`` (B, T).  A row without active token receives nothing.  The KL
    penalty −β·k_t (KL in the reward) is added by the caller.  Twin: ``klsim.sequence.token_rewards_twin``.
    """
    if rewards.shape != mask.shape[:1]:
        raise ValueError(f"rewards: expected shape ({mask.shape[0]},), got {tuple(rewards.shape)}")
    _check_right_padded(mask)
    m = mask.to(rewards.dtype)
    last = (m.cumsum(-1) == m.sum(-1, keepdim=True)) & mask.bool()
    return torch.where(last, rewards[:, None], torch.zeros((), dtype=rewards.dtype, device=rewards.device))


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalized advantage estimation [GAE, Schulman et al. arXiv:1506.02438, eq. 16].

    .. math::  δ_t = r_t + γ V_{t+1} − V_t,\qquad Â_t = Σ_{l≥0} (γλ)^l δ_{t+l},\qquad R_t = Â_t + V_t

    on each right-padded row; the state after the last active token is terminal (V = 0 there) and padded
    positions get Â = R = 0.  λ = 1: discounted return − V; λ = 0: δ_t; γ = λ = 1, V = 0: the Monte-Carlo
    reward-to-go Σ_{s≥t} r_s.

    Parameters
    ----------
    rewards : Tensor (B, T)
        Per-token rewards r_t (:func:`token_rewards` minus β·k_t when the KL is in the reward).
    values : Tensor (B, T)
        V_t = V(x, y_<t), the value of the state in which y_t is chosen (treated as constants).
    mask : Tensor (B, T)
        Response tokens, right-padded.
    gamma, lam : float in [0, 1]

    Returns
    -------
    advantages, returns : Tensor (B, T)
        Â_t and the value targets R_t = Â_t + V_t (detached).  Twin: ``klsim.sequence.gae_twin``.
    """
    check_same_shape(rewards=rewards, values=values, mask=mask)
    for nm, v in (("gamma", gamma), ("lam", lam)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{nm}: must lie in [0, 1], got {v!r}")
    _check_right_padded(mask)
    m = mask.to(rewards.dtype)
    r = masked(rewards.detach(), mask)
    v = masked(values.detach(), mask)
    v_next = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], -1)
    delta = (r + gamma * v_next - v) * m
    run = torch.zeros_like(delta[:, 0])
    out = []
    for t in range(delta.shape[1] - 1, -1, -1):
        run = delta[:, t] + (gamma * lam) * run
        out.append(run)
    adv = torch.stack(out[::-1], -1) * m if out else delta
    return adv, (adv + v) * m


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_values: torch.Tensor | None = None,
    value_clip: float | None = None,
    agg: str = "seq_sum",
) -> tuple[torch.Tensor, dict]:
    """Clipped value loss of PPO [PPO, arXiv:1707.06347 eq. 9 (L^VF); clipping as in OpenAI baselines ppo2]:

    ℓ_t = ½·max((V_t − R_t)², (clip(V_t, V_old,t − ε_v, V_old,t + ε_v) − R_t)²), aggregated over tokens by
    ``agg`` (the policy surrogate's aggregation, §2.2).  ``value_clip=None``: ½(V − R)² (no clipping).
    ``old_values=None``: V_old = sg(V) (the first epoch; the clip is then inactive).  R is detached."""
    check_same_shape(values=values, returns=returns, mask=mask)
    R = returns.detach()
    vl = (values - R) ** 2
    metrics: dict = {}
    if value_clip is not None:
        eps = check_finite_scalar("value_clip", value_clip, positive=True)
        vold = values.detach() if old_values is None else old_values.detach()
        vc = vold + torch.clamp(values - vold, -eps, eps)
        vl = torch.maximum(vl, (vc - R) ** 2)
        out = masked(((values - vold).abs() > eps).to(values.dtype), mask)
        metrics["vf_clip_frac"] = float(out.sum() / mask.to(values.dtype).sum().clamp_min(1.0))
    loss = 0.5 * aggregate(vl, mask, agg)
    metrics["value_loss"] = float(loss.detach())
    return loss, metrics


_PG_BASELINE = {"reinforce": "none", "rloo": "rloo", "grpo": "grpo", "ppo": "none"}


def pg_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    *,
    name: str,
    old_logp: torch.Tensor | None = None,
    group_size: int = 1,
    beta: float = 0.0,
    baseline: str | None = None,
    kl_estimator: str = "k1",
    kl_placement: str = "reward",
    agg: str = "seq_sum",
    clip_eps: tuple[float, float] = (0.2, 0.2),
    values: torch.Tensor | None = None,
    old_values: torch.Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 1.0,
    vf_coef: float = 0.1,
    value_clip: float | None = None,
    **kl_kwargs,
) -> tuple[torch.Tensor, dict]:
    """KL-regularized policy gradient: target E[R] − β·KL_seq(π_θ‖π_ref) (spec §5).

    Per token τ_t = −ρ_t·A_t (``reinforce``, ``rloo``, ``grpo``) or −min(ρ_t A_t, clip(ρ_t, 1−ε_lo, 1+ε_hi) A_t)
    (``ppo`` [PPO], Monte-Carlo return, i.e. GAE(γ=1, λ=1) without critic), ρ_t = exp(log π − log π_old)
    (≡ 1 in value on-policy).  A = adv(R) over the group (``baseline``: none / rloo / grpo / group_mean).
    KL in the reward: A_t ← A_t − β·Σ_{s≥t} sg(k_s) with ``kl_estimator`` ∈ k1/k2/k3; in the loss:
    + β·``kl_term`` (:func:`klsim_llm.estimators.kl_term`).  Aggregation ``agg`` as in §2.2.

    ``ppo`` with a critic (``values`` (B, T) given, or ``gamma``/``lam`` ≠ 1): A = :func:`gae` (γ, λ) of the
    per-token rewards r_t = R·1[t = last] − β·sg(k_t) (the −β·k_t only with the KL in the reward) with the
    rollout values V_old (``old_values``; None: sg(``values``); no ``values``: V = 0), no group baseline;
    plus ``vf_coef``·:func:`value_loss` (targets R = Â + V_old, clipped at ±``value_clip`` around V_old).
    Without ``values`` and with γ = λ = 1 this is exactly the Monte-Carlo path above.

    Twin: ``klsim.sequence.pg_twin``.
    """
    check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    if rewards.shape != logp.shape[:1]:
        raise ValueError(f"rewards: expected shape ({logp.shape[0]},), got {tuple(rewards.shape)}")
    if name not in _PG_BASELINE:
        raise ValueError(
            f"name: unknown policy-gradient objective {name!r}; valid: {', '.join(_PG_BASELINE)}"
        )
    beta = check_finite_scalar("beta", beta)
    if beta < 0:
        raise ValueError(f"beta: must be ≥ 0, got {beta!r}")
    base = _PG_BASELINE[name] if baseline is None else baseline
    use_gae = values is not None or gamma != 1.0 or lam != 1.0
    if use_gae:
        if name != "ppo":
            raise ValueError(
                f"values, gamma, lam: GAE with a critic is for the 'ppo' objective, not {name!r}"
            )
        if base != "none":
            raise ValueError(f"baseline: GAE uses the critic as baseline; got baseline={base!r}")
        check_same_shape(logp=logp, values=values, old_values=old_values)
        metrics: dict = {}
    else:
        A, metrics = advantages(rewards, name=base, group_size=group_size)
        A = A[:, None].expand_as(logp)
    m = mask.to(logp.dtype)
    loss = torch.zeros((), dtype=logp.dtype)
    k = None
    if beta > 0:
        if kl_placement == "reward":
            from klsim_llm.estimators import per_token_kl

            if kl_estimator not in ("k1", "k2", "k3"):
                raise ValueError(f"kl_estimator: {kl_estimator!r} cannot be placed in the reward")
            k = per_token_kl(logp.detach(), ref_logp, kl_estimator, **kl_kwargs) * m
            if not use_gae:
                A = A - beta * rev_cumsum(k)
            metrics["kl"] = float(k.sum() / logp.shape[0])
        elif kl_placement == "loss":
            kl, km = kl_term(
                logp, ref_logp, mask, estimator=kl_estimator, old_logp=old_logp, agg=agg, **kl_kwargs
            )
            loss = loss + beta * kl
            metrics.update({f"kl_{k}": v for k, v in km.items()})
        else:
            raise ValueError(f"kl_placement: must be 'reward' or 'loss', got {kl_placement!r}")
    if use_gae:
        r = token_rewards(rewards.detach().to(logp.dtype), mask)
        if k is not None:
            r = r - beta * k
        if values is None:
            v_roll = torch.zeros_like(logp.detach())
        else:
            v_roll = (values if old_values is None else old_values).detach()
        A, ret = gae(r, v_roll, mask, gamma=gamma, lam=lam)
        n_tok = m.sum().clamp_min(1.0)
        a_mean = A.sum() / n_tok
        metrics["adv_mean"] = float(a_mean)
        metrics["adv_std"] = float(torch.sqrt((masked((A - a_mean) ** 2, mask)).sum() / n_tok))
        if values is not None:
            vf_coef = check_finite_scalar("vf_coef", vf_coef)
            if vf_coef < 0:
                raise ValueError(f"vf_coef: must be ≥ 0, got {vf_coef!r}")
            vl, vm = value_loss(values, ret, mask, old_values=old_values, value_clip=value_clip, agg=agg)
            loss = loss + vf_coef * vl
            metrics.update(vm)
            metrics["value_mean"] = float(masked(values.detach(), mask).sum() / n_tok)
            metrics["return_mean"] = float(ret.sum() / n_tok)
    old = logp.detach() if old_logp is None else old_logp.detach()
    rho = torch.exp(masked(logp - old, mask))
    if name == "ppo":
        lo, hi = clip_eps
        rc = torch.clamp(rho, 1 - lo, 1 + hi)
        tau = -torch.minimum(rho * A, rc * A)
        metrics["clip_frac"] = float(
            (masked(((rho < 1 - lo) | (rho > 1 + hi)).to(m.dtype), mask)).sum() / m.sum().clamp_min(1.0)
        )
    else:
        tau = -rho * A
    loss = loss + aggregate(tau, mask, agg)
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def nash_mp_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    anchor_logp: torch.Tensor,
    mask: torch.Tensor,
    preference: torch.Tensor,
    *,
    beta: float,
    eta: float,
) -> tuple[torch.Tensor, dict]:
    """Nash-MP LLM half step [NashMP, arXiv:2505.19731v1], per row y ~ π_θ (opponent y′ ~ π_θk):

    ℓ = −(1/β)(P̂(y≻y′) − ½)·Σ_t log π_t + rtg(δ^ref) + (1/η)·rtg(δ^anchor), with rtg the exact
    reward-to-go KL gradient (value Σ δ), mean over rows.  Twin: ``klsim.sequence.nash_mp_twin``.
    """
    check_same_shape(logp=logp, ref_logp=ref_logp, anchor_logp=anchor_logp, mask=mask)
    beta = check_finite_scalar("beta", beta, positive=True)
    eta = check_finite_scalar("eta", eta, positive=True)
    if preference.shape != logp.shape[:1]:
        raise ValueError(f"preference: expected shape ({logp.shape[0]},), got {tuple(preference.shape)}")
    c = -(preference.detach() - 0.5) / beta
    pg = c * _seq_sum(logp, mask)
    kl_ref, _ = kl_term(logp, ref_logp, mask, estimator="rtg")
    kl_anc, _ = kl_term(logp, anchor_logp, mask, estimator="rtg")
    loss = pg.mean() + kl_ref + kl_anc / eta
    return loss, {
        "loss": float(loss.detach()),
        "kl_ref": float(kl_ref.detach()),
        "kl_anchor": float(kl_anc.detach()),
    }


def occupancy_chi2_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    *,
    kl_coef: float,
    log_ratio_clamp: float = 20.0,
) -> tuple[torch.Tensor, dict]:
    """χ²-occupancy penalty [Corr25, arXiv:2403.03185] (not TRL's odds-ratio ORPO): token-free score function

    ℓ = sg(−R + λ·pen(s))·(1 + Σ_t (log π_t − sg)), pen(s) = e^s − 1 (s = log π/π_ref of the sequence),
    linearized beyond s = c (logged).  E_π[∇ℓ] = −∇E[R] + (λ/2)·∇χ²_seq(π‖π_ref).
    Twin: ``klsim.sequence.occupancy_chi2_twin``.
    """
    check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    lam = check_finite_scalar("kl_coef", kl_coef)
    c = check_finite_scalar("log_ratio_clamp", log_ratio_clamp, positive=True)
    s = _seq_sum(logp - ref_logp.detach(), mask).detach()
    pen = torch.where(s <= c, torch.expm1(torch.clamp(s, max=c)), math.exp(c) * (1 + s - c) - 1)
    adv = -rewards.detach() + lam * pen
    loss = (adv * (1.0 + _seq_sum(logp - logp.detach(), mask))).mean()
    return loss, {
        "loss": float(loss.detach()),
        "chi2_sat": float((s > c).float().mean()),
        "penalty": float(pen.mean()),
    }


def bon_log_law(ref_seq_logp: torch.Tensor, rewards: torch.Tensor, n: int) -> torch.Tensor:
    """log π_N(y) of best-of-N with uniform tie-breaking over the rows as support [BoN, BOND]:

    π_N(y) = π_ref(y)(p_≤^N − p_<^N)/(p_≤ − p_<); p_≤, p_< and the tie mass by pairwise masked logsumexp.
    """
    if n < 1:
        raise ValueError(f"n: must be ≥ 1, got {n!r}")
    lr = ref_seq_logp.detach()
    r = rewards.detach()
    le = r[None, :] <= r[:, None]
    lt = r[None, :] < r[:, None]
    eq = le & ~lt
    ninf = torch.tensor(-math.inf, dtype=lr.dtype)
    a = torch.logsumexp(torch.where(le, lr[None, :], ninf), -1)
    b = torch.logsumexp(torch.where(lt, lr[None, :], ninf), -1)
    tie = torch.logsumexp(torch.where(eq, lr[None, :], ninf), -1)
    return lr + n * a + torch.log(-torch.expm1(n * (b - a))) - tie


def bon_distill_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    *,
    n: int,
    divergence: str = "fkl",
) -> tuple[torch.Tensor, dict]:
    """Best-of-N distillation [BOND, arXiv:2407.14622]: the B rows are the candidate support of one prompt
    (exact when they enumerate it); target π_N = :func:`bon_log_law`.  ``fkl``: KL(π_N‖π_θ) (SFT on BoN
    samples); ``rkl``: KL(π_θ‖π_N), the KL-RL objective at β = 1/(N−1) with r_BOND up to a constant.
    Twin: ``klsim.sequence.bon_distill_twin``."""
    check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    sp = _seq_sum(logp, mask)
    lN = bon_log_law(_seq_sum(ref_logp, mask), rewards, int(n))
    if divergence == "fkl":
        pN = torch.exp(lN)
        loss = torch.sum(pN * (lN - sp))
    elif divergence == "rkl":
        loss = torch.sum(torch.exp(sp) * (sp - lN))
    else:
        raise ValueError(f"divergence: must be 'fkl' or 'rkl', got {divergence!r}")
    return loss, {"loss": float(loss.detach())}


# --- framework KL presets (spec §2.3) -------------------------------------------------------------------

PRESETS: dict[str, dict] = {
    "trl_grpo": dict(estimator="k3", placement="loss", agg="token_mean"),
    "verl_kl_loss": dict(
        estimator="k3", placement="loss", agg="token_mean", log_ratio_clamp=20.0, kl_clamp=10.0
    ),
    "liger_grpo": dict(estimator="k3", placement="loss", agg="token_mean"),
    "trl_grpo_bc": dict(estimator="k3_rho", placement="loss", agg="token_mean"),
    "trl_grpo_bc_seq": dict(estimator="k3_rho", placement="loss", agg="token_mean", is_level="sequence"),
    "liger_grpo_triton_seq": dict(
        estimator="k3_rho", placement="loss", agg="token_mean", is_level="sequence", hand_backward=True
    ),
    "verl_k3_plus": dict(
        estimator="k3_st", placement="loss", agg="token_mean", log_ratio_clamp=20.0, kl_clamp=10.0
    ),
    "openrlhf_k2_loss": dict(
        estimator="k2", placement="loss", agg="seq_mean_token_mean", log_ratio_clamp=10.0
    ),
    "openrlhf_k1_loss": dict(
        estimator="k1", placement="loss", agg="seq_mean_token_mean", log_ratio_clamp=10.0
    ),
    "openrlhf_unbiased": dict(estimator="is_k1", placement="loss", agg="seq_mean_token_mean", is_clamp=10.0),
    "trl_rloo": dict(estimator="k1", placement="reward", agg="seq_sum", reward_to_go=False),
    "verl_kl_in_reward": dict(estimator="k1", placement="reward", agg="seq_sum"),
    "openrlhf_default": dict(estimator="k1", placement="reward", agg="seq_sum", log_ratio_clamp=10.0),
    "trl_ppo_k1": dict(estimator="k1", placement="reward", agg="seq_sum"),
    "trl_ppo_k3": dict(estimator="k3", placement="reward", agg="seq_sum"),
    "verl_reward_low_var_kl": dict(
        estimator="k3", placement="reward", agg="seq_sum", log_ratio_clamp=20.0, kl_clamp=10.0
    ),
    "trl_nash_md": dict(per_token_pairing=True),
    "library_rtg": dict(estimator="rtg", placement="loss", agg="seq_sum"),
    "library_fv_rtg": dict(estimator="fv_rtg", placement="loss", agg="seq_sum"),
}
"""The KL term of each framework setting (spec §2.3) as :func:`kl_term` keywords (documented math, no copied
code).  ``verl_both`` (verl #265, KL in reward and loss) is not a preset: it raises unless ``allow_double_kl``."""


def preset_kl(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    preset: str,
    old_logp: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
    ref_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """The KL surrogate of a framework preset (multiply by β).  ``trl_nash_md``: Σ_t sg(δ_t)·log π_t
    (each token paired with its own log-ratio; value Σ δ).  Twin: ``klsim.sequence.preset_twin``."""
    if preset not in PRESETS:
        import difflib

        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        raise ValueError(f"preset: unknown {preset!r}{'; did you mean ' + repr(close[0]) if close else ''}")
    spec = dict(PRESETS[preset])
    if spec.pop("per_token_pairing", False):
        check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
        d = (logp - ref_logp.detach()).detach()
        tau = d * (1.0 + logp - logp.detach())
        return aggregate(tau, mask, "seq_sum"), {"kl": float(masked(d, mask).sum() / logp.shape[0])}
    return kl_term(logp, ref_logp, mask, old_logp=old_logp, logits=logits, ref_logits=ref_logits, **spec)


def double_kl_guard(kl_in_reward: bool, kl_in_loss: bool, allow_double_kl: bool = False) -> None:
    """verl #265: KL in the reward *and* the loss counts it twice; raise unless ``allow_double_kl``."""
    if kl_in_reward and kl_in_loss and not allow_double_kl:
        raise ValueError(
            "kl_placement: KL in both reward and loss counts it twice (verl #265); "
            "set allow_double_kl=True to do it on purpose"
        )
