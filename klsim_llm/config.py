"""Dataclass configurations of the LLM trainer, one per method, with YAML/JSON/CLI loading.

Every field carries ``metadata={"help": "... [paper, arXiv id]"}`` giving the paper symbol and the source
(spec ``llm-bridge.md`` §8).  ``__post_init__`` validates each dataclass on its own, and
:class:`TrainConfig` validates the combinations that only make sense together (spec §8):

- f-DPO with a loss that is not difference-based raises (TRL #6441, #6559);
- KL both in the reward and in the loss raises unless ``kl.allow_double_kl`` (verl #265);
- a moving reference (``ema``, ``tr_sync``, ``hard_reset``) with ``beta == 0`` raises;
- ``beta > 0`` without a reference source (``reference.mode == "none"``) raises (Liger ``ref=None``);
- precomputed reference log-probs with TDPO / SparsePO (which need full reference distributions) raise;
- a moving reference under PEFT needs an explicit ``reference.ema_space``.

Loading: :func:`load_config` (YAML or JSON file), :func:`config_from_dict`, :func:`apply_overrides`
(``key.sub=value`` strings from the command line), :func:`config_to_dict` / :func:`dump_config`
(round-trip: ``config_from_dict(config_to_dict(c)) == c``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ModelConfig",
    "KLConfig",
    "ReferenceConfig",
    "ChunkConfig",
    "DistConfig",
    "LogConfig",
    "RolloutConfig",
    "OptimConfig",
    "TaskConfig",
    "PGConfig",
    "PPOConfig",
    "DPOConfig",
    "FDPOConfig",
    "NashMPConfig",
    "BoNDistillConfig",
    "OccupancyChi2Config",
    "TrainConfig",
    "METHOD_CONFIGS",
    "MOVING_REFERENCES",
    "DIFFERENCE_LOSSES",
    "load_config",
    "dump_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "field_help",
]


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help text (``metadata["help"]``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _choice(name: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        more = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}{more}")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _at_least(name: str, value: int, lo: int) -> None:
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")


def _unit(name: str, value: float, *, open_left: bool = False, open_right: bool = False) -> None:
    lo_ok = value > 0 if open_left else value >= 0
    hi_ok = value < 1 if open_right else value <= 1
    if not (lo_ok and hi_ok):
        raise ValueError(
            f"{name} must lie in {'(' if open_left else '['}0, 1{')' if open_right else ']'}, got {value!r}"
        )


# ---------------------------------------------------------------------------------------------------------
# shared sections
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Which model to train: a local ``from_pretrained`` folder or an architecture built from a config."""

    name_or_path: str | None = _f(
        None, "local folder for AutoModelForCausalLM.from_pretrained (no hub access)"
    )
    from_config: dict | None = _f(
        None,
        "architecture kwargs for AutoConfig.for_model(model_type, **kw) + from_config (tiny models, tests)",
    )
    tokenizer: str | None = _f(
        None, "local tokenizer folder; default: name_or_path, or the task's built-in WordLevel tokenizer"
    )
    dtype: str = _f("float32", "parameter dtype on CPU: float32 or float64 (bf16 autocast is used on GPU)")
    autocast_bf16: bool = _f(
        True, "bf16 autocast for forward passes when CUDA is available (log-softmax in fp32)"
    )
    autocast_bf16_cpu: bool = _f(
        False,
        "run forward passes under torch.autocast('cpu', bfloat16) — for testing the bf16 path without a "
        "GPU (needs dtype float32; log-softmax in fp32)",
    )
    peft_lora_r: int = _f(0, "LoRA rank r; 0 trains all weights [Hu et al., LoRA, arXiv:2106.09685]")
    peft_lora_alpha: float = _f(16.0, "LoRA scaling alpha [LoRA, arXiv:2106.09685]")
    peft_target_modules: list = _f([], "module names LoRA wraps; empty: peft's default for the architecture")

    def __post_init__(self) -> None:
        if (self.name_or_path is None) == (self.from_config is None):
            raise ValueError("model: give exactly one of model.name_or_path or model.from_config")
        if self.from_config is not None and "model_type" not in self.from_config:
            raise ValueError("model.from_config must contain 'model_type' (e.g. 'llama', 'gpt2')")
        _choice("model.dtype", self.dtype, ("float32", "float64"))
        if self.autocast_bf16_cpu and self.dtype != "float32":
            raise ValueError(
                f"model.autocast_bf16_cpu=true needs model.dtype='float32' (autocast leaves {self.dtype} "
                "tensors uncast), got model.dtype={self.dtype!r}"
            )
        _at_least("model.peft_lora_r", self.peft_lora_r, 0)


