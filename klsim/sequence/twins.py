"""Exact numpy twins of every ``klsim_llm`` registry entry: per-sample loss values and hand-derived gradients.

Each twin takes the arrays a torch loss receives, with a leading sample axis ``S`` and K rows per sample
(``logp``, ``ref_logp``, ``old_logp``, ``mask``: (S, K, L); ``logq``/``ref_logq``: (S, K, L, V);
``rewards``: (S, K)), the same keyword parameters, and returns a :class:`~klsim.sequence.lm.TwinOut`
(value (S,), ∂ℓ/∂log π(y_t) (S, K, L), ∂ℓ/∂log π(·|h_t) (S, K, L, V) or None).  Combined with
:func:`klsim.sequence.lm.expected_loss` this gives exact expected values and logit gradients.

Notation (spec ``llm-bridge.md`` §0): δ_t = log π_θ − log π_ref, r_t = e^{−δ_t}, ρ_t = π_θ/π_old,
s(y) = Σ_t δ_t; Schulman's k1 = δ, k2 = δ²/2, k3 = e^{−δ} + δ − 1 [Sch20].
"""

from __future__ import annotations

from functools import partial

import numpy as np

from klsim.divergences import js_divergence, kl_divergence, log_softmax, logsumexp
from klsim.sequence.lm import TwinOut

__all__ = [
    "AGGREGATIONS",
    "ESTIMATORS",
    "agg_weights",
    "kl_term_twin",
    "divergence_twin",
    "pref_twin",
    "pg_twin",
    "nash_mp_twin",
    "occupancy_chi2_twin",
    "bon_log_law",
    "bon_distill_twin",
    "advantage_twin",
    "token_rewards_twin",
    "gae_twin",
    "value_loss_twin",
    "PRESET_SPECS",
    "TWINS",
]

AGGREGATIONS = ("seq_sum", "token_mean", "seq_mean_token_mean", "seq_sum_over_maxlen")
ESTIMATORS = ("k1", "k2", "k3", "k3_rho", "k2_rho", "k3_st", "is_k1", "rtg", "fv_partial", "fv_rtg")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def agg_weights(mask: np.ndarray, agg: str) -> np.ndarray:
    """Per-token weights a with loss = Σ_{k,t} a_{k,t}·τ_{k,t} over the K rows of each sample, (S, K, L).

    ``seq_sum``: 1/K; ``token_mean``: 1/Σ m; ``seq_mean_token_mean``: 1/(K·|y_k|);
    ``seq_sum_over_maxlen``: 1/(K·L).  Spec §2.2.
    """
    m = mask.astype(float)
    S, K, L = m.shape
    if agg == "seq_sum":
        a = np.ones_like(m) / K
    elif agg == "token_mean":
        a = np.ones_like(m) / np.maximum(m.sum(axis=(1, 2), keepdims=True), 1.0)
    elif agg == "seq_mean_token_mean":
        a = np.ones_like(m) / (K * np.maximum(m.sum(axis=2, keepdims=True), 1.0))
    elif agg == "seq_sum_over_maxlen":
        a = np.ones_like(m) / (K * L)
    else:
        raise ValueError(f"agg: unknown aggregation {agg!r}; valid: {', '.join(AGGREGATIONS)}")
    return a * m


def _clamped(x: np.ndarray, c: float | None) -> tuple[np.ndarray, np.ndarray]:
    if c is None:
        return x, np.ones_like(x)
    inside = (x >= -c) & (x <= c)
    return np.clip(x, -c, c), inside.astype(float)


def _rev_cumsum(x: np.ndarray) -> np.ndarray:
    return np.flip(np.cumsum(np.flip(x, -1), -1), -1)


