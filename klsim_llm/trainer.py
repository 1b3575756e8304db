"""The thin training loop: generate → score → reference/old log-probs → registry objective → step → log.

The trainer holds no loss math: every loss comes from ``klsim_llm.registry.OBJECTIVES`` (keyword
conventions in :mod:`klsim_llm.registry`), called through :meth:`Trainer.objective_call`.  What the
trainer does:

- **rollouts** (:func:`klsim_llm.rollout.generate`) at ``rollout.temperature``, randomness keyed by
  (seed, step, global sample index); log-probs for the objective at temperature 1
  (``kl.kl_temperature='unit'``; the tempered sampler log-probs are passed as ``old_logp`` so ratios are
  importance-corrected) or at the sampling temperature (``'sampling'``, the TRL/verl convention); the
  log records both temperatures and the convention;
- **rewards**: a task reward, a ``fn(prompts, completions)`` callable, a reward model, or a preference
  function (Nash-MP);
- **log-probs**: chunked (:mod:`klsim_llm.logprobs`) inside a :class:`~klsim_llm.logprobs.LogProbModule`
  wrapped in DDP / FSDP2 when ``WORLD_SIZE > 1`` (``torchrun`` or ``accelerate launch``);
- **references** (:mod:`klsim_llm.references`) with drift accounting;
- **precision**: bf16 autocast on CUDA, float32 (or float64) on CPU (``model.autocast_bf16_cpu`` turns on
  bf16 autocast on CPU to exercise that path without a GPU); the log records it as ``precision``;
- **logging**: one JSON line per step (reward, KL with the estimator named, entropy, grad norm, drift, β),
  tqdm bar on rank 0;
- **checkpoints** (:mod:`klsim_llm.checkpoint`): exact resume.

Distributed semantics: the global batch (``rollout.prompts_per_step`` prompts × G responses, or
``dpo.batch_size`` pairs) is split in whole prompt groups over ranks and gradient-accumulation
micro-batches; every registry loss is a mean over rows, so each micro-batch loss is divided by
``grad_accum`` and DDP averages over ranks: the update equals one process with the global batch.
With ``kl.aggregation='token_mean'`` (pg/ppo) each micro-batch loss S_m/n_m is rescaled to
S_m/N_global with the all-reduced active-token count (spec §7, TRL #2623).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from klsim_llm import registry
from klsim_llm.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from klsim_llm.config import TrainConfig, config_from_dict, config_to_dict
from klsim_llm.logprobs import LogProbModule, bf16_autocast
from klsim_llm.references import DriftTracker, Precomputed, ReferenceStrategy, make_reference
from klsim_llm.rollout import (
    ModelReward,
    Rollout,
    Task,
    TextReward,
    generate,
    left_pad,
    make_task,
    resolve_callable,
    sample_seeds,
)

__all__ = ["Trainer", "build_model", "build_policy", "init_distributed", "objective_name"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# streams of the keyed sampler
_S_POLICY, _S_OPP, _S_PROBE, _S_EVAL_REF = 0, 1, 2, 3


def objective_name(cfg: TrainConfig) -> str:
    """The registry name the trainer calls for this config."""
    return cfg.algo.objective


# ---------------------------------------------------------------------------------------------------------
# set-up helpers
# ---------------------------------------------------------------------------------------------------------


def init_distributed(backend: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initializes the process group when ``WORLD_SIZE > 1`` (torchrun and
    ``accelerate launch`` both set it).  Gloo on CPU, NCCL on CUDA unless ``backend`` says otherwise."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        be = backend if backend != "auto" else ("nccl" if cuda else "gloo")
        dist.init_process_group(backend=be)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


def build_model(mcfg, *, vocab_size: int | None = None, seed: int = 0, tokenizer: Any = None) -> nn.Module:
    """``AutoModelForCausalLM`` from a local folder, or from ``from_config`` kwargs (seeded init)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = _DTYPES[mcfg.dtype]
    if mcfg.name_or_path is not None:
        if not Path(mcfg.name_or_path).is_dir():
            raise ValueError(
                f"model.name_or_path={mcfg.name_or_path!r} is not a local folder (no hub downloads)"
            )
        return AutoModelForCausalLM.from_pretrained(mcfg.name_or_path, local_files_only=True, dtype=dtype)
    kw = dict(mcfg.from_config)
    mt = kw.pop("model_type")
    if vocab_size is not None:
        kw.setdefault("vocab_size", vocab_size)
    if tokenizer is not None:  # not pad_token_id: it would zero that token's embedding (padding_idx)
        for k in ("eos_token_id", "bos_token_id"):
            v = getattr(tokenizer, k, None)
            kw.setdefault(k, v)
    conf = AutoConfig.for_model(mt, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(conf, dtype=dtype)
    return model


def build_policy(cfg: TrainConfig, tokenizer: Any, model: nn.Module | None = None) -> nn.Module:
    """The policy: ``model`` or :func:`build_model`, optionally wrapped in a peft LoRA adapter."""
    if model is None:
        model = build_model(cfg.model, vocab_size=len(tokenizer), seed=cfg.seed, tokenizer=tokenizer)
    model = model.to(_DTYPES[cfg.model.dtype]) if not torch.cuda.is_available() else model
    if cfg.model.peft_lora_r > 0 and not hasattr(model, "disable_adapter"):
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=cfg.model.peft_lora_r,
            lora_alpha=cfg.model.peft_lora_alpha,
            target_modules=list(cfg.model.peft_target_modules) or None,
            lora_dropout=0.0,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = get_peft_model(model, lcfg)
    # RL fine-tuning disables dropout (as TRL does): eval mode only switches dropout / norm statistics
    model.eval()
    return model


def _accepts(fn: Callable) -> set[str]:
    """Keyword names ``fn`` takes; ``"**"`` when it also takes ``**kwargs``."""
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind != inspect.Parameter.VAR_KEYWORD}
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
        names.add("**")
    return names