@dataclass
class KLConfig:
    """The KL regularizer toward the reference: coefficient, estimator, placement, aggregation."""

    beta: float = _f(0.05, "beta: KL coefficient of E[R] - beta*KL(pi||pi_ref) [Zie19, arXiv:1909.08593]")
    estimator: str = _f(
        "rtg",
        "KL estimator name in KL_ESTIMATORS (k1, k2, k3, k3_rho, rtg, fv_rtg, ...) [Sch20; TM25, arXiv:2506.09477]",
    )
    placement: str = _f("loss", "where the KL enters: loss, reward, or both (both needs allow_double_kl)")
    allow_double_kl: bool = _f(False, "allow KL in reward AND loss (counted twice; verl #265)")
    aggregation: str = _f(
        "seq_sum",
        "token aggregation (spec §2.2): seq_sum (true sequence KL), token_mean (global token mean, beta/mean "
        "length), seq_mean_token_mean (beta/|y_i|), seq_sum_over_maxlen [Liu25, arXiv:2510.01555]",
    )
    kl_temperature: str = _f(
        "unit", "KL between unit-temperature distributions (unit) or tempered ones as TRL/verl (sampling)"
    )
    clamp_log_ratio: float | None = _f(None, "clamp |delta| (verl uses 20); saturation is logged")
    adaptive: bool = _f(False, "adaptive beta controller [Zie19, arXiv:1909.08593]")
    target_kl: float = _f(6.0, "KL_target of the adaptive controller [Zie19]")
    horizon: int = _f(10000, "horizon of the adaptive controller [Zie19]")

    def __post_init__(self) -> None:
        _positive("kl.beta", self.beta, allow_zero=True)
        _choice("kl.placement", self.placement, ("loss", "reward", "both"))
        if self.placement == "both" and not self.allow_double_kl:
            raise ValueError(
                "kl.placement='both' puts the KL in the reward and in the loss (counted twice, verl #265); "
                "set kl.allow_double_kl=true if this is intended"
            )
        _choice(
            "kl.aggregation",
            self.aggregation,
            ("seq_sum", "token_mean", "seq_mean_token_mean", "seq_sum_over_maxlen"),
        )
        _choice("kl.kl_temperature", self.kl_temperature, ("unit", "sampling"))
        if self.clamp_log_ratio is not None:
            _positive("kl.clamp_log_ratio", self.clamp_log_ratio)
        _positive("kl.target_kl", self.target_kl)
        _positive("kl.horizon", self.horizon)


MOVING_REFERENCES = ("tr_sync", "ema", "hard_reset")
REFERENCE_MODES = (
    "none",
    "frozen_copy",
    "adapter_disabled",
    "precomputed",
    "per_rollout",
    "soup",
    "elastic_reset",
    *MOVING_REFERENCES,
)


