"""Name → function registries of klsim_llm (spec ``llm-bridge.md`` §8).

Every entry is an :class:`Entry` ``(name, fn, twin, family, paper, formula)``:

* ``fn`` is a pure torch function returning ``(loss, metrics)`` (``metrics``: dict of detached scalars);
* ``twin`` is the dotted name of its exact numpy twin in :mod:`klsim.sequence` (``klsim.sequence.TWINS``);
  the parity test (``tests/llm/test_parity.py``) loops over every entry and fails on a missing twin.

Registries: :data:`OBJECTIVES`, :data:`KL_ESTIMATORS`, :data:`DIVERGENCES`, :data:`ADVANTAGES`,
:data:`PRESETS`.  :func:`get` raises ``KeyError`` listing the valid names with a close-match hint.

Tensor conventions (all loss functions, keyword arguments)
----------------------------------------------------------
``B`` sequences (rows), ``T`` response positions, ``V`` vocabulary.

* ``logp`` (B, T): log π_θ(y_t | x, y_<t) of the sampled tokens (differentiable).
* ``ref_logp`` (B, T): log π_ref of the same tokens (detached inside).
* ``old_logp`` (B, T) or ``None``: log π_old of the sampler; ``None`` means on-policy (old = sg(logp),
  so ρ = 1 in value and still differentiable).
* ``mask`` (B, T) bool or {0, 1}: response tokens; padded positions change nothing.
* ``rewards`` (B,): sequence rewards.
* ``logits`` / ``ref_logits`` (B, T, V): next-token logits aligned with ``logp`` (full-vocabulary entries).
* ``group_size`` G: consecutive rows ``[g*G, (g+1)*G)`` form the group of one prompt (B divisible by G).

Keyword arguments per family
----------------------------
``kl`` (:data:`KL_ESTIMATORS`, ``klsim_llm.estimators``)
    ``fn(logp, ref_logp, mask, *, old_logp=None, logits=None, ref_logits=None, placement="loss",
    agg="seq_sum", log_ratio_clamp=None, kl_clamp=None, is_level="token", is_clamp=None,
    reward_to_go=True, hand_backward=False)``.
    ``placement="loss"`` returns agg(k_t); ``placement="reward"`` returns the score-function surrogate
    Σ_t log π_t · sg(Σ_{s≥t} k_s) (k detached, as when −β·k_t is added to the token rewards).
    ``logits``/``ref_logits`` are required by ``fv_partial`` / ``fv_rtg``.  The caller multiplies by β.
``div`` (:data:`DIVERGENCES`, ``klsim_llm.divergences``)
    ``fn(logits, ref_logits, mask=None, *, reduction="sum", chunk_rows=None, chunk_vocab=None, **param)`` with ``param`` = ``beta`` (``jsd_beta``, ``gkd_jsd``), ``alpha``
    (``alpha``), ``tsallis_q`` (``tsallis``).  ``logits`` (…, V) are the policy's (differentiable),
    ``ref_logits`` the reference's (no gradient).  D(p‖q) with p = softmax(logits), q = softmax(ref_logits).
``pref`` (:data:`OBJECTIVES`: ``dpo``, ``ipo``, ``ipo_lennorm``, ``fdpo``, ``is_daa``, ``hdpo``, ``tdpo1``, ``tdpo2``)
    ``fn(logp_w, ref_logp_w, mask_w, logp_l, ref_logp_l, mask_l, *, beta, ...)``; extra keywords:
    ``fdpo``: ``divergence ∈ {rkl, fkl, js, alpha}``, ``alpha``; ``is_daa``: ``eps``, ``data_logp_w``,
    ``data_logp_l`` (default ref), ``base ∈ {dpo, ipo}``; ``hdpo``: ``alpha``; ``tdpo1``/``tdpo2``:
    ``logits_w, ref_logits_w, logits_l, ref_logits_l`` (B, T, V) and ``alpha`` (``tdpo2``).
    The loss is the mean over the B pairs.
``pg`` (:data:`OBJECTIVES`: ``reinforce``, ``rloo``, ``grpo``, ``ppo``)
    ``fn(logp, ref_logp, mask, rewards, *, old_logp=None, group_size=1, beta=0.0, kl_estimator="k1",
    kl_placement="reward", agg="seq_sum", baseline=None, clip_eps=(0.2, 0.2), **kl_kwargs)``;
    ``baseline`` ∈ {none, rloo, group_mean, grpo} (default per objective: reinforce/ppo none, rloo rloo,
    grpo grpo = mean/std); ``kl_kwargs`` go to ``kl_term`` (clamps, ``is_level``).  Loss = ``agg`` of the
    per-token surrogate (plus β·KL term when ``kl_placement="loss"``).
    ``ppo`` also takes ``values`` (B, T) (the critic's V(x, y_<t), differentiable), ``old_values`` (B, T)
    (rollout values; ``None``: sg(values)), ``gamma``, ``lam`` (GAE, default 1, 1), ``vf_coef`` (0.1) and
    ``value_clip`` (None); with ``values`` or γ, λ ≠ 1 the advantage is GAE(γ, λ) of the per-token rewards
    and ``vf_coef``·½·max((V−R)², (clip(V, V_old ± ε_v)−R)²) (``agg``-aggregated) is added.
``nash`` (:data:`OBJECTIVES`: ``nash_mp``)
    ``fn(logp, ref_logp, anchor_logp, mask, preference, *, beta, eta)``; ``preference`` (B,) = P̂(y ≻ y').
``occupancy`` (:data:`OBJECTIVES`: ``occupancy_chi2``)
    ``fn(logp, ref_logp, mask, rewards, *, kl_coef, log_ratio_clamp=20.0)``.
``bon`` (:data:`OBJECTIVES`: ``bon_distill``)
    ``fn(logp, ref_logp, mask, rewards, *, n, divergence="fkl")``; the B rows are the candidate set of one
    prompt (exact when it enumerates the support).
``adv`` (:data:`ADVANTAGES`)
    ``fn(rewards, *, group_size) -> (advantages (B,), metrics)``.
``preset`` (:data:`PRESETS`)
    ``fn(logp, ref_logp, mask, *, old_logp=None) -> (kl_surrogate, metrics)``: the KL term exactly as that
    framework setting computes it (spec §2.3), to be multiplied by β.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Entry",
    "OBJECTIVES",
    "KL_ESTIMATORS",
    "DIVERGENCES",
    "ADVANTAGES",
    "PRESETS",
    "REGISTRIES",
    "get",
]


@dataclass(frozen=True)
class Entry:
    """One named objective.

    Attributes
    ----------
    name : str
    fn : callable
        Pure torch function ``fn(**tensors, **params) -> (loss, metrics)``.
    twin : str or None
        Dotted name of the exact numpy twin (``klsim.sequence.<function>``); ``None`` fails the parity test.
    family : str
        ``kl``, ``div``, ``pref``, ``pg``, ``nash``, ``occupancy``, ``bon``, ``adv``, ``preset``.
    paper : str
        Citation key and arXiv id.
    formula : str
        The formula in the notation of ``docs/llm.md``.
    """

    name: str
    fn: Callable
    twin: str | None
    family: str
    paper: str
    formula: str

    def resolve_twin(self) -> Callable:
        """Import and return the numpy twin (raises ``LookupError`` if the entry has none)."""
        if self.twin is None:
            raise LookupError(f"registry entry {self.name!r} has no klsim twin")
        import importlib
        import re

        m = re.fullmatch(r"([\w.]+)\['(\w+)'\]\['(\w+)'\]", self.twin)
        if m:
            mod, _, attr = m.group(1).rpartition(".")
            return getattr(importlib.import_module(mod), attr)[m.group(2)][m.group(3)]
        mod, _, attr = self.twin.rpartition(".")
        return getattr(importlib.import_module(mod), attr)


OBJECTIVES: dict[str, Entry] = {}
KL_ESTIMATORS: dict[str, Entry] = {}
DIVERGENCES: dict[str, Entry] = {}
ADVANTAGES: dict[str, Entry] = {}
PRESETS: dict[str, Entry] = {}

REGISTRIES: dict[str, dict[str, Entry]] = {
    "objectives": OBJECTIVES,
    "kl_estimators": KL_ESTIMATORS,
    "divergences": DIVERGENCES,
    "advantages": ADVANTAGES,
    "presets": PRESETS,
}


def get(name: str, registry: dict[str, Entry] | None = None) -> Entry:
    """Look ``name`` up in ``registry`` (default :data:`OBJECTIVES`).

    Raises
    ------
    KeyError
        Unknown name; the message lists the valid names and the closest match (``difflib``).
    """
    reg = OBJECTIVES if registry is None else registry
    if name in reg:
        return reg[name]
    valid = sorted(reg)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown name {name!r}.{hint} Valid names: {', '.join(valid)}")


def _add(
    reg: dict[str, Entry], name: str, fn: Callable, twin: str | None, family: str, paper: str, formula: str
) -> None:
    if name in reg:
        raise ValueError(f"duplicate registry entry {name!r}")
    reg[name] = Entry(name, fn, twin, family, paper, formula)


_S = "klsim.sequence.TWINS"

_PAPERS = {
    "k1": "[Sch20] Schulman 2020 note",
    "k2": "[Sch20]",
    "k3": "[Sch20]",
    "k3_rho": "[DSV32] arXiv:2512.02556 Eq. 7",
    "k2_rho": "[TM25] arXiv:2506.09477",
    "k3_st": "verl PR #2953",
    "is_k1": "OpenRLHF PR #1309",
    "rtg": "[TM25] arXiv:2506.09477",
    "fv_partial": "[TM25] arXiv:2506.09477",
    "fv_rtg": "[TM25] arXiv:2506.09477",
}
_FORMULAS = {
    "k1": "δ",
    "k2": "δ²/2",
    "k3": "e^{−δ}+δ−1",
    "k3_rho": "ρ·k3 (ρ differentiable)",
    "k2_rho": "ρ·k2",
    "k3_st": "k2 − sg(k2) + sg(k3)",
    "is_k1": "value w·δ, gradient sg(w)·δ, w = min(ρ, c)",
    "rtg": "Σ_t log π_t·sg(Σ_{s≥t} δ_s)",
    "fv_partial": "Σ_t KL_t(y_<t)",
    "fv_rtg": "Σ_t [KL_t + log π_t·sg(Σ_{s>t} KL_s)]",
}
_DIV_FORMULAS = {
    "rkl": "Σ p(ℓp−ℓq)",
    "fkl": "Σ q(ℓq−ℓp)",
    "jsd_beta": "β·KL(q‖m)+(1−β)·KL(p‖m), m=βq+(1−β)p",
    "gkd_jsd": "jsd_beta; β=0 ↦ FKL, β=1 ↦ RKL",
    "alpha": "(1 − Σ p^{1−α}q^α)/(α(1−α))",
    "chi2": "Σ p²/q − 1",
    "tsallis": "(Σ p^κ q^{1−κ} − 1)/(κ−1)",
}
_DIV_PAPERS = {
    "rkl": "[Sch20]",
    "fkl": "[Sch20]",
    "jsd_beta": "GKD, Agarwal et al. arXiv:2306.13649",
    "gkd_jsd": "TRL GKD / Liger JSD",
    "alpha": "[fDPO] arXiv:2309.16240",
    "chi2": "[Corr25] arXiv:2403.03185",
    "tsallis": "Tsallis 1988; [fDPO]",
}
_PREF = {
    "dpo": ("[DPO] arXiv:2305.18290", "−log σ(βΔ)"),
    "ipo": ("[IPO] arXiv:2310.12036", "(Δ − 1/(2β))²"),
    "ipo_lennorm": ("[IPO] as in TRL", "(s_w/|y_w| − s_l/|y_l| − 1/(2β))²"),
    "fdpo": ("[fDPO] arXiv:2309.16240", "−log σ(β f′(u_w) − β f′(u_l))"),
    "is_daa": ("[ISDAA] arXiv:2506.08681", "sg(w)·ℓ_DAA, w = exp(min(s_w + s_l, 2ε))"),
    "hdpo": (
        "[HDPO] arXiv:2411.07595",
        "−log σ(β[α log π(y_w) − log π_ref(y_w)] − β[α log π(y_l) − log π_ref(y_l)])",
    ),
    "tdpo1": ("[TDPO] arXiv:2404.11999", "−log σ(βΔ − [βD(y_l) − βD(y_w)]), D = Σ_t KL(π_ref,t‖π_t)"),
    "tdpo2": ("[TDPO] arXiv:2404.11999", "−log σ(βΔ − α[βD(y_l) − sg(βD(y_w))])"),
}
_PG = {
    "reinforce": ("Williams 1992; [Zie19] arXiv:1909.08593", "−Σ_t ρ_t (R − β Σ_{s≥t} sg(k_s))"),
    "rloo": ("[RLOO] arXiv:2402.14740", "−Σ_t ρ_t (R − mean_{j≠i} R_j − β Σ_{s≥t} sg(k_s))"),
    "grpo": ("[GRPO] arXiv:2402.03300", "−Σ_t ρ_t ((R − mean R)/(std R + ε)) [+ β·KL term]"),
    "ppo": (
        "[PPO] arXiv:1707.06347; [GAE] arXiv:1506.02438",
        "−min(ρA, clip(ρ, 1−ε, 1+ε)A), A = GAE(γ, λ) (MC: γ = λ = 1, V = 0) [+ c₁·L^VF] [+ KL in reward or loss]",
    ),
}
_PRESET_PAPERS = {
    "trl_grpo": "TRL GRPOTrainer (β>0, use_bias_correction_kl=False)",
    "verl_kl_loss": "verl low_var_kl loss",
    "liger_grpo": "Liger GRPO loss",
    "trl_grpo_bc": "TRL PR #6503 (token IS)",
    "trl_grpo_bc_seq": "TRL #6586",
    "liger_grpo_triton_seq": "Liger Triton GRPO backward",
    "verl_k3_plus": "verl PR #2953",
    "openrlhf_k2_loss": "OpenRLHF k2 loss (ProRL v2)",
    "openrlhf_k1_loss": "OpenRLHF k1 loss",
    "openrlhf_unbiased": "OpenRLHF PR #1309",
    "trl_rloo": "TRL RLOOTrainer",
    "verl_kl_in_reward": "verl kl",
    "openrlhf_default": "OpenRLHF default",
    "trl_ppo_k1": "TRL PPO kl_estimator=k1",
    "trl_ppo_k3": "TRL PPO kl_estimator=k3",
    "verl_reward_low_var_kl": "verl in-reward low_var_kl",
    "trl_nash_md": "TRL NashMDTrainer",
    "library_rtg": "[TM25]",
    "library_fv_rtg": "[TM25]",
}


def _populate() -> None:
    from functools import partial

    from klsim_llm import divergences as dv
    from klsim_llm import estimators as es
    from klsim_llm import objectives as ob

    for name in es.ESTIMATORS:
        _add(
            KL_ESTIMATORS,
            name,
            partial(es.kl_term, estimator=name),
            f"{_S}['kl_estimators']['{name}']",
            "kl",
            _PAPERS[name],
            _FORMULAS[name],
        )
    for name in dv.DIVERGENCE_NAMES:
        _add(
            DIVERGENCES,
            name,
            partial(dv.divergence_loss, name=name),
            f"{_S}['divergences']['{name}']",
            "div",
            _DIV_PAPERS[name],
            _DIV_FORMULAS[name],
        )
    for name, (paper, formula) in _PREF.items():
        _add(
            OBJECTIVES,
            name,
            partial(ob.pref_loss, name=name),
            f"{_S}['objectives']['{name}']",
            "pref",
            paper,
            formula,
        )
    for name, (paper, formula) in _PG.items():
        _add(
            OBJECTIVES,
            name,
            partial(ob.pg_loss, name=name),
            f"{_S}['objectives']['{name}']",
            "pg",
            paper,
            formula,
        )
    _add(
        OBJECTIVES,
        "nash_mp",
        ob.nash_mp_loss,
        f"{_S}['objectives']['nash_mp']",
        "nash",
        "[NashMP] arXiv:2505.19731v1",
        "−(1/β)(P̂(y≻y′) − ½)·log π(y) + rtg KL(π‖π_ref) + (1/η)·rtg KL(π‖π_θk)",
    )
    _add(
        OBJECTIVES,
        "occupancy_chi2",
        ob.occupancy_chi2_loss,
        f"{_S}['objectives']['occupancy_chi2']",
        "occupancy",
        "[Corr25] arXiv:2403.03185",
        "sg(−R + λ(e^{s} − 1))·Σ_t log π_t  (E∇ = −∇E[R] + (λ/2)∇χ²)",
    )
    _add(
        OBJECTIVES,
        "bon_distill",
        ob.bon_distill_loss,
        f"{_S}['objectives']['bon_distill']",
        "bon",
        "[BoN] arXiv:2401.01879; [BOND] arXiv:2407.14622",
        "KL(π_N‖π_θ) or KL(π_θ‖π_N), π_N exact BoN law",
    )
    for name, formula in (
        ("none", "R"),
        ("rloo", "R − mean_{j≠i} R_j"),
        ("group_mean", "R − mean R"),
        ("grpo", "(R − mean R)/(std R + ε)"),
    ):
        _add(
            ADVANTAGES,
            name,
            partial(ob.advantages, name=name),
            f"{_S}['advantages']['{name}']",
            "adv",
            {"rloo": "[RLOO] arXiv:2402.14740", "grpo": "[GRPO] arXiv:2402.03300"}.get(name, "—"),
            formula,
        )
    for name, spec in ob.PRESETS.items():
        _add(
            PRESETS,
            name,
            partial(ob.preset_kl, preset=name),
            f"{_S}['presets']['{name}']",
            "preset",
            _PRESET_PAPERS[name],
            ", ".join(f"{k}={v}" for k, v in spec.items()),
        )


_populate()