class _JsonlLogger:
    def __init__(self, path: Path | None) -> None:
        self.f = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(path, "a")

    def write(self, row: dict) -> None:
        if self.f is not None:
            self.f.write(json.dumps(row, default=float) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def _scalar(v: Any) -> float:
    return float(v.detach().double().mean()) if torch.is_tensor(v) else float(v)


# ---------------------------------------------------------------------------------------------------------
# trainer
# ---------------------------------------------------------------------------------------------------------


class Trainer:
    """Thin trainer over any ``AutoModelForCausalLM`` (see the module docstring).

    Parameters
    ----------
    cfg : TrainConfig
    model : nn.Module, optional
        The policy; default :func:`build_model` from ``cfg.model``.
    tokenizer : optional
        Default: the task's in-code tokenizer, or ``AutoTokenizer`` from ``cfg.model.tokenizer``.
    task : Task, optional
        Prompts / reward / preference / pairs; default ``make_task(cfg.task.name, cfg.task.kwargs)``.
    reward_fn : callable, optional
        ``fn(prompt_ids, response_ids, response_mask) -> (B,)``; overrides the task reward.
    preference_fn : callable, optional
        ``fn(prompt_ids, y, y_mask, y2, y2_mask) -> (B,)`` in [0, 1]; overrides the task preference.
    resume : bool or path
        ``True``: resume from the newest checkpoint in ``cfg.log.out_dir`` if there is one; a path: that one.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        model: nn.Module | None = None,
        tokenizer: Any = None,
        task: Task | None = None,
        reward_fn: Callable | None = None,
        preference_fn: Callable | None = None,
        resume: bool | str | Path = False,
    ) -> None:
        self.cfg = cfg
        self.rank, self.world, self.device = init_distributed(cfg.dist.backend)
        # bf16 autocast: on CUDA by model.autocast_bf16, on CPU only by model.autocast_bf16_cpu (testing)
        amp = cfg.model.autocast_bf16 if self.device.type == "cuda" else cfg.model.autocast_bf16_cpu
        self.autocast: str | None = self.device.type if amp and self.device.type in ("cuda", "cpu") else None
        self.precision = f"{cfg.model.dtype}+bf16_autocast" if self.autocast else cfg.model.dtype
        self.entry = registry.get(objective_name(cfg))
        for what, folder in (
            ("model.name_or_path", cfg.model.name_or_path),
            ("model.tokenizer", cfg.model.tokenizer),
        ):
            if folder is not None and model is None and not Path(folder).is_dir():
                raise ValueError(f"{what}={folder!r} is not a local folder (no hub downloads)")
        if tokenizer is None and (cfg.model.tokenizer or cfg.model.name_or_path):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(
                cfg.model.tokenizer or cfg.model.name_or_path, local_files_only=True
            )
        self.task = (
            task if task is not None else make_task(cfg.task.name, cfg.task.kwargs, tokenizer=tokenizer)
        )
        if tokenizer is None:
            tokenizer = self.task.tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.reward_fn = reward_fn or self._reward_source()
        self.preference_fn = preference_fn or (
            resolve_callable(cfg.task.preference) if cfg.task.preference else self.task.preference
        )
        self.policy = build_policy(cfg, tokenizer, model).to(self.device)
        self.eos_id = getattr(self.task, "eos_token_id", None)
        if (
            self.eos_id is None
            and cfg.rollout.stop_at_eos
            and cfg.task.name not in ("bandit", "sequence", "preference_game", "bt_pairs")
        ):
            self.eos_id = tokenizer.eos_token_id
        if not cfg.rollout.stop_at_eos:
            self.eos_id = None
        self.beta = float(cfg.kl.beta)
        self.step = 0
        self.preference_queries = 0
        # reference, drift probe and Nash-MP anchors come from the unwrapped initial policy
        self.reference: ReferenceStrategy = make_reference(
            cfg.reference, self.policy, row_chunk=cfg.chunk.row_chunk, autocast=self.autocast
        )
        if isinstance(self.reference, Precomputed):
            self.reference.precompute(self._precompute_batches())
        self.drift = self._make_drift()
        if cfg.method == "nash_mp":
            self.anchor = self._frozen_copy()
            self.opponent = self._frozen_copy()
        self.value_head = self._make_value_head()
        self.lp = self._wrap(LogProbModule(self.policy, self.value_head))
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler(self.optimizer)
        self.out_dir = Path(cfg.log.out_dir)
        self.logger = _JsonlLogger(self.out_dir / "metrics.jsonl" if self.rank == 0 else None)
        self._accepts = _accepts(self.entry.fn)
        if cfg.method == "ppo" and cfg.dist.grad_accum != 1:
            raise ValueError(
                "method='ppo' steps once per epoch on the whole rollout batch: use dist.grad_accum=1"
            )
        if resume:
            path = latest_checkpoint(self.out_dir) if resume is True else Path(resume)
            if path is not None:
                self.load_state(path)

    # ----- set-up -------------------------------------------------------------------------------------

    def _reward_source(self) -> Callable:
        t = self.cfg.task
        if t.reward:
            return TextReward(resolve_callable(t.reward), self.tokenizer)
        if t.reward_model:
            return ModelReward(t.reward_model, self.device, pad_token_id=self.pad_id)
        return self.task.reward

    def _frozen_copy(self) -> nn.Module:
        m = copy.deepcopy(self.policy)
        for p in m.parameters():
            p.requires_grad_(False)
        return m.eval()

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        if self.cfg.dist.strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard

            if self.reference.moving and getattr(self.reference, "merged", False):
                raise ValueError(
                    "FSDP with a moving reference and reference.ema_space='merged_delta' is not supported "
                    "(merging the LoRA adapter needs the unsharded PEFT model); use ema_space='factors' "
                    "or dist.strategy=ddp"
                )
            return fully_shard(module)
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _make_value_head(self) -> nn.Module | None:
        """The PPO critic ``ppo.critic='value_head'``: V_t = Linear(hidden, 1) on the policy's last hidden
        state, zero-initialized (V = 0 at step 0, so the first advantages are the Monte-Carlo ones), in the
        policy's dtype; ``None`` for every other configuration."""
        if self.cfg.method != "ppo" or self.cfg.algo.critic != "value_head":
            return None
        emb = self.policy.get_output_embeddings()
        hidden = getattr(self.policy.config, "hidden_size", None) or emb.weight.shape[1]
        dtype = next(self.policy.parameters()).dtype
        head = nn.Linear(int(hidden), 1, dtype=dtype, device=self.device)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    def _trainable(self) -> list[nn.Parameter]:
        """Policy (and value-head) parameters that the optimizer updates."""
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        return params

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        params = self._trainable()
        if o.optimizer == "sgd":
            return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay)
        cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
        # fused: one kernel per step instead of a Python loop over tensors (CPU 124M params: 0.33 -> 0.07 s)
        fused = o.fused == "on" or (o.fused == "auto" and not self._fsdp())
        kw = {"fused": True} if fused else {}
        return cls(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay, **kw)

    def _make_scheduler(self, opt):
        o, n = self.cfg.optim, self.cfg.steps

        def f(step: int) -> float:
            if o.warmup_steps and step < o.warmup_steps:
                return (step + 1) / o.warmup_steps
            frac = min(1.0, step / max(1, n))
            if o.scheduler == "linear":
                return 1.0 - frac
            if o.scheduler == "cosine":
                return 0.5 * (1.0 + math.cos(math.pi * frac))
            return 1.0

        return torch.optim.lr_scheduler.LambdaLR(opt, f)

    def _ctx(self):
        return bf16_autocast(self.autocast)

    def _make_drift(self) -> DriftTracker | None:
        """Probe: the first ``probe_size`` prompts with responses sampled once from π_init (stream 2)."""
        n = self.cfg.reference.probe_size
        if self.task.pairs:
            seqs = [(p, c) for p, c, _ in self.task.pairs[:n]]
            ids, mask, start, rmask = self._pack([p for p, _ in seqs], [c for _, c in seqs])
        else:
            prompts = [self.task.prompts[i % len(self.task.prompts)] for i in range(n)]
            pid, pm = left_pad(prompts, self.pad_id)
            ro = generate(
                self.policy,
                pid.to(self.device),
                pm.to(self.device),
                sample_seeds(self.cfg.seed, 0, range(n), stream=_S_PROBE),
                max_new_tokens=self.cfg.rollout.max_new_tokens,
                temperature=1.0,
                eos_token_id=self.eos_id,
                pad_token_id=self.pad_id,
            )
            ids, mask, start, rmask = ro.input_ids, ro.attention_mask, ro.prompt_len, ro.response_mask
        init = self.policy
        if self.cfg.reference.mode == "adapter_disabled":
            init = self.reference  # π_init under PEFT: the adapter-disabled base
        tr = DriftTracker(ids, mask, start, rmask, _AsModel(init), row_chunk=self.cfg.chunk.row_chunk)
        tr.observe_reference(self._ref_model(), moved=False)
        return tr

    def _ref_model(self) -> nn.Module | None:
        if self.reference.model is None:
            return None
        if self.cfg.reference.mode == "adapter_disabled":
            return _AsModel(self.reference)
        return self.reference.model

    def _pack(self, prompts, responses) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
        """Left-padded prompts + right-padded responses -> (ids, mask, start, response_mask)."""
        pid, pm = left_pad(prompts, self.pad_id)
        T = max(len(r) for r in responses)
        rid = torch.full((len(responses), T), self.pad_id, dtype=torch.long)
        rm = torch.zeros((len(responses), T), dtype=torch.long)
        for i, r in enumerate(responses):
            rid[i, : len(r)] = torch.as_tensor(list(r))
            rm[i, : len(r)] = 1
        ids = torch.cat([pid, rid], 1).to(self.device)
        mask = torch.cat([pm, rm], 1).to(self.device)
        return ids, mask, pid.shape[1], rm.double().to(self.device)

    def _precompute_batches(self):
        if not self.task.pairs:
            raise ValueError(
                "reference.mode='precomputed' needs a fixed data set (a task with preference pairs)"
            )
        for i, (p, c, r) in enumerate(self.task.pairs):
            ids, mask, start, rmask = self._pack([p, p], [c, r])
            yield [2 * i, 2 * i + 1], ids, mask, start, rmask

    # ----- log-probs ----------------------------------------------------------------------------------

    def _kl_temperature(self) -> float:
        return self.cfg.rollout.temperature if self.cfg.kl.kl_temperature == "sampling" else 1.0

    def policy_logprobs(self, ids, mask, start, *, return_logits=False, module=None):
        with self._ctx():
            return (module or self.lp)(
                ids,
                mask,
                start,
                temperature=self._kl_temperature(),
                row_chunk=self.cfg.chunk.row_chunk,
                checkpoint=self.cfg.chunk.checkpoint_chunks,
                return_logits=return_logits,
            )

    def ref_logprobs(self, ids, mask, start, *, return_logits=False, keys=None):
        return self.reference.logprobs(
            ids, mask, start, temperature=self._kl_temperature(), return_logits=return_logits, keys=keys
        )

    def _generate(
        self, model, prompts_idx: list[int], step: int, sample_idx: list[int], stream: int
    ) -> Rollout:
        prompts = [self.task.prompts[i] for i in prompts_idx]
        pid, pm = left_pad(prompts, self.pad_id)
        fsdp = self.world > 1 and self.cfg.dist.strategy == "fsdp"
        with self._unsharded():
            ro = generate(
                model,
                pid.to(self.device),
                pm.to(self.device),
                sample_seeds(self.cfg.seed, step, sample_idx, stream=stream),
                max_new_tokens=self.cfg.rollout.max_new_tokens,
                temperature=self.cfg.rollout.temperature,
                eos_token_id=None
                if fsdp
                else self.eos_id,  # FSDP: every rank runs the same number of forwards
                pad_token_id=self.pad_id,
                autocast=self.autocast,
            )
        if fsdp and self.eos_id is not None:
            ro = _mask_after_eos(ro, self.eos_id)
        return ro

    @contextlib.contextmanager
    def _unsharded(self):
        if self.world > 1 and self.cfg.dist.strategy == "fsdp":
            self.lp.unshard()
            try:
                yield
            finally:
                self.lp.reshard()
        else:
            yield

    # ----- objective ------------------------------------------------------------------------------------

    def objective_call(self, **kwargs: Any) -> tuple[torch.Tensor, dict]:
        """Call the registry objective with the keywords it accepts; full-vocabulary tensors
        (``logits``, ``ref_logits``, ...) are dropped when it does not take them, any other unknown
        keyword raises ``TypeError`` (nothing is silently ignored)."""
        optional = {
            "logits",
            "ref_logits",
            "logits_w",
            "ref_logits_w",
            "logits_l",
            "ref_logits_l",
            "old_logp",
        }
        kw = {
            k: v
            for k, v in kwargs.items()
            if k in self._accepts or "**" in self._accepts or k not in optional
        }
        return self.entry.fn(**kw)

    def _needs_logits(self) -> bool:
        return bool(self._accepts & {"logits", "logits_w", "**"}) and (
            self.cfg.method in ("dpo", "fdpo")
            and self.cfg.algo.objective in ("tdpo1", "tdpo2", "sparsepo")
            or self.cfg.kl.estimator in ("fv_partial", "fv_rtg")
        )

    # ----- the global batch split --------------------------------------------------------------------

    def _shards(self, n_global: int, what: str) -> list[list[int]]:
        """This rank's micro-batches of global slot indices (contiguous, equal sizes)."""
        parts = self.world * self.cfg.dist.grad_accum
        if n_global % parts:
            raise ValueError(
                f"{what}={n_global} must be divisible by world_size*grad_accum={self.world}*{self.cfg.dist.grad_accum}"
            )
        per = n_global // parts
        base = self.rank * self.cfg.dist.grad_accum
        return [list(range((base + m) * per, (base + m + 1) * per)) for m in range(self.cfg.dist.grad_accum)]

    def _perm(self, stream: int, epoch: int, n: int) -> np.ndarray:
        """Permutation of epoch ``epoch`` of a data set of size n, keyed by (seed, stream, epoch); cached."""
        key = (stream, epoch, n)
        cache = self.__dict__.setdefault("_perm_cache", {})
        if key not in cache:
            if len(cache) > 4:
                cache.clear()
            cache[key] = np.random.default_rng([self.cfg.seed, stream, epoch]).permutation(n)
        return cache[key]

    def _prompt_index(self, step: int, slot: int) -> int:
        n = len(self.task.prompts)
        epoch, pos = divmod(step * self.cfg.rollout.prompts_per_step + slot, n)
        return int(self._perm(7, epoch, n)[pos])

    def _no_sync(self, last: bool):
        if not last and hasattr(self.lp, "no_sync"):
            return self.lp.no_sync()
        return contextlib.nullcontext()

    # ----- one optimizer step per method ----------------------------------------------------------------

    def _rl_rollout(self, slots: list[int], step: int) -> dict:
        """Rollout, rewards, reference and old log-probs for prompt slots (no gradient)."""
        cfg, G = self.cfg, self.cfg.rollout.group_size
        prompts = [self._prompt_index(step, s) for s in slots for _ in range(G)]
        sidx = [s * G + g for s in slots for g in range(G)]
        sampler = self.policy
        if cfg.method == "bon_distill":
            sampler = self._ref_model() or self.policy
        ro = self._generate(sampler, prompts, step, sidx, _S_POLICY)
        with torch.no_grad():
            rewards = self.reward_fn(ro.prompt_ids, ro.response_ids, ro.response_mask).double()
        need_logits = self._needs_logits()
        ref = self.ref_logprobs(ro.input_ids, ro.attention_mask, ro.prompt_len, return_logits=need_logits)
        mask = ro.response_mask
        old_values = None
        if cfg.method == "ppo":
            # log π_old and the rollout values V_old, once per rollout (FSDP: on the gathered weights)
            with torch.no_grad(), self._unsharded():
                out = self.policy_logprobs(
                    ro.input_ids,
                    ro.attention_mask,
                    ro.prompt_len,
                    module=LogProbModule(self.policy, self.value_head),
                )
                old = out[0]
                if self.value_head is not None:
                    old_values = out[3]
        elif cfg.kl.kl_temperature == "unit" and cfg.rollout.temperature != 1.0:
            old = ro.sampler_logp.to(mask.dtype)  # importance-correct the tempered sampler
        else:
            old = None
        return {
            "slots": slots,
            "ro": ro,
            "rewards": rewards,
            "ref": ref,
            "old": old,
            "old_values": old_values,
            "need_logits": need_logits,
        }

    def _rl_loss(self, data: dict, scale: float, last: bool) -> dict:
        """Registry loss on one rollout micro-batch and its backward (PPO: one optimizer step per epoch)."""
        cfg, G = self.cfg, self.cfg.rollout.group_size
        ro, rewards, ref, old, need_logits = (data[k] for k in ("ro", "rewards", "ref", "old", "need_logits"))
        slots, mask = data["slots"], ro.response_mask
        epochs = cfg.algo.epochs if cfg.method == "ppo" else 1
        metrics: dict[str, float] = {}
        for _ in range(epochs):
            logp, ent, logits, *values = self.policy_logprobs(
                ro.input_ids, ro.attention_mask, ro.prompt_len, return_logits=need_logits
            )
            ref_logp = ref.logp if ref is not None else logp.detach()
            kw: dict[str, Any] = {
                "logp": logp,
                "ref_logp": ref_logp.to(logp.dtype),
                "mask": mask.to(logp.dtype),
            }
            kw["rewards"] = rewards.to(logp.dtype)
            if cfg.method in ("pg", "ppo"):
                kw.update(
                    old_logp=None if old is None else old.to(logp.dtype),
                    group_size=G,
                    beta=self.beta,
                    kl_estimator=cfg.kl.estimator,
                    kl_placement=cfg.kl.placement,
                    agg=cfg.kl.aggregation,
                )
                if cfg.algo.baseline is not None:
                    kw["baseline"] = cfg.algo.baseline
                if cfg.kl.clamp_log_ratio is not None:
                    kw["log_ratio_clamp"] = cfg.kl.clamp_log_ratio
                if cfg.method == "ppo":
                    kw["clip_eps"] = (cfg.algo.clip_low, cfg.algo.clip_high)
                    if cfg.algo.gae_gamma != 1.0 or cfg.algo.gae_lambda != 1.0:
                        kw.update(gamma=cfg.algo.gae_gamma, lam=cfg.algo.gae_lambda)
                    if values:  # the critic's values; targets and clipping use V_old of the rollout
                        kw.update(
                            values=values[0].to(logp.dtype),
                            old_values=data["old_values"].to(logp.dtype),
                            vf_coef=cfg.algo.vf_coef,
                            value_clip=cfg.algo.value_clip,
                        )
                if need_logits:
                    kw.update(logits=logits, ref_logits=ref.logits if ref is not None else None)
                loss, m = self.objective_call(**kw)
            elif cfg.method == "occupancy_chi2":
                kw.update(kl_coef=cfg.algo.lam, log_ratio_clamp=cfg.algo.ratio_clamp)
                if cfg.algo.sqrt_chi2:
                    kw["sqrt_chi2"] = True
                loss, m = self.objective_call(**kw)
            elif cfg.method == "bon_distill":
                losses, m = [], {}
                for g in range(len(slots)):
                    sl = slice(g * G, (g + 1) * G)
                    part = {k: (v[sl] if torch.is_tensor(v) else v) for k, v in kw.items()}
                    lg, m = self.objective_call(**part, n=cfg.algo.n, divergence=cfg.algo.divergence)
                    losses.append(lg)
                loss = torch.stack(losses).mean()
            else:  # pragma: no cover - config validation keeps this unreachable
                raise ValueError(f"method {cfg.method!r} is not an on-policy RL method")
            metrics = {f"obj/{k}": _scalar(v) for k, v in m.items()}
            metrics["loss"] = _scalar(loss)
            self._backward(loss, last=last or cfg.method == "ppo", scale=scale)
            if cfg.method == "ppo":
                self._opt_step(metrics)
        metrics.update(self._rl_log(rewards, logp, ref, ent, mask, ro))
        return metrics

    def _rl_step(self) -> dict:
        """All rollout micro-batches of this rank first (so token-mean losses can use the global active-token
        count), then loss + backward per micro-batch, then one optimizer step (PPO: one per epoch)."""
        shards = self._shards(self.cfg.rollout.prompts_per_step, "rollout.prompts_per_step")
        datas = [self._rl_rollout(slots, self.step) for slots in shards]
        scales = [1.0 / self.cfg.dist.grad_accum] * len(datas)
        if self.cfg.method in ("pg", "ppo") and self.cfg.kl.aggregation == "token_mean":
            # spec §7: a token mean over the global batch. Each micro-batch loss is a local token mean
            # S_m / n_m; rescale to S_m / N_global (times world size, since DDP averages over ranks).
            n_loc = [float(d["ro"].response_mask.sum()) for d in datas]
            n_glob = self._all_sum(sum(n_loc))
            scales = [n * self.world / max(n_glob, 1.0) for n in n_loc]
        agg: dict[str, list[float]] = {}
        for m, (d, sc) in enumerate(zip(datas, scales)):
            metrics = self._rl_loss(d, sc, last=m == len(datas) - 1)
            for k, v in metrics.items():
                agg.setdefault(k, []).append(v)
        out = {k: float(np.mean(v)) for k, v in agg.items()}
        if self.cfg.method != "ppo":
            self._opt_step(out)
        return self._all_mean(out)

    def _all_sum(self, x: float) -> float:
        if self.world == 1:
            return x
        import torch.distributed as dist

        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def _rl_log(self, rewards, logp, ref, ent, mask, ro: Rollout) -> dict:
        out = {
            "reward": float(rewards.mean()),
            "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
            "entropy": float((ent * mask).sum() / mask.sum().clamp_min(1)),
            "response_len": float(mask.sum(-1).mean()),
        }
        if ref is not None and self.beta > 0:
            for name in ("k1", "k3"):
                if name in registry.KL_ESTIMATORS:
                    v, _ = registry.KL_ESTIMATORS[name].fn(
                        logp.detach(),
                        ref.logp.to(logp.dtype),
                        mask.to(logp.dtype),
                        placement="loss",
                        agg="seq_sum",
                    )
                    out[f"kl_{name}"] = _scalar(v)
        return out

    def _pref_micro(self, slots: list[int], step: int) -> tuple[dict, int]:
        cfg = self.cfg
        n = len(self.task.pairs)
        perm_keys = []
        for s in slots:  # shuffled epochs over the data set, keyed by (seed, epoch)
            epoch, pos = divmod(step * cfg.algo.batch_size + s, n)
            perm_keys.append(int(self._perm(11, epoch, n)[pos]))
        pairs = [self.task.pairs[k] for k in perm_keys]
        prompts = [p for p, _, _ in pairs] * 2
        resp = [c for _, c, _ in pairs] + [r for _, _, r in pairs]
        ids, mask, start, rmask = self._pack(prompts, resp)
        need_logits = self._needs_logits()
        ref_keys = [2 * k for k in perm_keys] + [2 * k + 1 for k in perm_keys]
        ref = self.ref_logprobs(ids, mask, start, return_logits=need_logits, keys=ref_keys)
        logp, ent, logits = self.policy_logprobs(ids, mask, start, return_logits=need_logits)
        B = len(pairs)
        rl = ref.logp.to(logp.dtype)
        rm = rmask.to(logp.dtype)
        kw: dict[str, Any] = {
            "logp_w": logp[:B],
            "ref_logp_w": rl[:B],
            "mask_w": rm[:B],
            "logp_l": logp[B:],
            "ref_logp_l": rl[B:],
            "mask_l": rm[B:],
            "beta": self.beta,
        }
        a = cfg.algo
        if a.objective == "fdpo":
            kw.update(divergence=a.f_divergence, alpha=a.f_alpha)
        elif a.objective == "hdpo":
            kw["alpha"] = a.alpha
        elif a.objective == "is_daa":
            kw["eps"] = a.is_epsilon
        elif a.objective == "tdpo2":
            kw["alpha"] = a.alpha
        if need_logits:
            kw.update(
                logits_w=logits[:B],
                logits_l=logits[B:],
                ref_logits_w=ref.logits[:B],
                ref_logits_l=ref.logits[B:],
            )
        loss, m = self.objective_call(**kw)
        metrics = {f"obj/{k}": _scalar(v) for k, v in m.items()}
        metrics["_loss"] = loss
        with torch.no_grad():
            d = (logp.detach() - rl) * rm
            margin = d[:B].sum(-1) - d[B:].sum(-1)
        metrics["pref_accuracy"] = float((margin > 0).double().mean())
        metrics["entropy"] = float((ent * rmask).sum() / rmask.sum().clamp_min(1))
        return metrics, B

    def _backward(self, loss: torch.Tensor, last: bool, scale: float | None = None) -> None:
        scale = 1.0 / self.cfg.dist.grad_accum if scale is None else scale
        with self._no_sync(last):
            (loss * scale).backward()

    def _opt_step(self, metrics: dict) -> None:
        params = self._trainable()
        clip = self.cfg.optim.grad_clip
        gn = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        metrics["grad_norm"] = _scalar(gn.full_tensor() if hasattr(gn, "full_tensor") else gn)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _micro_loop(self, fn, n_global: int, what: str) -> dict:
        shards = self._shards(n_global, what)
        agg: dict[str, list[float]] = {}
        for m, slots in enumerate(shards):
            metrics, _ = fn(slots, self.step)
            loss = metrics.pop("_loss")
            self._backward(loss, last=m == len(shards) - 1)
            agg.setdefault("loss", []).append(_scalar(loss))
            for k, v in metrics.items():
                agg.setdefault(k, []).append(v)
        out = {k: float(np.mean(v)) for k, v in agg.items()}
        self._opt_step(out)
        return self._all_mean(out)

    def _all_mean(self, metrics: dict) -> dict:
        if self.world == 1:
            return metrics
        import torch.distributed as dist

        keys = sorted(metrics)
        t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    # ----- Nash-MP ------------------------------------------------------------------------------------

    def _nash_inner(self, slots: list[int], step: int, stream_base: int) -> tuple[dict, int]:
        G = self.cfg.rollout.group_size
        prompts = [self._prompt_index(step, s) for s in slots for _ in range(G)]
        sidx = [s * G + g for s in slots for g in range(G)]
        ro = self._generate(self.policy, prompts, step, sidx, stream_base + _S_POLICY)
        opp = self._generate(self.opponent, prompts, step, sidx, stream_base + _S_OPP)
        with torch.no_grad():
            pref = self.preference_fn(
                ro.prompt_ids, ro.response_ids, ro.response_mask, opp.response_ids, opp.response_mask
            )
        self.preference_queries += len(sidx)
        ref = self.ref_logprobs(ro.input_ids, ro.attention_mask, ro.prompt_len)
        with torch.no_grad():
            anchor = LogProbModule(self.anchor)(
                ro.input_ids, ro.attention_mask, ro.prompt_len, checkpoint=False
            )[0]
        logp, ent, _ = self.policy_logprobs(ro.input_ids, ro.attention_mask, ro.prompt_len)
        dt = logp.dtype
        loss, m = self.objective_call(
            logp=logp,
            ref_logp=ref.logp.to(dt),
            anchor_logp=anchor.to(dt),
            mask=ro.response_mask.to(dt),
            preference=pref.to(dt),
            beta=self.beta,
            eta=self.cfg.algo.eta,
        )
        metrics = {f"obj/{k}": _scalar(v) for k, v in m.items()}
        metrics.update(_loss=loss, preference=float(pref.mean()), entropy=float(ent.mean()))
        return metrics, len(sidx)

    def _nash_iteration(self) -> dict:
        """One Nash-MP iteration: two half steps of M optimizer steps, both starting from θ_k (and its
        optimizer state), the second against the opponent π_{k+½} [NashMP, arXiv:2505.19731v1; EGPO]."""
        a = self.cfg.algo
        theta_k = {n: v.detach().clone() for n, v in self.policy.state_dict().items()}
        opt_k = copy.deepcopy(self.optimizer.state_dict())
        self.anchor.load_state_dict(theta_k)
        self.opponent.load_state_dict(theta_k)
        metrics: dict = {}
        for half in (0, 1):
            for j in range(a.inner_steps):
                stream = 10 + 4 * (2 * j + half)
                metrics = self._micro_loop(
                    lambda slots, step, s=stream: self._nash_inner(slots, step, s),
                    self.cfg.rollout.prompts_per_step,
                    "rollout.prompts_per_step",
                )
            if half == 0:
                self.opponent.load_state_dict(
                    {n: v.detach().clone() for n, v in self.policy.state_dict().items()}
                )
                if a.restore_optimizer:
                    self.policy.load_state_dict(theta_k)
                    self.optimizer.load_state_dict(opt_k)
        metrics["preference_queries"] = self.preference_queries
        return metrics

    # ----- main loop ----------------------------------------------------------------------------------

    def train_step(self) -> dict:
        """One optimizer step (Nash-MP: one mirror-prox iteration); returns the logged row."""
        t0 = time.perf_counter()
        cfg = self.cfg
        if cfg.method == "nash_mp":
            metrics = self._nash_iteration()
        elif cfg.method in ("dpo", "fdpo"):
            metrics = self._micro_loop(self._pref_micro, cfg.algo.batch_size, "dpo.batch_size")
        else:
            metrics = self._rl_step()
        self.scheduler.step()
        self.step += 1
        kl_now = metrics.get(f"kl_{cfg.kl.estimator}", metrics.get("kl_k1"))
        flags = self._reference_after_step(kl_now)
        if flags.pop("reset_optimizer", False):
            self.optimizer = self._make_optimizer()
            self.scheduler = self._make_scheduler(self.optimizer)
            for _ in range(self.step):
                self.scheduler.step()
        metrics.update({k: float(v) for k, v in flags.items()})
        if cfg.kl.adaptive and "kl_k1" in metrics:
            # [Zie19]: err = clip(KL/target - 1, +-0.2); beta <- beta (1 + err n_steps / horizon)
            err = float(np.clip(metrics["kl_k1"] / cfg.kl.target_kl - 1.0, -0.2, 0.2))
            self.beta *= 1.0 + err * cfg.rollout.prompts_per_step * cfg.rollout.group_size / cfg.kl.horizon
        row = {"step": self.step, **metrics}
        row.update(self._drift_metrics())
        row.update(
            beta=self.beta,
            kl_estimator=cfg.kl.estimator,
            kl_placement=cfg.kl.placement,
            kl_temperature=cfg.kl.kl_temperature,
            sampling_temperature=cfg.rollout.temperature,
            objective=self.entry.name,
            world_size=self.world,
            precision=self.precision,
            lr=self.optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - t0,
        )
        if self.beta == 0:  # no reference: KL metrics omitted, not logged as 0
            row = {k: v for k, v in row.items() if not (k.startswith("kl_") and isinstance(v, float))}
        self.logger.write(row)
        ce = cfg.log.checkpoint_every
        if ce and self.step % ce == 0 and self.step < cfg.steps:
            self.save()
        return row

    def _reference_after_step(self, kl_now: float | None) -> dict:
        """``reference.after_step``.  Under FSDP the reference is a full replica on every rank (as a frozen
        copy is); the rule runs on the policy's gathered full weights, and when it rewrites them (Elastic
        Reset, LITI) they are scattered back into the shards by ``set_model_state_dict``.  A strategy without
        a weight-space rule (the base ``after_step``) needs no gather."""
        no_rule = type(self.reference).after_step is ReferenceStrategy.after_step
        if not self._fsdp() or no_rule:
            return self.reference.after_step(self.policy, self.step, kl_now)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        full = _FullWeights(self._policy_state(everywhere=True))
        flags = self.reference.after_step(full, self.step, kl_now)
        if full.written():
            set_model_state_dict(
                self.lp,
                {"model." + k: v for k, v in full.sd.items()},
                options=StateDictOptions(full_state_dict=True),
            )
        return flags

    def _drift_metrics(self) -> dict:
        every = self.cfg.reference.drift_every
        if self.drift is None or not every:
            return {}
        if self.step % every:
            # still account for every reference move (the cumulative drift sums each one)
            if self.reference.moved and self.reference.model is not None:
                with self._unsharded():
                    self.drift.observe_reference(self._ref_model(), True)
                self.reference.moved = False
            return {}
        moved = self.reference.moved
        self.reference.moved = False
        with self._unsharded():
            out = {"drift_kl_init": self.drift.kl_to_init(_AsModel(self.policy))}
        if self.reference.model is not None:
            out["ref_drift_cum"] = self.drift.observe_reference(self._ref_model(), moved)
        return out

    def train(self, steps: int | None = None) -> list[dict]:
        """Run until ``cfg.steps`` (or ``steps`` more steps); saves a final checkpoint and the model."""
        from tqdm import tqdm

        end = self.cfg.steps if steps is None else min(self.cfg.steps, self.step + steps)
        rows = []
        show = self.cfg.log.progress and self.rank == 0
        bar = tqdm(
            total=end,
            initial=self.step,
            desc=f"{self.cfg.method}",
            disable=not show or not sys.stderr.isatty(),
        )
        while self.step < end:
            row = self.train_step()
            rows.append(row)
            bar.update(1)
            post = {k: row[k] for k in ("reward", "loss", "drift_kl_init") if k in row}
            bar.set_postfix({k: f"{v:.3g}" for k, v in post.items()})
        bar.close()
        if self.step >= self.cfg.steps:
            self.save()
        return rows

    # ----- checkpoints ----------------------------------------------------------------------------------

    def _fsdp(self) -> bool:
        return self.world > 1 and self.cfg.dist.strategy == "fsdp"

    def _fqn_optimizer(self) -> bool:
        """``dist.strategy=fsdp`` checkpoints keep the optimizer as a full state dict keyed by parameter
        name (``get_optimizer_state_dict``); DDP / one-process checkpoints keep ``optimizer.state_dict()``."""
        return self.cfg.dist.strategy == "fsdp"

    def _module_states(self, everywhere: bool = False) -> tuple[dict, dict | None]:
        """Full weights of the policy and of the PPO value head (None without a critic).  FSDP: gathered by
        one ``get_model_state_dict`` (a collective), on rank 0 in CPU memory, or on every rank on the
        training device with ``everywhere``."""
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            opts = StateDictOptions(full_state_dict=True, cpu_offload=not everywhere)
            full = get_model_state_dict(self.lp, options=opts)
            parts = {
                pre: {k.removeprefix(pre): v for k, v in full.items() if k.startswith(pre)}
                for pre in ("model.", "value_head.")
            }
            return parts["model."], parts["value_head."] if self.value_head is not None else None
        policy = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        if self.value_head is None:
            return policy, None
        return policy, {k: v.detach().clone() for k, v in self.value_head.state_dict().items()}

    def _policy_state(self, everywhere: bool = False) -> dict:
        """The policy's full weights (see :meth:`_module_states`)."""
        return self._module_states(everywhere)[0]

    def _optimizer_state(self) -> dict:
        if not self._fqn_optimizer():
            return self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        # full (unsharded) tensors on rank 0, CPU: the same file resumes a 1-process or an FSDP run
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.lp, self.optimizer, options=opts)

    def state(self) -> dict:
        policy, value_head = self._module_states()  # collective under FSDP: every rank takes part
        return {
            "step": self.step,
            "policy": policy,
            "value_head": value_head,  # the PPO critic, or None
            "optimizer": self._optimizer_state(),
            "optimizer_format": "full_fqn" if self._fqn_optimizer() else "torch",
            "scheduler": self.scheduler.state_dict(),
            "reference": self.reference.state_dict(),
            "drift": self.drift.state_dict() if self.drift is not None else None,
            "beta": self.beta,
            "preference_queries": self.preference_queries,
            "rng": rng_state(),
            "config": config_to_dict(self.cfg),
        }

    def save(self) -> Path | None:
        """Checkpoint to ``out_dir/checkpoints/step_<k>`` (rank 0 writes; all ranks wait)."""
        path = None
        state = self.state()  # collective under FSDP: every rank takes part
        if self.rank == 0:
            path = save_checkpoint(
                self.out_dir,
                self.step,
                state,
                model=self.policy,
                tokenizer=self.tokenizer,
                keep=self.cfg.log.keep_checkpoints,
                model_state=state["policy"] if self._fsdp() else None,  # full weights, not the shards
            )
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
        return path

    def load_state(self, path: str | Path) -> None:
        """Restore everything :meth:`state` saved (exact resume).  Every rank reads the file; under FSDP
        ``set_model_state_dict`` / ``set_optimizer_state_dict`` shard the full tensors."""
        st = load_checkpoint(path)
        if st["optimizer"] is None:
            raise ValueError(
                f"resume: {str(path)!r} is a weights-only FSDP checkpoint (written before optimizer state "
                "was saved under FSDP); exact resume is impossible without the optimizer state"
            )
        saved = config_from_dict(st["config"])
        for sec in ("method", "algo", "kl", "reference", "rollout", "optim", "seed", "dist"):
            if getattr(saved, sec) != getattr(self.cfg, sec):
                raise ValueError(
                    f"resume: checkpoint {str(path)!r} was written with a different config section {sec!r}"
                )
        fmt = st.get("optimizer_format", "torch")
        if fmt != ("full_fqn" if self._fqn_optimizer() else "torch"):
            raise ValueError(f"resume: {str(path)!r} has optimizer format {fmt!r}, unexpected for this run")
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            full = {"model." + k: v for k, v in st["policy"].items()}
            if self.value_head is not None:
                full.update({"value_head." + k: v for k, v in st["value_head"].items()})
            set_model_state_dict(self.lp, full, options=StateDictOptions(full_state_dict=True))
        else:
            self.policy.load_state_dict(st["policy"])
            if self.value_head is not None:
                self.value_head.load_state_dict(st["value_head"])
        if fmt == "full_fqn":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            opts = StateDictOptions(full_state_dict=True)
            set_optimizer_state_dict(self.lp, self.optimizer, st["optimizer"], options=opts)
        else:
            self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.reference.load_state_dict(st["reference"])
        if self.drift is not None and st["drift"] is not None:
            self.drift.load_state_dict(st["drift"])
        self.step = int(st["step"])
        self.beta = float(st["beta"])
        self.preference_queries = int(st["preference_queries"])
        set_rng_state(st["rng"])