@dataclass
class ReferenceConfig:
    """Reference-model management (spec §6, registry ``REFERENCES``)."""

    mode: str = _f("frozen_copy", f"reference strategy, one of {list(REFERENCE_MODES)}")
    update_every: int = _f(
        0, "n / tau: steps between reference updates (elastic_reset, tr_sync, hard_reset); 0 = never"
    )
    ema_rate: float = _f(
        0.01, "mu: EMA rate theta_ema <- (1-mu) theta_ema + mu theta [WARP, arXiv:2406.16768]"
    )
    tr_alpha: float = _f(
        0.5, "alpha: theta_ref <- alpha theta + (1-alpha) theta_ref [TR-DPO, arXiv:2404.09656]"
    )
    slerp_lambda: float | None = _f(None, "lambda of SLERP between task vectors; None: no SLERP [WARP]")
    liti_eta: float = _f(0.0, "eta: theta_init <- (1-eta) theta_init + eta theta_slerp (LITI) [WARP]")
    soup_checkpoints: list = _f(
        [], "K checkpoint folders averaged into the reference [SALSA, arXiv:2411.01798]"
    )
    hard_reset_kl: float | None = _f(
        None, "trigger a hard reset when KL(pi||pi_ref) exceeds this [ProRL, arXiv:2505.24864]"
    )
    ema_space: str | None = _f(None, "under PEFT: average LoRA 'factors' or the 'merged_delta' BA")
    adapter_name: str = _f("ref", "name of the reference adapter when re-training an adapter (PEFT)")
    probe_size: int = _f(8, "number of fixed probe sequences for drift KL(pi||pi_init) (spec §6)")
    drift_every: int = _f(1, "steps between drift evaluations on the probe set (0 = never; spec §6)")

    def __post_init__(self) -> None:
        _choice("reference.mode", self.mode, REFERENCE_MODES)
        _at_least("reference.update_every", self.update_every, 0)
        _unit("reference.ema_rate", self.ema_rate, open_left=True)
        _unit("reference.tr_alpha", self.tr_alpha, open_left=True)
        if self.slerp_lambda is not None:
            _unit("reference.slerp_lambda", self.slerp_lambda)
        _unit("reference.liti_eta", self.liti_eta)
        if self.ema_space is not None:
            _choice("reference.ema_space", self.ema_space, ("factors", "merged_delta"))
        if self.mode == "soup" and len(self.soup_checkpoints) < 2:
            raise ValueError("reference.mode='soup' needs >= 2 reference.soup_checkpoints [SALSA]")
        if self.mode in ("tr_sync", "elastic_reset") and self.update_every == 0:
            raise ValueError(f"reference.mode={self.mode!r} needs reference.update_every > 0")
        if self.mode == "hard_reset" and self.update_every == 0 and self.hard_reset_kl is None:
            raise ValueError("reference.mode='hard_reset' needs update_every > 0 or hard_reset_kl")
        _at_least("reference.drift_every", self.drift_every, 0)
        _at_least("reference.probe_size", self.probe_size, 1)


@dataclass
class ChunkConfig:
    """Chunked log-prob gathering (spec §3, §7)."""

    row_chunk: int = _f(0, "rows (tokens) per lm_head chunk; 0 = automatic next_pow2(ceil(N / ceil(V/H)))")
    checkpoint_chunks: bool = _f(True, "recompute chunk logits in backward so [N, V] is never stored")

    def __post_init__(self) -> None:
        _at_least("chunk.row_chunk", self.row_chunk, 0)


@dataclass
class DistConfig:
    """Distributed execution on an existing engine (torchrun / accelerate launch; spec §7)."""

    strategy: str = _f("ddp", "ddp or fsdp (FSDP2 fully_shard) when WORLD_SIZE > 1")
    backend: str = _f("auto", "process-group backend: auto (nccl on GPU, gloo on CPU), gloo, nccl")
    grad_accum: int = _f(1, "gradient-accumulation micro-batches per optimizer step (TRL #2623)")

    def __post_init__(self) -> None:
        _choice("dist.strategy", self.strategy, ("ddp", "fsdp"))
        _choice("dist.backend", self.backend, ("auto", "gloo", "nccl"))
        _at_least("dist.grad_accum", self.grad_accum, 1)


@dataclass
class LogConfig:
    """Output folder, JSONL logging, progress bar and checkpoints."""

    out_dir: str = _f("runs/klsim_llm", "folder for metrics.jsonl, checkpoints and the final model")
    progress: bool = _f(True, "tqdm progress bar (rank 0)")
    checkpoint_every: int = _f(0, "steps between checkpoints; 0 = only at the end")
    keep_checkpoints: int = _f(2, "how many checkpoints to keep")

    def __post_init__(self) -> None:
        _at_least("log.checkpoint_every", self.checkpoint_every, 0)
        _at_least("log.keep_checkpoints", self.keep_checkpoints, 1)


