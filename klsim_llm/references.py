"""Reference-model strategies (spec ``llm-bridge.md`` §6) and drift accounting.

Registry :data:`REFERENCES` maps a mode name (``ReferenceConfig.mode``) to its strategy class.  Every
strategy exposes

- ``logprobs(input_ids, attention_mask, start, *, temperature, return_logits, keys)`` -> ``TokenLogProbs``
  or ``None`` (mode ``none``: the KL metrics are then omitted, not logged as 0);
- ``after_step(policy, step, kl) -> dict`` applying its update rule (EMA, reset, sync) and returning flags
  (``{"reset_optimizer": True}`` for ProRL resets);
- ``state_dict()`` / ``load_state_dict()`` for exact resume;
- ``model`` (a forward-only module, or ``None``) used by the drift probe.

Weight-space rules (pure functions, float64-exact on CPU, tested against their formulas):

- :func:`ema_update`: θ_ema ← (1−μ)θ_ema + μθ  [WARP, arXiv:2406.16768];
- :func:`slerp_task_vectors`: θ_init + [sin((1−λ)Ω)δ_1 + sin(λΩ)δ_2]/sin Ω, δ_m = θ_m − θ_init [WARP];
- :func:`liti`: θ_init ← (1−η)θ_init + η·θ_slerp  [WARP];
- :func:`interpolate`: θ_ref ← αθ + (1−α)θ_ref  [TR-DPO, arXiv:2404.09656];
- :func:`soup`: mean of K checkpoints  [SALSA, arXiv:2411.01798].

:class:`DriftTracker` logs KL(π_θ‖π_init) on a fixed probe set from stored π_init log-probs (full
vocabulary, summed over response positions, averaged over probe sequences) and the cumulative
Σ_k KL(π_ref^{(k+1)}‖π_ref^{(k)}) on the same probe every time the reference moves.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from klsim_llm.logprobs import TokenLogProbs, bf16_autocast, token_logprobs

__all__ = [
    "REFERENCES",
    "ReferenceStrategy",
    "NoReference",
    "FrozenCopy",
    "AdapterDisabled",
    "Precomputed",
    "TRSync",
    "EMAAnchor",
    "ElasticReset",
    "SoupReference",
    "HardReset",
    "DriftTracker",
    "ema_update",
    "interpolate",
    "slerp_task_vectors",
    "liti",
    "soup",
    "full_vocab_kl",
    "make_reference",
]


# ---------------------------------------------------------------------------------------------------------
# weight-space rules (pure; dicts name -> tensor)
# ---------------------------------------------------------------------------------------------------------

StateDict = dict[str, torch.Tensor]


def _float_items(sd: StateDict) -> Iterable[str]:
    return (k for k, v in sd.items() if torch.is_floating_point(v))


def ema_update(ema: StateDict, theta: StateDict, mu: float) -> StateDict:
    """θ_ema ← (1−μ)·θ_ema + μ·θ for every floating entry (in place; returns ``ema``) [WARP Eq. EMA]."""
    with torch.no_grad():
        for k in _float_items(ema):
            ema[k].mul_(1.0 - mu).add_(theta[k].to(ema[k].dtype), alpha=mu)
    return ema


def interpolate(ref: StateDict, theta: StateDict, alpha: float) -> StateDict:
    """θ_ref ← α·θ + (1−α)·θ_ref (in place) [TR-DPO soft update, arXiv:2404.09656]."""
    return ema_update(ref, theta, alpha)


def slerp_task_vectors(init: StateDict, theta_1: StateDict, theta_2: StateDict, lam: float) -> StateDict:
    """Spherical interpolation of the task vectors δ_m = θ_m − θ_init, per tensor [WARP, arXiv:2406.16768].

    θ_slerp = θ_init + [sin((1−λ)Ω)·δ_1 + sin(λΩ)·δ_2] / sin Ω,  Ω = arccos(⟨δ_1, δ_2⟩ / (‖δ_1‖‖δ_2‖)).
    Falls back to linear interpolation when Ω is ~0 or a task vector is 0.
    """
    out = {}
    for k, v in init.items():
        if not torch.is_floating_point(v):
            out[k] = v.clone()
            continue
        d1 = (theta_1[k] - v).double()
        d2 = (theta_2[k] - v).double()
        n1, n2 = d1.norm(), d2.norm()
        if n1 == 0 or n2 == 0:
            d = (1 - lam) * d1 + lam * d2
        else:
            cos = (d1 * d2).sum() / (n1 * n2)
            omega = torch.arccos(cos.clamp(-1.0, 1.0))
            if float(omega) < 1e-7:
                d = (1 - lam) * d1 + lam * d2
            else:
                d = (torch.sin((1 - lam) * omega) * d1 + torch.sin(lam * omega) * d2) / torch.sin(omega)
        out[k] = (v.double() + d).to(v.dtype)
    return out


def liti(init: StateDict, theta_slerp: StateDict, eta: float) -> StateDict:
    """LITI: θ_init ← (1−η)·θ_init + η·θ_slerp (returns a new dict) [WARP, arXiv:2406.16768]."""
    out = {k: v.clone() for k, v in init.items()}
    return ema_update(out, theta_slerp, eta)


def soup(state_dicts: list[StateDict]) -> StateDict:
    """Uniform average of K state dicts (non-float entries from the first) [SALSA, arXiv:2411.01798]."""
    if len(state_dicts) < 1:
        raise ValueError("soup: need at least one state dict")
    keys = set(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], 1):
        if set(sd) != keys:
            raise ValueError(f"soup: state dict {i} has different keys from state dict 0")
    out = {}
    for k, v in state_dicts[0].items():
        if torch.is_floating_point(v):
            acc = torch.zeros_like(v, dtype=torch.float64)
            for sd in state_dicts:
                acc += sd[k].double()
            out[k] = (acc / len(state_dicts)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def _sd(model: nn.Module) -> StateDict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _load(model: nn.Module, sd: StateDict) -> None:
    with torch.no_grad():
        own = model.state_dict()
        for k, v in sd.items():
            own[k].copy_(v)


def full_vocab_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t mask_t · KL(softmax(p_t) ‖ softmax(q_t)) per row, in log space; (B, T, V) -> (B,)."""
    lp = torch.log_softmax(logits_p.double(), -1)
    lq = torch.log_softmax(logits_q.double(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    return (kl * mask.double()).sum(-1)


# ---------------------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------------------


def _merged(model: nn.Module) -> nn.Module:
    """A PEFT model with its adapter merged into the base weights (a copy); other models unchanged (copy)."""
    m = copy.deepcopy(model)
    return m.merge_and_unload() if hasattr(m, "merge_and_unload") else m


def _frozen(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class ReferenceStrategy:
    """Base class (see the module docstring)."""

    name = "base"
    moving = False

    def __init__(
        self, cfg, policy: nn.Module, *, row_chunk: int = 0, autocast: bool | str | None = None
    ) -> None:
        self.cfg = cfg
        self.row_chunk = row_chunk
        self.autocast = autocast
        self.model: nn.Module | None = None
        self.moved = False  # set when after_step changed the reference (drift accounting)

    def _ctx(self):
        return bf16_autocast(self.autocast)

    @torch.no_grad()
    def logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        start: int,
        *,
        temperature: float = 1.0,
        return_logits: bool = False,
        keys: list[int] | None = None,
    ) -> TokenLogProbs | None:
        with self._ctx():
            return token_logprobs(
                self.model,
                input_ids,
                attention_mask,
                start,
                temperature=temperature,
                row_chunk=self.row_chunk,
                checkpoint=False,
                return_logits=return_logits,
            )

    def after_step(self, policy: nn.Module, step: int, kl: float | None = None) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"model": _sd(self.model)} if self.model is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.model is not None and "model" in state:
            _load(self.model, state["model"])


class NoReference(ReferenceStrategy):
    """β = 0: nothing is loaded; ``logprobs`` returns ``None`` and KL metrics are omitted."""

    name = "none"

    def logprobs(self, *a, **k) -> None:  # type: ignore[override]
        return None


class FrozenCopy(ReferenceStrategy):
    """A no-grad copy of the initial policy, forward only.

    Under PEFT with ``ema_space='merged_delta'`` the copy is the merged model (base + BA) and weight-space
    updates of moving subclasses average merged weights; with ``'factors'`` they average the LoRA
    factors (A, B) themselves (spec §6: these differ)."""

    name = "frozen_copy"

    def __init__(self, cfg, policy, **kw) -> None:
        super().__init__(cfg, policy, **kw)
        self.merged = getattr(cfg, "ema_space", None) == "merged_delta" and hasattr(
            policy, "merge_and_unload"
        )
        self.model = _frozen(_merged(policy) if self.merged else policy)

    def policy_state(self, policy: nn.Module) -> StateDict:
        """The policy's weights in the reference's space (merged under ``merged_delta``)."""
        return _merged(policy).state_dict() if self.merged else policy.state_dict()


class PerRollout(FrozenCopy):
    """Frozen reference whose log-probs are computed once per generation batch and reused across PPO epochs.

    (The trainer computes reference log-probs once per rollout batch for every strategy; this name makes
    the schedule explicit.)
    """

    name = "per_rollout"


class AdapterDisabled(ReferenceStrategy):
    """PEFT: the policy's base with its adapters switched off (no second copy of the weights)."""

    name = "adapter_disabled"

    def __init__(self, cfg, policy, **kw) -> None:
        super().__init__(cfg, policy, **kw)
        if not hasattr(policy, "disable_adapter"):
            raise ValueError("reference.mode='adapter_disabled' needs a peft.PeftModel policy")
        self.model = policy

    @torch.no_grad()
    def logprobs(self, *args, **kw):
        with self.model.disable_adapter():
            return super().logprobs(*args, **kw)

    def state_dict(self) -> dict:
        return {}


class Precomputed(ReferenceStrategy):
    """One offline pass stores reference sequence log-probs of a fixed data set, then the model is dropped.

    ``precompute(batches)`` takes an iterable of ``(keys, input_ids, attention_mask, start)``; later
    ``logprobs(..., keys=...)`` looks the stored per-token log-probs up (``ValueError`` for unknown keys).
    """

    name = "precomputed"

    def __init__(self, cfg, policy, **kw) -> None:
        super().__init__(cfg, policy, **kw)
        self.model = _frozen(policy)
        self.table: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def precompute(self, batches: Iterable[tuple]) -> None:
        """``batches``: ``(keys, input_ids, attention_mask, start, response_mask)``; stores each row's
        response log-probs (unpadded)."""
        for keys, ids, mask, start, rmask in batches:
            out = super().logprobs(ids, mask, start)
            for i, k in enumerate(keys):
                n = int(rmask[i].sum())
                self.table[int(k)] = out.logp[i, :n].detach().clone()
        self.model = None  # drop the reference model

    def logprobs(self, input_ids, attention_mask, start, *, temperature=1.0, return_logits=False, keys=None):
        if return_logits:
            raise ValueError(
                "precomputed reference log-probs hold no full distributions (TDPO / SparsePO need them)"
            )
        if temperature != 1.0:
            raise ValueError("precomputed reference log-probs are stored at temperature 1")
        if keys is None:
            raise ValueError("precomputed reference: pass the data-set keys of the batch")
        missing = [k for k in keys if int(k) not in self.table]
        if missing:
            raise ValueError(f"precomputed reference: no stored log-probs for key {missing[0]}")
        T = input_ids.shape[1] - start
        logp = torch.zeros((len(keys), T), dtype=next(iter(self.table.values())).dtype)
        for i, k in enumerate(keys):
            v = self.table[int(k)]
            logp[i, : len(v)] = v
        logp = logp.to(input_ids.device)
        return TokenLogProbs(logp, torch.zeros_like(logp), None)

    def state_dict(self) -> dict:
        return {"table": {k: v.clone() for k, v in self.table.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.table = {int(k): v.clone() for k, v in state.get("table", {}).items()}


class TRSync(FrozenCopy):
    """Every τ steps θ_ref ← αθ + (1−α)θ_ref [TR-DPO, arXiv:2404.09656]."""

    name = "tr_sync"
    moving = True

    def after_step(self, policy, step, kl=None):
        if self.cfg.update_every and step % self.cfg.update_every == 0:
            sd = _sd(self.model)
            interpolate(sd, self.policy_state(policy), self.cfg.tr_alpha)
            _load(self.model, sd)
            self.moved = True
            return {"ref_updated": 1}
        return {}


class EMAAnchor(FrozenCopy):
    """EMA anchor as the KL reference [WARP, arXiv:2406.16768]: θ_ema ← (1−μ)θ_ema + μθ every step.

    With ``update_every > 0`` and ``liti_eta > 0`` a WARP iteration ends every ``update_every`` steps:
    θ_init ← (1−η)θ_init + η·θ_merge, where θ_merge = SLERP(θ, θ_ema; λ) if ``slerp_lambda`` is set, else θ;
    then the policy and the anchor restart from the new θ_init.
    """

    name = "ema"
    moving = True

    def __init__(self, cfg, policy, **kw) -> None:
        super().__init__(cfg, policy, **kw)
        self.init = _sd(policy)

    def after_step(self, policy, step, kl=None):
        sd = _sd(self.model)
        ema_update(sd, self.policy_state(policy), self.cfg.ema_rate)
        _load(self.model, sd)
        self.moved = True
        out = {}
        if self.merged and self.cfg.liti_eta > 0:
            raise ValueError(
                "LITI under PEFT merged_delta is not supported (it would rewrite the base weights)"
            )
        if self.cfg.update_every and self.cfg.liti_eta > 0 and step % self.cfg.update_every == 0:
            theta = _sd(policy)
            merged = theta
            if self.cfg.slerp_lambda is not None:
                merged = slerp_task_vectors(self.init, theta, sd, self.cfg.slerp_lambda)
            self.init = liti(self.init, merged, self.cfg.liti_eta)
            _load(policy, self.init)
            _load(self.model, self.init)
            out = {"liti": 1}
        return out

    def state_dict(self) -> dict:
        return {"model": _sd(self.model), "init": {k: v.clone() for k, v in self.init.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.init = {k: v.clone() for k, v in state["init"].items()}


class ElasticReset(FrozenCopy):
    """Elastic Reset [ER, arXiv:2312.07551]: KL toward the frozen initial model; an EMA of the policy is
    kept (rate μ) and every n steps θ ← θ_ema, then θ_ema ← θ_init."""

    name = "elastic_reset"

    def __init__(self, cfg, policy, **kw) -> None:
        super().__init__(cfg, policy, **kw)
        self.init = _sd(policy)
        self.ema = _sd(policy)

    def after_step(self, policy, step, kl=None):
        ema_update(self.ema, policy.state_dict(), self.cfg.ema_rate)
        if self.cfg.update_every and step % self.cfg.update_every == 0:
            _load(policy, self.ema)
            self.ema = {k: v.clone() for k, v in self.init.items()}
            return {"elastic_reset": 1}
        return {}

    def state_dict(self) -> dict:
        return {"model": _sd(self.model), "ema": {k: v.clone() for k, v in self.ema.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ema = {k: v.clone() for k, v in state["ema"].items()}


class SoupReference(ReferenceStrategy):
    """θ_ref = mean of K independently fine-tuned checkpoints (local folders) [SALSA, arXiv:2411.01798]."""

    name = "soup"

    def __init__(self, cfg, policy, **kw) -> None:
        super().__init__(cfg, policy, **kw)
        from transformers import AutoModelForCausalLM

        sds = []
        for path in cfg.soup_checkpoints:
            m = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, dtype=next(policy.parameters()).dtype
            )
            sds.append(_sd(m))
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        self.model = _frozen(base)
        _load(self.model, soup(sds))


class HardReset(FrozenCopy):
    """ProRL-style hard reset [ProRL, arXiv:2505.24864]: π_ref ← snapshot of π_θ and the optimizer is
    re-initialized every ``update_every`` steps, or when the batch KL exceeds ``hard_reset_kl``."""

    name = "hard_reset"
    moving = True

    def after_step(self, policy, step, kl=None):
        due = bool(self.cfg.update_every) and step % self.cfg.update_every == 0
        trig = self.cfg.hard_reset_kl is not None and kl is not None and kl > self.cfg.hard_reset_kl
        if due or trig:
            _load(self.model, self.policy_state(policy))
            self.moved = True
            return {"hard_reset": 1, "reset_optimizer": True}
        return {}


REFERENCES: dict[str, type] = {
    "none": NoReference,
    "frozen_copy": FrozenCopy,
    "adapter_disabled": AdapterDisabled,
    "precomputed": Precomputed,
    "per_rollout": PerRollout,
    "tr_sync": TRSync,
    "ema": EMAAnchor,
    "elastic_reset": ElasticReset,
    "soup": SoupReference,
    "hard_reset": HardReset,
}
"""Reference mode name -> strategy class (spec §6)."""


def make_reference(cfg, policy: nn.Module, **kw) -> ReferenceStrategy:
    """Instantiate ``REFERENCES[cfg.mode]`` (``KeyError`` with the valid names for unknown modes)."""
    from klsim_llm.registry import get

    return get(cfg.mode, REFERENCES)(cfg, policy, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# drift
# ---------------------------------------------------------------------------------------------------------


class DriftTracker:
    """KL(π_θ‖π_init) on fixed probe sequences, and the cumulative reference drift (spec §6).

    Parameters
    ----------
    input_ids, attention_mask : Tensor (P, L)
        Probe sequences (prompt + response), response from column ``start``.
    response_mask : Tensor (P, T)
    init_model : the initial policy (its logits are stored once; under PEFT the adapter-disabled base)
    """

    def __init__(
        self, input_ids, attention_mask, start, response_mask, init_model: nn.Module, *, row_chunk=0
    ):
        self.ids, self.mask, self.start, self.rmask = input_ids, attention_mask, start, response_mask.double()
        self.row_chunk = row_chunk
        self.init_logits = self._logits(init_model)
        self.ref_logits: torch.Tensor | None = None
        self.cum_ref_drift = 0.0

    @torch.no_grad()
    def _logits(self, model: nn.Module) -> torch.Tensor:
        out = token_logprobs(
            model,
            self.ids,
            self.mask,
            self.start,
            row_chunk=self.row_chunk,
            checkpoint=False,
            return_logits=True,
        )
        return out.logits.detach()  # model dtype, at least float32

    @torch.no_grad()
    def kl_to_init(self, policy: nn.Module) -> float:
        """Mean over probes of Σ_t KL(π_θ(·|y_<t) ‖ π_init(·|y_<t))."""
        return float(full_vocab_kl(self._logits(policy), self.init_logits, self.rmask).mean())

    @torch.no_grad()
    def observe_reference(self, ref_model: nn.Module | None, moved: bool) -> float:
        """Record the reference; when it moved add KL(π_ref^{new} ‖ π_ref^{old}) to the cumulative drift."""
        if ref_model is None:
            return self.cum_ref_drift
        new = self._logits(ref_model)
        if self.ref_logits is not None and moved:
            self.cum_ref_drift += float(full_vocab_kl(new, self.ref_logits, self.rmask).mean())
        self.ref_logits = new
        return self.cum_ref_drift

    def state_dict(self) -> dict:
        return {
            "cum_ref_drift": self.cum_ref_drift,
            "ref_logits": self.ref_logits,
            "init_logits": self.init_logits,
        }

    def load_state_dict(self, state: dict) -> None:
        self.cum_ref_drift = float(state["cum_ref_drift"])
        self.ref_logits = state["ref_logits"]
        self.init_logits = state["init_logits"]
