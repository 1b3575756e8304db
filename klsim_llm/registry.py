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
    agg="seq_sum", log_ratio_clamp=None, kl_clamp=None, is_level="token", is_clamp=None)``.
    ``placement="loss"`` returns agg(k_t); ``placement="reward"`` returns the score-function surrogate
    Σ_t log π_t · sg(Σ_{s≥t} k_s) (k detached, as when −β·k_t is added to the token rewards).
    ``logits``/``ref_logits`` are required by ``fv_partial`` / ``fv_rtg``.  The caller multiplies by β.
``div`` (:data:`DIVERGENCES`, ``klsim_llm.divergences``)
    ``fn(logits, ref_logits, mask=None, *, reduction="sum", chunk_rows=None, chunk_vocab=None,
    temperature=1.0, **param)`` with ``param`` = ``beta`` (``jsd_beta``, ``gkd_jsd``), ``alpha``
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
    kl_placement="reward", agg="seq_sum", normalize="none", clip_eps=(0.2, 0.2))``.
    Loss = mean over rows of the per-row surrogate.
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