@dataclass
class RolloutConfig:
    """Generation of responses."""

    temperature: float = _f(1.0, "sampling temperature T (recorded in the log)")
    max_new_tokens: int = _f(8, "maximum response length")
    prompts_per_step: int = _f(4, "prompts per optimizer step (global, over all ranks)")
    group_size: int = _f(4, "G: responses per prompt [GRPO, arXiv:2402.03300; RLOO, arXiv:2402.14740]")
    stop_at_eos: bool = _f(True, "stop a response at the tokenizer's EOS token")

    def __post_init__(self) -> None:
        _positive("rollout.temperature", self.temperature)
        for k in ("max_new_tokens", "prompts_per_step", "group_size"):
            _at_least(f"rollout.{k}", getattr(self, k), 1)


@dataclass
class OptimConfig:
    """Optimizer and schedule."""

    optimizer: str = _f("adamw", "adamw, adam or sgd")
    lr: float = _f(1e-3, "learning rate")
    weight_decay: float = _f(0.0, "decoupled weight decay (adamw)")
    betas: list = _f([0.9, 0.999], "Adam (beta1, beta2) [Kingma & Ba, Adam, arXiv:1412.6980]")
    eps: float = _f(1e-8, "Adam epsilon [arXiv:1412.6980]")
    grad_clip: float = _f(0.0, "clip the global grad norm to this; 0 = no clipping (the norm is logged)")
    scheduler: str = _f("constant", "constant, linear or cosine decay to 0 over the run")
    warmup_steps: int = _f(0, "linear warm-up steps")
    fused: str = _f(
        "auto",
        "Adam/AdamW fused kernel (torch.optim fused=True): auto = on unless FSDP, on, off; "
        "about 5x faster optimizer steps on CPU, equal to the per-tensor loop to ~1e-16",
    )

    def __post_init__(self) -> None:
        _choice("optim.optimizer", self.optimizer, ("adamw", "adam", "sgd"))
        _choice("optim.fused", self.fused, ("auto", "on", "off"))
        _positive("optim.lr", self.lr)
        _positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _positive("optim.grad_clip", self.grad_clip, allow_zero=True)
        _choice("optim.scheduler", self.scheduler, ("constant", "linear", "cosine"))
        if len(self.betas) != 2:
            raise ValueError(f"optim.betas must have 2 entries, got {self.betas}")


@dataclass
class TaskConfig:
    """Prompts, rewards or preferences: a built-in synthetic task or user callables."""

    name: str = _f(
        "bandit",
        "task in klsim_llm.rollout.TASKS: prompts (a prompt file + reward callable), or a synthetic one",
    )
    kwargs: dict = _f({}, "keyword arguments of the task constructor")
    reward: str | None = _f(
        None, "'module:function' reward callable (prompts, responses) -> rewards; overrides"
    )
    reward_model: str | None = _f(None, "local folder of an AutoModelForSequenceClassification reward model")
    preference: str | None = _f(None, "'module:function' preference P(y > y' | x) in [0, 1] (Nash-MP)")

    def __post_init__(self) -> None:
        if self.reward is not None and self.reward_model is not None:
            raise ValueError("task: give at most one of task.reward and task.reward_model")
        if (
            self.name == "prompts"
            and self.reward is None
            and self.reward_model is None
            and self.preference is None
        ):
            raise ValueError("task.name='prompts' needs task.reward, task.reward_model or task.preference")


# ---------------------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PGConfig:
    """KL-regularized policy gradient with a group baseline (REINFORCE / RLOO / GRPO)."""

    objective: str = _f(
        "rloo",
        "registry objective: reinforce (b = 0), rloo (leave-one-out b) [RLOO, arXiv:2402.14740] or grpo "
        "(group mean and std) [GRPO, arXiv:2402.03300]",
    )
    baseline: str | None = _f(
        None,
        "override the objective's advantage: none, rloo, group_mean, grpo (std-normalized; rescales beta)",
    )

    def __post_init__(self) -> None:
        _choice("pg.objective", self.objective, ("reinforce", "rloo", "grpo"))
        if self.baseline is not None:
            _choice("pg.baseline", self.baseline, ("none", "rloo", "group_mean", "grpo"))