class _FullWeights:
    """The policy seen by a reference rule under FSDP: ``state_dict()`` is the gathered full weights
    (name -> tensor, shared, not copied), so in-place writes (``references._load``) land in ``sd``;
    :meth:`written` tells whether any tensor was modified (its version counter moved)."""

    def __init__(self, sd: dict) -> None:
        self.sd = sd
        self._versions = {k: v._version for k, v in sd.items()}

    def state_dict(self) -> dict:
        return self.sd

    def written(self) -> bool:
        return any(v._version != self._versions[k] for k, v in self.sd.items())


class _AsModel(nn.Module):
    """Adapter: a :class:`ReferenceStrategy` or a model, seen as a causal LM ``forward`` for the drift probe."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kw):
        m = self.inner
        if isinstance(m, ReferenceStrategy):
            ctx = (
                m.model.disable_adapter() if hasattr(m.model, "disable_adapter") else contextlib.nullcontext()
            )
            with ctx:
                return m.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        return m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


def _mask_after_eos(ro: Rollout, eos: int) -> Rollout:
    r = ro.response_ids
    hit = (r == eos).long()
    after = (hit.cumsum(-1) - hit) > 0
    rm = ro.response_mask * (~after).double()
    am = ro.attention_mask.clone()
    am[:, ro.prompt_len :] = rm.long()
    return Rollout(ro.input_ids, am, ro.prompt_len, rm, ro.sampler_logp * rm, ro.temperature)