def _rkl_rows(logq: np.ndarray, ref_logq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL(π_t‖π_ref,t) per position and its derivative w.r.t. the log-probability vector log π_t."""
    p = np.exp(logq)
    kl = kl_divergence(logq, ref_logq)
    return kl, p * (logq - ref_logq + 1.0)


def _fkl_rows(logq: np.ndarray, ref_logq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL(π_ref,t‖π_t) per position and its derivative −π_ref w.r.t. log π_t."""
    return kl_divergence(ref_logq, logq), -np.exp(ref_logq)


def kl_term_twin(
    batch: dict,
    *,
    estimator: str,
    placement: str = "loss",
    agg: str = "seq_sum",
    log_ratio_clamp: float | None = None,
    kl_clamp: float | None = None,
    is_level: str = "token",
    is_clamp: float | None = None,
    reward_to_go: bool = True,
    hand_backward: bool = False,
) -> TwinOut:
    """Exact twin of ``klsim_llm.estimators.kl_term`` (spec §2.1–2.2).

    Per-token term τ_t, aggregated as Σ a_t τ_t (:func:`agg_weights`):

    * loss placement: τ_t = k_t (``k1``, ``k2``, ``k3``, ``k3_rho`` = ρ·k3, ``k2_rho`` = ρ·k2,
      ``k3_st`` = k2 − sg(k2) + sg(k3), ``is_k1`` = sg(wδ)(1 + log π − sg log π) with w = min(ρ, c));
      ``rtg``: sg(δ_t) + (log π_t − sg)·sg(Σ_{s≥t} δ_s); ``fv_partial``: KL_t; ``fv_rtg``: KL_t + (log π_t
      − sg)·sg(Σ_{s>t} KL_s) [TM25];
    * reward placement: τ_t = sg(k_t) + (ρ_t − sg ρ_t)·sg(R_t), R_t = Σ_{s≥t} k_s (``reward_to_go``) or
      Σ_s k_s — the score-function gradient of −β·k_t added to the token rewards.

    ρ_t = exp(log π_t − log π_old,t) (token IS) or ρ̄ = exp(mean_t(log π − log π_old)) (``is_level="sequence"``,
    broadcast, differentiable).  ``hand_backward`` reproduces Liger's Triton backward β·ρ̄·δ_t: value ρ̄·k3,
    gradient ρ̄·δ_t per token.
    """
    lp, lr, lo, mask = batch["logp"], batch["ref_logp"], batch["old_logp"], batch["mask"]
    m = mask.astype(float)
    a = agg_weights(mask, agg)
    S, K, L = lp.shape
    delta, ddelta = _clamped(lp - lr, log_ratio_clamp)
    metrics: dict = {}
    if estimator in ("rtg", "fv_partial", "fv_rtg") and agg != "seq_sum":
        raise ValueError(f"agg: estimator {estimator!r} is a sequence-level estimator; use agg='seq_sum'")
    if is_level == "token":
        rho = np.exp(lp - lo)
        drho_diag = rho
    elif is_level == "sequence":
        n = np.maximum(m.sum(-1, keepdims=True), 1.0)
        rho = np.broadcast_to(np.exp(np.sum(m * (lp - lo), -1, keepdims=True) / n), lp.shape)
        drho_diag = None
    else:
        raise ValueError(f"is_level: must be 'token' or 'sequence', got {is_level!r}")
    dlogq = None
    if estimator in ("k1", "k2", "k3", "k3_rho", "k2_rho", "k3_st", "is_k1"):
        if estimator in ("k1", "is_k1"):
            k, dk = delta, ddelta
        elif estimator in ("k2", "k2_rho"):
            k, dk = 0.5 * delta**2, delta * ddelta
        else:
            k, dk = np.expm1(-delta) + delta, -np.expm1(-delta) * ddelta
        k, inside = _clamped(k, kl_clamp)
        dk = dk * inside
        metrics["clamp_frac"] = float(np.sum(m * (1 - ddelta * inside)) / max(m.sum(), 1.0))
        if estimator == "k3_st":  # gradient of the (clamped) k2
            dk = delta * ddelta * _clamped(0.5 * delta**2, kl_clamp)[1]
        value_tok = k
        if estimator in ("k3_rho", "k2_rho"):
            value_tok = rho * k
        if estimator == "is_k1":
            w = rho if is_clamp is None else np.minimum(rho, is_clamp)
            value_tok = w * k
    elif estimator == "rtg":
        value_tok, k = delta, delta
    elif estimator in ("fv_partial", "fv_rtg"):
        kl, dkl = _rkl_rows(batch["logq"], batch["ref_logq"])
        value_tok, k = kl, kl
    else:
        raise ValueError(f"estimator: unknown {estimator!r}; valid: {', '.join(ESTIMATORS)}")

    if placement == "reward":
        kd = value_tok * m
        R = _rev_cumsum(kd) if reward_to_go else np.broadcast_to(kd.sum(-1, keepdims=True), kd.shape)
        value = np.sum(a * value_tok, axis=(1, 2))
        if drho_diag is not None:
            dlogp = a * drho_diag * R
        else:
            n = np.maximum(m.sum(-1, keepdims=True), 1.0)
            dlogp = rho * m / n * np.sum(a * R, -1, keepdims=True)
        return TwinOut(value, dlogp * m, None, metrics)
    if placement != "loss":
        raise ValueError(f"placement: must be 'loss' or 'reward', got {placement!r}")

    value = np.sum(a * value_tok, axis=(1, 2))
    if estimator in ("k1", "k2", "k3", "k3_st"):
        dlogp = a * dk
    elif estimator == "is_k1":
        dlogp = a * value_tok
    elif estimator in ("k3_rho", "k2_rho"):
        if hand_backward:
            dlogp = a * rho * delta
        elif drho_diag is not None:
            dlogp = a * (rho * dk + drho_diag * k)
        else:
            n = np.maximum(m.sum(-1, keepdims=True), 1.0)
            dlogp = a * rho * dk + rho * m / n * np.sum(a * k * m, -1, keepdims=True)
    elif estimator == "rtg":
        dlogp = a * _rev_cumsum(delta * m)
    elif estimator == "fv_partial":
        dlogp = np.zeros_like(lp)
        dlogq = (a * m)[..., None] * dkl
    else:  # fv_rtg
        km = k * m
        dlogp = a * (_rev_cumsum(km) - km)
        dlogq = (a * m)[..., None] * dkl
    return TwinOut(value, dlogp * m, dlogq, metrics)


# --- full-vocabulary divergences (spec §3) -----------------------------------------------------------


def _alpha_rows(lp: np.ndarray, lq: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """D_α(p‖q) = (1 − Σ p^{1−α} q^α)/(α(1−α)) (f-DPO convention; α→0: KL(p‖q), α→1: KL(q‖p))."""
    if alpha == 0.0:
        return _rkl_rows(lp, lq)
    if alpha == 1.0:
        return _fkl_rows(lp, lq)
    t = np.exp((1 - alpha) * lp + alpha * lq)
    return (1.0 - t.sum(-1)) / (alpha * (1 - alpha)), -t / alpha


def divergence_rows(
    name: str,
    lp: np.ndarray,
    lq: np.ndarray,
    *,
    beta: float = 0.5,
    alpha: float = 0.5,
    tsallis_q: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row divergence D(p‖q) (p = policy) and ∂D/∂log p, for every §3 divergence.

    Returns (values (...,), derivative (..., V)).
    """
    if name == "rkl":
        return _rkl_rows(lp, lq)
    if name == "fkl":
        return _fkl_rows(lp, lq)
    if name in ("jsd_beta", "gkd_jsd"):
        if name == "gkd_jsd" and beta == 0.0:
            return _fkl_rows(lp, lq)
        if name == "gkd_jsd" and beta == 1.0:
            return _rkl_rows(lp, lq)
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta: must lie in (0, 1) for {name}, got {beta!r}")
        # β·KL(q‖m) + (1−β)·KL(p‖m), m = βq + (1−β)p  ==  klsim js_divergence(q, p, β)
        lm = np.logaddexp(np.log(beta) + lq, np.log1p(-beta) + lp)
        val = js_divergence(lq, lp, beta)
        return val, (1 - beta) * np.exp(lp) * (lp - lm)
    if name == "alpha":
        return _alpha_rows(lp, lq, alpha)
    if name == "chi2":
        val = np.expm1(logsumexp(2 * lp - lq))
        return val, 2 * np.exp(2 * lp - lq)
    if name == "tsallis":
        if tsallis_q == 1.0:
            return _rkl_rows(lp, lq)
        v, d = _alpha_rows(lp, lq, 1.0 - tsallis_q)
        return tsallis_q * v, tsallis_q * d
    raise ValueError(f"divergence: unknown {name!r}")


def divergence_twin(
    batch: dict,
    *,
    name: str,
    reduction: str = "sum",
    chunk_rows: int | None = None,
    chunk_vocab: int | None = None,
    temperature: float = 1.0,
    **param,
) -> TwinOut:
    """Twin of ``klsim_llm.divergences`` entries: Σ (or mean) over masked positions of D(π_t^T‖π_ref,t^T)
    between the tempered distributions softmax(log π/T) (``chunk_rows``/``chunk_vocab`` only change how torch
    computes it).  Chain rule: ∂/∂log π = (1/T)(G_T − π^T·ΣG_T)."""
    lq, rq, mask = batch["logq"], batch["ref_logq"], batch["mask"]
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature!r}")
    if temperature != 1.0:
        lq, rq = log_softmax(lq / temperature), log_softmax(rq / temperature)
    val, d = divergence_rows(name, lq, rq, **param)
    if temperature != 1.0:
        d = (d - np.exp(lq) * d.sum(-1, keepdims=True)) / temperature
    m = mask.astype(float)
    if reduction == "sum":
        w = m
    elif reduction == "token_mean":
        w = m / np.maximum(m.sum(axis=(1, 2), keepdims=True), 1.0)
    else:
        raise ValueError(f"reduction: must be 'sum' or 'token_mean', got {reduction!r}")
    return TwinOut(np.sum(w * val, axis=(1, 2)), np.zeros_like(m), w[..., None] * d)


# --- preference losses (spec §4) ------------------------------------------------------------------------


def _fprime_logit(s_w, s_l, divergence, alpha, beta, clamp):
    """f-DPO logit h = β(f′(u_w) − f′(u_l)) and ∂h/∂s_w, ∂h/∂s_l (u = e^s; s clamped at ±clamp)."""
    sw, iw = _clamped(s_w, clamp)
    sl, il = _clamped(s_l, clamp)
    if divergence == "rkl":
        return beta * (s_w - s_l), beta * np.ones_like(s_w), -beta * np.ones_like(s_l)
    if divergence == "fkl":
        return beta * (np.exp(-sl) - np.exp(-sw)), beta * np.exp(-sw) * iw, -beta * np.exp(-sl) * il
    if divergence == "js":
        lsw = -np.logaddexp(0.0, -s_w)
        lsl = -np.logaddexp(0.0, -s_l)
        return beta * (lsw - lsl), beta * _sigmoid(-s_w), -beta * _sigmoid(-s_l)
    if divergence == "alpha":
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha: must lie in (0, 1) for the alpha divergence, got {alpha!r}")
        ew, el = np.exp(-alpha * sw), np.exp(-alpha * sl)
        return beta / alpha * (el - ew), beta * ew * iw, -beta * el * il
    raise ValueError(f"divergence: must be rkl, fkl, js or alpha, got {divergence!r}")


def pref_twin(
    batch: dict,
    *,
    name: str,
    beta: float,
    divergence: str = "rkl",
    alpha: float = 0.5,
    eps: float = 0.5,
    base: str = "dpo",
    log_ratio_clamp: float = 80.0,
) -> TwinOut:
    """Twin of the preference losses (``dpo``, ``ipo``, ``ipo_lennorm``, ``fdpo``, ``is_daa``, ``hdpo``,
    ``tdpo1``, ``tdpo2``); rows 0 = chosen y_w, 1 = rejected y_l; value per pair (spec §4)."""
    if beta <= 0:
        raise ValueError(f"beta: must be > 0, got {beta!r}")
    lp, lr, mask = batch["logp"], batch["ref_logp"], batch["mask"].astype(float)
    s = np.sum(mask * (lp - lr), -1)  # (S, 2)
    n = np.maximum(mask.sum(-1), 1.0)
    sw, sl = s[:, 0], s[:, 1]
    S, K, L = lp.shape
    ds = np.zeros((S, 2))  # ∂ℓ/∂s_k, s_k = Σ_t m (log π − log π_ref)
    dlogp_extra = np.zeros((S, 2))  # ∂ℓ/∂(Σ_t m log π_k)  (H-DPO)
    dlogq = None
    if name in ("dpo", "is_daa") and (name == "dpo" or base == "dpo"):
        h = beta * (sw - sl)
        value = _softplus(-h)
        g = -_sigmoid(-h) * beta
        ds[:, 0], ds[:, 1] = g, -g
    elif name in ("ipo", "is_daa"):
        if name == "is_daa" and base != "ipo":
            raise ValueError(f"base: must be 'dpo' or 'ipo', got {base!r}")
        d = sw - sl - 1.0 / (2 * beta)
        value = d**2
        ds[:, 0], ds[:, 1] = 2 * d, -2 * d
    elif name == "ipo_lennorm":
        d = sw / n[:, 0] - sl / n[:, 1] - 1.0 / (2 * beta)
        value = d**2
        ds[:, 0], ds[:, 1] = 2 * d / n[:, 0], -2 * d / n[:, 1]
    elif name == "fdpo":
        h, dhw, dhl = _fprime_logit(sw, sl, divergence, alpha, beta, log_ratio_clamp)
        value = _softplus(-h)
        g = -_sigmoid(-h)
        ds[:, 0], ds[:, 1] = g * dhw, g * dhl
    elif name == "hdpo":
        lw, ll = np.sum(mask * lp, -1).T
        rw, rl = np.sum(mask * lr, -1).T
        h = beta * (alpha * lw - rw) - beta * (alpha * ll - rl)
        value = _softplus(-h)
        g = -_sigmoid(-h) * beta * alpha
        dlogp_extra[:, 0], dlogp_extra[:, 1] = g, -g
    elif name in ("tdpo1", "tdpo2"):
        kl, dkl = _fkl_rows(batch["logq"], batch["ref_logq"])
        D = np.sum(mask * kl, -1)  # (S, 2) sequential FKL
        coef = 1.0 if name == "tdpo1" else alpha
        h = beta * (sw - sl) - coef * beta * (D[:, 1] - D[:, 0])
        value = _softplus(-h)
        g = -_sigmoid(-h)
        ds[:, 0], ds[:, 1] = g * beta, -g * beta
        dD = np.stack([g * beta if name == "tdpo1" else np.zeros(S), -g * coef * beta], axis=1)
        dlogq = (dD[:, :, None] * mask)[..., None] * dkl
    else:
        raise ValueError(f"name: unknown preference loss {name!r}")
    if name == "is_daa":
        w = np.exp(np.minimum(sw + sl, 2 * eps))
        value, ds = w * value, w[:, None] * ds
    dlogp = (ds + dlogp_extra)[:, :, None] * mask
    return TwinOut(value, dlogp, dlogq)


# --- KL-regularized policy gradient (spec §5) ---------------------------------------------------------


def advantage_twin(rewards: np.ndarray, *, name: str, std_eps: float = 1e-4) -> np.ndarray:
    """Advantages (S, K) from rewards (S, K) (groups = the K rows of a sample).

    ``none``: R; ``rloo``: R_k − mean_{j≠k} R_j [RLOO]; ``group_mean``: R − mean R; ``grpo``:
    (R − mean R)/(std R + ε), std with Bessel's correction [GRPO].
    """
    R = np.asarray(rewards, float)
    K = R.shape[-1]
    if name == "none":
        return R.copy()
    if name == "rloo":
        if K < 2:
            raise ValueError("group_size: RLOO needs at least 2 samples per prompt")
        return R - (R.sum(-1, keepdims=True) - R) / (K - 1)
    if name == "group_mean":
        return R - R.mean(-1, keepdims=True)
    if name == "grpo":
        if K < 2:
            raise ValueError("group_size: GRPO's std needs at least 2 samples per prompt")
        return (R - R.mean(-1, keepdims=True)) / (R.std(-1, ddof=1, keepdims=True) + std_eps)
    raise ValueError(f"advantage: unknown {name!r}")


def _right_padded(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask).astype(np.int8)
    bad = np.argwhere(m[..., 1:] > m[..., :-1])
    if len(bad):
        raise ValueError(f"mask: must be right-padded (1…1 0…0 per row); row {tuple(bad[0, :-1])} is not")
    return m.astype(float)


def token_rewards_twin(rewards: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """r_t = R·1[t = last active token] per right-padded row; ``rewards`` (...,), ``mask`` (..., T)."""
    m = _right_padded(mask)
    n = m.sum(-1)
    t = np.arange(m.shape[-1])
    last = (t == (n[..., None] - 1)) & (m > 0)
    return np.where(last, np.asarray(rewards, float)[..., None], 0.0)


def gae_twin(
    rewards: np.ndarray, values: np.ndarray, mask: np.ndarray, *, gamma: float, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation [GAE, Schulman et al. arXiv:1506.02438, eq. 16] on right-padded rows.

    δ_t = r_t + γ·V_{t+1} − V_t (V = 0 after the last active token: terminal), Â_t = Σ_{l≥0} (γλ)^l δ_{t+l},
    returns R_t = Â_t + V_t; both 0 on padding.  Arrays (..., T).  Returns (Â, R).
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma, lam: must lie in [0, 1], got gamma={gamma!r}, lam={lam!r}")
    m = _right_padded(mask)
    r = np.where(m > 0, rewards, 0.0)
    v = np.where(m > 0, values, 0.0)
    v_next = np.concatenate([v[..., 1:], np.zeros_like(v[..., :1])], -1)
    delta = (r + gamma * v_next - v) * m
    adv = np.zeros_like(delta)
    run = np.zeros(delta.shape[:-1])
    for t in range(delta.shape[-1] - 1, -1, -1):
        run = delta[..., t] + (gamma * lam) * run
        adv[..., t] = run
    adv = adv * m
    return adv, (adv + v) * m


def value_loss_twin(
    values: np.ndarray,
    returns: np.ndarray,
    old_values: np.ndarray,
    weights: np.ndarray,
    value_clip: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Σ_t a_t·½·max((V−R)², (clip(V, V_old ± ε_v) − R)²) over the last two axes, and its derivative in V
    (a tie of the two branches takes the mean of both derivatives, as ``torch.maximum``); (S, K, L) arrays."""
    e1 = values - returns
    if value_clip is None:
        return np.sum(weights * 0.5 * e1**2, axis=(1, 2)), weights * e1
    d = values - old_values
    inside = (d >= -value_clip) & (d <= value_clip)
    e2 = old_values + np.clip(d, -value_clip, value_clip) - returns
    l1, l2 = e1**2, e2**2
    g2 = e2 * inside
    dv = np.where(l1 > l2, e1, np.where(l2 > l1, g2, 0.5 * (e1 + g2)))
    return np.sum(weights * 0.5 * np.maximum(l1, l2), axis=(1, 2)), weights * dv


def pg_twin(
    batch: dict,
    *,
    name: str,
    beta: float = 0.0,
    baseline: str = "none",
    kl_estimator: str = "k1",
    kl_placement: str = "reward",
    agg: str = "seq_sum",
    clip_eps: tuple[float, float] = (0.2, 0.2),
    gamma: float = 1.0,
    lam: float = 1.0,
    vf_coef: float = 0.1,
    value_clip: float | None = None,
    **kl_kwargs,
) -> TwinOut:
    """Twin of ``reinforce``/``rloo``/``grpo``/``ppo``: per-token τ_t = −ρ_t A_t (PPO: −min(ρA, clip(ρ)A)),
    A_t = adv(R) − β·Σ_{s≥t} sg(k_s) (KL in reward) or A = adv(R) plus β·kl_term (KL in loss).

    PPO with a critic (``batch["values"]`` (S, K, L) present, or γ, λ ≠ 1): A = GAE(γ, λ) (:func:`gae_twin`)
    of r_t = R·1[t = last] − β·k_t (KL in reward) with the rollout values ``batch["old_values"]`` (default
    ``values``; V = 0 without values), plus vf_coef·:func:`value_loss_twin` with targets Â + V_old; the
    derivative in the values is returned as ``TwinOut.dvalues``."""
    lp, lo, mask = batch["logp"], batch["old_logp"], batch["mask"]
    m = mask.astype(float)
    values = batch.get("values")
    use_gae = values is not None or gamma != 1.0 or lam != 1.0
    if use_gae and (name != "ppo" or baseline != "none"):
        raise ValueError(
            f"values, gamma, lam: GAE is for 'ppo' without a group baseline, got {name}/{baseline}"
        )
    A = 0.0 if use_gae else advantage_twin(batch["rewards"], name=baseline)[:, :, None] * np.ones_like(lp)
    value = np.zeros(lp.shape[0])
    dlogp = np.zeros_like(lp)
    dlogq = None
    kd = None
    if beta != 0.0:
        if kl_placement == "reward":  # −β·k_t in the token rewards: A_t ← A_t − β·Σ_{s≥t} sg(k_s)
            kd = _kvalues_detached(batch, kl_estimator, **kl_kwargs) * m
            if not use_gae:
                A = A - beta * _rev_cumsum(kd)
        else:
            kl = kl_term_twin(batch, estimator=kl_estimator, placement="loss", agg=agg, **kl_kwargs)
            value = value + beta * kl.value
            dlogp = dlogp + beta * kl.dlogp
            dlogq = None if kl.dlogq is None else beta * kl.dlogq
    a = agg_weights(mask, agg)
    dvalues = None
    if use_gae:
        r = token_rewards_twin(batch["rewards"], mask)
        if kd is not None:
            r = r - beta * kd
        v_roll = np.zeros_like(lp) if values is None else batch.get("old_values", values)
        A, ret = gae_twin(r, v_roll, mask, gamma=gamma, lam=lam)
        if values is not None:
            vl, dv = value_loss_twin(np.where(mask, values, 0.0), ret, v_roll, a, value_clip)
            value = value + vf_coef * vl
            dvalues = vf_coef * dv * m
    rho = np.exp(lp - lo)
    if name == "ppo":
        lo_c, hi_c = clip_eps
        rc = np.clip(rho, 1 - lo_c, 1 + hi_c)
        unclipped = rho * A <= rc * A
        tau = -np.where(unclipped, rho * A, rc * A)
        inside = (rho >= 1 - lo_c) & (rho <= 1 + hi_c)
        dtau = -np.where(unclipped | inside, rho * A, 0.0)
    else:
        tau = -rho * A
        dtau = -rho * A
    value = value + np.sum(a * tau, axis=(1, 2))
    dlogp = (dlogp + a * dtau) * m
    return TwinOut(value, dlogp, dlogq, dvalues=dvalues)


def _kvalues_detached(batch: dict, estimator: str, log_ratio_clamp=None, kl_clamp=None, **_) -> np.ndarray:
    delta, _d = _clamped(batch["logp"] - batch["ref_logp"], log_ratio_clamp)
    if estimator in ("k1", "rtg"):
        k = delta
    elif estimator == "k2":
        k = 0.5 * delta**2
    elif estimator == "k3":
        k = np.expm1(-delta) + delta
    else:
        raise ValueError(f"kl_estimator: {estimator!r} cannot be placed in the reward of a PG objective")
    return _clamped(k, kl_clamp)[0]


# --- Nash-MP, χ²-occupancy, best-of-N ------------------------------------------------------------------


def nash_mp_twin(batch: dict, *, beta: float, eta: float) -> TwinOut:
    """Twin of ``nash_mp`` [NashMP, Eq. LLM half step]: per sample y ~ π_θ,
    ℓ = −(1/β)(P̂(y≻y′) − ½)·Σ_t log π_t + rtg(δ_ref) + (1/η)·rtg(δ_anchor)."""
    if beta <= 0 or eta <= 0:
        raise ValueError(f"beta, eta: must be > 0, got beta={beta!r}, eta={eta!r}")
    lp, m = batch["logp"], batch["mask"].astype(float)
    pref = batch["preference"]  # (S, K)
    c = -(pref - 0.5) / beta
    d_ref = (lp - batch["ref_logp"]) * m
    d_anc = (lp - batch["anchor_logp"]) * m
    K = lp.shape[1]
    value = (np.sum(c * np.sum(m * lp, -1), -1) + np.sum(d_ref, (1, 2)) + np.sum(d_anc, (1, 2)) / eta) / K
    dlogp = (c[..., None] + _rev_cumsum(d_ref) + _rev_cumsum(d_anc) / eta) * m / K
    return TwinOut(value, dlogp)


def occupancy_chi2_twin(batch: dict, *, kl_coef: float, log_ratio_clamp: float = 20.0) -> TwinOut:
    """Twin of ``occupancy_chi2`` [Corr25]: ℓ = sg(−R + λ·pen(s))·(1 + Σ_t(log π_t − sg)) with
    pen(s) = e^s − 1, linearized beyond s = c: e^c(1 + s − c) − 1.  E[∇ℓ] = −∇E[R] + (λ/2)∇χ²_seq."""
    lp, lr, m = batch["logp"], batch["ref_logp"], batch["mask"].astype(float)
    s = np.sum(m * (lp - lr), -1)
    c = log_ratio_clamp
    pen = np.where(s <= c, np.expm1(np.minimum(s, c)), np.exp(c) * (1 + s - c) - 1)
    adv = -batch["rewards"] + kl_coef * pen  # (S, K)
    K = lp.shape[1]
    return TwinOut(adv.sum(-1) / K, (adv[..., None] * m) / K)


def bon_log_law(ref_logp_seq: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """log π_N(y) of best-of-N with uniform tie-breaking over a finite support [BoN, BOND].

    π_N(y) = π_ref(y)·(p_≤^N − p_<^N)/(p_≤ − p_<), p_≤ = P_ref[r(y′) ≤ r(y)], p_< strict, p_≤ − p_< the
    tie mass; computed by sorting the rewards and accumulating log-masses level by level (no 1 − cumsum).
    """
    lr = np.asarray(ref_logp_seq, float)
    r = np.asarray(rewards, float)
    levels, inv = np.unique(r, return_inverse=True)
    log_tie = np.array([logsumexp(lr[inv == i]) for i in range(len(levels))])
    log_le = np.logaddexp.accumulate(log_tie)
    log_lt = np.concatenate([[-np.inf], log_le[:-1]])
    a, b = log_le[inv], log_lt[inv]
    return lr + n * a + np.log(-np.expm1(n * (b - a))) - log_tie[inv]


def bon_distill_twin(batch: dict, *, n: int, divergence: str = "fkl") -> TwinOut:
    """Twin of ``bon_distill``: the K rows of a sample are the whole support; target π_N (:func:`bon_log_law`).

    ``fkl``: Σ_y π_N(y)(log π_N(y) − log π_θ(y)) (SFT on best-of-N samples); ``rkl``: Σ_y π_θ(y)(log π_θ(y)
    − log π_N(y)) (the KL-RL objective at β = 1/(N−1) with r_BOND, up to a constant).
    """
    lp, lr, m = batch["logp"], batch["ref_logp"], batch["mask"].astype(float)
    sp = np.sum(m * lp, -1)
    sr = np.sum(m * lr, -1)
    S = lp.shape[0]
    value = np.zeros(S)
    dseq = np.zeros_like(sp)
    for i in range(S):
        lN = bon_log_law(sr[i], batch["rewards"][i], n)
        pN = np.exp(lN)
        if divergence == "fkl":
            value[i] = np.sum(pN * (lN - sp[i]))
            dseq[i] = -pN
        elif divergence == "rkl":
            pt = np.exp(sp[i])
            value[i] = np.sum(pt * (sp[i] - lN))
            dseq[i] = pt * (sp[i] - lN + 1.0)
        else:
            raise ValueError(f"divergence: must be 'fkl' or 'rkl', got {divergence!r}")
    return TwinOut(value, dseq[..., None] * m)


# --- framework presets (spec §2.3) ----------------------------------------------------------------------

PRESET_SPECS: dict[str, dict] = {
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
"""The KL term of each framework setting (spec §2.3), as keyword arguments of :func:`kl_term_twin`.
``trl_nash_md`` pairs each token with its own log-ratio: Σ_t sg(δ_t)·log π_t (no future terms)."""


def preset_twin(batch: dict, *, preset: str) -> TwinOut:
    """Twin of a ``PRESETS`` entry (the KL surrogate before the factor β)."""
    spec = dict(PRESET_SPECS[preset])
    if spec.pop("per_token_pairing", False):
        lp, lr, m = batch["logp"], batch["ref_logp"], batch["mask"].astype(float)
        K = lp.shape[1]
        d = (lp - lr) * m
        return TwinOut(np.sum(d, (1, 2)) / K, d / K)
    return kl_term_twin(batch, **spec)


def _twins() -> dict[str, dict]:
    t: dict[str, dict] = {
        "kl_estimators": {},
        "divergences": {},
        "objectives": {},
        "advantages": {},
        "presets": {},
    }
    for e in ESTIMATORS:
        t["kl_estimators"][e] = partial(kl_term_twin, estimator=e)
    for d in ("rkl", "fkl", "jsd_beta", "gkd_jsd", "alpha", "chi2", "tsallis"):
        t["divergences"][d] = partial(divergence_twin, name=d)
    for p in ("dpo", "ipo", "ipo_lennorm", "fdpo", "is_daa", "hdpo", "tdpo1", "tdpo2"):
        t["objectives"][p] = partial(pref_twin, name=p)
    t["objectives"]["reinforce"] = partial(pg_twin, name="reinforce", baseline="none")
    t["objectives"]["rloo"] = partial(pg_twin, name="rloo", baseline="rloo")
    t["objectives"]["grpo"] = partial(pg_twin, name="grpo", baseline="grpo")
    t["objectives"]["ppo"] = partial(pg_twin, name="ppo")
    t["objectives"]["nash_mp"] = nash_mp_twin
    t["objectives"]["occupancy_chi2"] = occupancy_chi2_twin
    t["objectives"]["bon_distill"] = bon_distill_twin
    for a in ("none", "rloo", "group_mean", "grpo"):
        t["advantages"][a] = partial(advantage_twin, name=a)
    for p in PRESET_SPECS:
        t["presets"][p] = partial(preset_twin, preset=p)
    return t


TWINS: dict[str, dict] = _twins()
"""``TWINS[registry][name]`` is the numpy twin of ``klsim_llm.registry.<REGISTRY>[name]``."""