@dataclass
class PPOConfig:
    """PPO with a KL penalty and GAE [PPO, arXiv:1707.06347]."""

    objective: str = _f("ppo", "registry name of the objective [PPO, arXiv:1707.06347]")
    clip_low: float = _f(0.2, "epsilon_lo of clip(rho, 1-eps_lo, 1+eps_hi) [PPO, arXiv:1707.06347]")
    clip_high: float = _f(0.2, "epsilon_hi of the clip [PPO; DAPO clip-higher, arXiv:2503.14476]")
    epochs: int = _f(2, "optimization epochs per rollout batch (off-policy after the first) [PPO]")
    gae_gamma: float = _f(
        1.0,
        "gamma: discount of GAE, delta_t = r_t + gamma V_{t+1} - V_t [GAE, Schulman et al., arXiv:1506.02438]",
    )
    gae_lambda: float = _f(
        1.0,
        "lambda of GAE, A_t = sum_l (gamma lambda)^l delta_{t+l} (eq. 16); lambda < 1 needs a critic "
        "[GAE, arXiv:1506.02438]",
    )
    baseline: str | None = _f(None, "advantage without a critic: none (default), rloo, group_mean, grpo")
    critic: str = _f(
        "none",
        "none: Monte-Carlo returns (V = 0); value_head: V_phi = Linear(hidden, 1) on the policy's last hidden "
        "state, trained jointly through the registry loss [PPO, arXiv:1707.06347 eq. 9]",
    )
    vf_coef: float = _f(0.1, "c_1: value-loss coefficient of L^CLIP - c_1 L^VF [PPO, arXiv:1707.06347 eq. 9]")
    value_clip: float | None = _f(
        0.2,
        "epsilon_v: clip V to V_old +- epsilon_v in 0.5 max((V-R)^2, (clip(V)-R)^2) (OpenAI baselines ppo2; "
        "[PPO, arXiv:1707.06347]); null: unclipped 0.5 (V-R)^2",
    )

    def __post_init__(self) -> None:
        _choice("ppo.objective", self.objective, ("ppo",))
        _positive("ppo.clip_low", self.clip_low)
        _positive("ppo.clip_high", self.clip_high)
        if self.clip_low >= 1:
            raise ValueError(f"ppo.clip_low must be < 1, got {self.clip_low}")
        _at_least("ppo.epochs", self.epochs, 1)
        _unit("ppo.gae_gamma", self.gae_gamma)
        _unit("ppo.gae_lambda", self.gae_lambda)
        _choice("ppo.critic", self.critic, ("none", "value_head"))
        if self.critic == "none" and self.gae_lambda != 1.0:
            raise ValueError(
                "ppo: without a critic (ppo.critic='none') PPO uses Monte-Carlo returns; gae_lambda < 1 "
                f"bootstraps from V, set ppo.critic='value_head' (got gae_lambda={self.gae_lambda})"
            )
        if self.baseline is not None:
            _choice("ppo.baseline", self.baseline, ("none", "rloo", "group_mean", "grpo"))
            if self.baseline != "none" and (self.critic != "none" or self.gae_gamma != 1.0):
                raise ValueError(
                    f"ppo.baseline={self.baseline!r} is a group baseline of Monte-Carlo returns; with a critic "
                    "or gae_gamma < 1 the baseline is V (leave ppo.baseline unset)"
                )
        _positive("ppo.vf_coef", self.vf_coef, allow_zero=True)
        if self.value_clip is not None:
            _positive("ppo.value_clip", self.value_clip)


PREFERENCE_LOSSES = (
    "dpo",
    "ipo",
    "ipo_lennorm",
    "fdpo",
    "is_daa",
    "hdpo",
    "tdpo1",
    "tdpo2",
)  # SparsePO: not in the registry yet
DIFFERENCE_LOSSES = ("sigmoid", "hinge", "ipo", "robust", "exo_pair")
NON_DIFFERENCE_LOSSES = ("bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down", "discopop")


@dataclass
class DPOConfig:
    """DPO family on a preference data set [DPO, arXiv:2305.18290] (spec §4)."""

    objective: str = _f("dpo", f"registry name of the preference loss, one of {list(PREFERENCE_LOSSES)}")
    loss_type: str = _f(
        "sigmoid", "link applied to the margin (TRL loss_type); f-DPO needs a difference-based one [fDPO]"
    )
    alpha: float = _f(
        1.0, "alpha of H-DPO (alpha*log pi) [HDPO, arXiv:2411.07595] / TDPO2 [TDPO, arXiv:2404.11999]"
    )
    f_divergence: str = _f("rkl", "f of f-DPO: rkl, fkl, js, alpha [fDPO, arXiv:2309.16240]")
    f_alpha: float = _f(
        0.5, "alpha of the alpha-divergence, paper convention (TRL's alpha' = 1 - alpha) [fDPO]"
    )
    is_epsilon: float = _f(0.5, "epsilon of the IS-DAA clamp exp(min(., 2 eps)) [ISDAA, arXiv:2506.08681]")
    batch_size: int = _f(8, "preference pairs per optimizer step (global)")

    def __post_init__(self) -> None:
        _choice("dpo.objective", self.objective, PREFERENCE_LOSSES)
        _choice("dpo.loss_type", self.loss_type, DIFFERENCE_LOSSES + NON_DIFFERENCE_LOSSES)
        if self.objective == "fdpo" or self.f_divergence != "rkl":
            if self.loss_type not in DIFFERENCE_LOSSES:
                raise ValueError(
                    f"f-DPO (f_divergence={self.f_divergence!r}) is only valid with a difference-based loss "
                    f"{list(DIFFERENCE_LOSSES)}, got dpo.loss_type={self.loss_type!r}: beta*log Z(x) cancels "
                    "only in differences (TRL #6441, #6559) [fDPO, arXiv:2309.16240]"
                )
        _choice("dpo.f_divergence", self.f_divergence, ("rkl", "fkl", "js", "alpha"))
        _unit("dpo.f_alpha", self.f_alpha, open_left=True, open_right=True)
        _positive("dpo.alpha", self.alpha)
        _positive("dpo.is_epsilon", self.is_epsilon)
        _at_least("dpo.batch_size", self.batch_size, 1)


@dataclass
class FDPOConfig(DPOConfig):
    """f-DPO: DPO with an f-divergence [fDPO, arXiv:2309.16240]."""

    objective: str = _f("fdpo", "registry name (fdpo) [fDPO, arXiv:2309.16240]")
    f_divergence: str = _f("fkl", "f: rkl, fkl, js, alpha [fDPO, arXiv:2309.16240]")


@dataclass
class NashMPConfig:
    """Nash Mirror Prox on a preference function [NashMP, arXiv:2505.19731v1] (spec §5)."""

    objective: str = _f("nash_mp", "registry name of the prox loss [NashMP, arXiv:2505.19731v1]")
    eta: float = _f(1.0, "eta: mirror-prox step size [NashMP, arXiv:2505.19731v1]")
    inner_steps: int = _f(20, "M: optimizer steps per half step (prox solved approximately) [NashMP]")
    restore_optimizer: bool = _f(True, "restore theta_k and the optimizer state before the full step [EGPO]")
    ema_target: str = _f(
        "none", "where an EMA enters: anchor, opponent or none (library convention) [NashMP]"
    )

    def __post_init__(self) -> None:
        _choice("nash_mp.objective", self.objective, ("nash_mp",))
        _positive("nash_mp.eta", self.eta)
        _at_least("nash_mp.inner_steps", self.inner_steps, 1)
        _choice("nash_mp.ema_target", self.ema_target, ("anchor", "opponent", "none"))


@dataclass
class BoNDistillConfig:
    """Best-of-N distillation (BOND) [BoN, arXiv:2401.01879; BOND, arXiv:2407.14622]."""

    objective: str = _f("bon_distill", "registry name [BOND, arXiv:2407.14622]")
    n: int = _f(4, "N of best-of-N; pi_N is the KL-RL optimum at beta = 1/(N-1) [BOND]")
    divergence: str = _f("fkl", "fkl (SFT on BoN samples) or rkl (pg with r_BOND) [BOND, arXiv:2407.14622]")

    def __post_init__(self) -> None:
        _choice("bon_distill.objective", self.objective, ("bon_distill",))
        _at_least("bon_distill.n", self.n, 1)
        _choice("bon_distill.divergence", self.divergence, ("fkl", "rkl"))


@dataclass
class OccupancyChi2Config:
    """chi^2-occupancy regularized RL [Corr25, arXiv:2403.03185] (not ORPO)."""

    objective: str = _f("occupancy_chi2", "registry name [Corr25, arXiv:2403.03185]")
    lam: float = _f(0.1, "lambda: penalty lambda*(e^d - 1) [Corr25, arXiv:2403.03185]")
    sqrt_chi2: bool = _f(False, "divide by a trimmed sqrt(chi2) estimate [Corr25]")
    ratio_clamp: float = _f(20.0, "clamp on d = log u (logged, linearized beyond) [Corr25]")

    def __post_init__(self) -> None:
        _choice("occupancy_chi2.objective", self.objective, ("occupancy_chi2",))
        _positive("occupancy_chi2.lam", self.lam, allow_zero=True)
        _positive("occupancy_chi2.ratio_clamp", self.ratio_clamp)


METHOD_CONFIGS: dict[str, type] = {
    "pg": PGConfig,
    "ppo": PPOConfig,
    "dpo": DPOConfig,
    "fdpo": FDPOConfig,
    "nash_mp": NashMPConfig,
    "bon_distill": BoNDistillConfig,
    "occupancy_chi2": OccupancyChi2Config,
}
"""Method name (``TrainConfig.method``) -> its config dataclass (the ``algo`` section)."""


@dataclass
class TrainConfig:
    """A whole training run: method, its section ``algo``, and the shared sections."""

    method: str = _f("pg", f"training method, one of {sorted(METHOD_CONFIGS)}")
    algo: Any = _f(None, "the method's own config dataclass (PGConfig, DPOConfig, ...); None: its defaults")
    model: ModelConfig = _f(
        None, "policy model; default: a tiny llama from config"
    )  # replaced in __post_init__
    kl: KLConfig = _f(KLConfig, "KL regularizer (beta, estimator, placement)")
    reference: ReferenceConfig = _f(ReferenceConfig, "reference strategy (spec §6)")
    rollout: RolloutConfig = _f(RolloutConfig, "generation settings")
    optim: OptimConfig = _f(OptimConfig, "optimizer and learning-rate schedule")
    task: TaskConfig = _f(TaskConfig, "prompts and reward / preference")
    chunk: ChunkConfig = _f(ChunkConfig, "chunked log-probs")
    dist: DistConfig = _f(DistConfig, "distributed settings")
    log: LogConfig = _f(LogConfig, "logging and checkpoints")
    steps: int = _f(100, "optimizer steps (Nash-MP: mirror-prox iterations)")
    seed: int = _f(0, "seed: initialization, and sampling keyed by (seed, step, global sample index)")

    def __post_init__(self) -> None:
        _choice("method", self.method, sorted(METHOD_CONFIGS))
        cls = METHOD_CONFIGS[self.method]
        if self.algo is None:
            self.algo = cls()
        elif isinstance(self.algo, dict):
            self.algo = _build(cls, self.algo, "algo")
        elif type(self.algo) is not cls:
            raise ValueError(
                f"algo must be a {cls.__name__} for method={self.method!r}, got {type(self.algo).__name__}"
            )
        if self.model is None:
            self.model = ModelConfig(from_config=dict(_TINY_LLAMA))
        _at_least("steps", self.steps, 1)
        self._check_combinations()

    def _check_combinations(self) -> None:
        beta, mode = self.kl.beta, self.reference.mode
        if mode in MOVING_REFERENCES and beta == 0:
            raise ValueError(
                f"reference.mode={mode!r} moves the reference but kl.beta=0 never uses it; use reference.mode='none'"
            )
        if beta > 0 and mode == "none":
            raise ValueError(
                "kl.beta > 0 needs a reference source (reference.mode != 'none'); otherwise the KL is silently 0 "
                "(Liger ref_per_token_logps=None)"
            )
        if (
            mode == "precomputed"
            and self.method in ("dpo", "fdpo")
            and self.algo.objective in ("tdpo1", "tdpo2", "sparsepo")
        ):
            raise ValueError(
                f"reference.mode='precomputed' stores sequence log-probs only; {self.algo.objective} needs full "
                "reference distributions (use frozen_copy or adapter_disabled)"
            )
        if mode == "adapter_disabled" and self.model.peft_lora_r == 0:
            raise ValueError("reference.mode='adapter_disabled' needs a PEFT model (model.peft_lora_r > 0)")
        if (
            self.model.peft_lora_r > 0
            and mode in MOVING_REFERENCES + ("soup",)
            and self.reference.ema_space is None
        ):
            raise ValueError(
                f"reference.mode={mode!r} under PEFT needs reference.ema_space in ['factors', 'merged_delta']: an EMA "
                "of LoRA factors (A, B) is not an EMA of BA"
            )
        if self.method in ("dpo", "fdpo", "nash_mp") and mode == "none":
            raise ValueError(f"method={self.method!r} needs a reference model (reference.mode != 'none')")
        if self.method == "ppo" and mode == "precomputed":
            raise ValueError(
                "method='ppo' samples online; precomputed reference log-probs need a fixed data set"
            )


_TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}


# ---------------------------------------------------------------------------------------------------------
# (de)serialization
# ---------------------------------------------------------------------------------------------------------


def field_help(cls: type, name: str) -> str:
    """The help text of field ``name`` of dataclass ``cls``."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def _unwrap(tp: Any) -> Any:
    """The dataclass inside ``X | None``, else ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _build(cls: type, data: dict, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            hint = difflib.get_close_matches(k, names, n=1)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"{where}: unknown key {k!r} for {cls.__name__}{more}; valid keys: {names}")
        tp = _unwrap(hints[k])
        if dataclasses.is_dataclass(tp) and isinstance(v, dict):
            v = _build(tp, v, f"{where}.{k}" if where else k)
        kwargs[k] = v
    return cls(**kwargs)


def config_from_dict(data: dict) -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested mapping (unknown keys raise ``ValueError``)."""
    data = dict(data)
    method = data.get("method", "pg")
    _choice("method", method, sorted(METHOD_CONFIGS))
    if isinstance(data.get("algo"), dict):
        data["algo"] = _build(METHOD_CONFIGS[method], data["algo"], "algo")
    return _build(TrainConfig, data, "")


def config_to_dict(cfg: Any) -> dict:
    """Nested plain-dict form of a config (the inverse of :func:`config_from_dict`)."""
    return dataclasses.asdict(cfg)


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read a YAML or JSON config file, apply ``key.sub=value`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    data = data or {}
    data = apply_overrides(data, overrides)
    return config_from_dict(data)


def dump_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (or JSON if the suffix is ``.json``); :func:`load_config` reads it back equal."""
    path = Path(path)
    d = config_to_dict(cfg)
    path.write_text(json.dumps(d, indent=2) if path.suffix == ".json" else yaml.safe_dump(d, sort_keys=False))
    return path


def apply_overrides(data: dict, overrides: typing.Sequence[str]) -> dict:
    """Apply command-line overrides ``a.b=value`` (value parsed as YAML) to a nested dict (copied)."""
    import copy

    data = copy.deepcopy(data)
    for ov in overrides:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} must look like key.sub=value")
        key, raw = ov.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ValueError(f"override {ov!r}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = yaml.safe_load(raw)
    return data
