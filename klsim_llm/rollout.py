"""Rollouts: keyed sampling, synthetic tasks with in-code tokenizers, reward / preference sources.

Sampling randomness is keyed by ``(seed, step, global sample index)`` (spec §7): each row draws its
uniforms from its own generator, so the tokens of sample ``i`` do not depend on the batch split over
ranks or micro-batches, nor on anything that happened before (resume is exact).  Tokens are drawn by
inverse CDF from ``softmax(logits / T)`` computed in float64; the temperature ``T`` is recorded in the
:class:`Rollout`.

Tasks (:data:`TASKS`) build their own ``PreTrainedTokenizerFast`` from a ``tokenizers`` WordLevel model,
so nothing is downloaded.  A task supplies prompts and a reward (``reward(prompt, response) -> (B,)``),
and optionally a preference ``P(y > y' | x)`` (Nash-MP) or a preference data set (DPO family).
"""

from __future__ import annotations

import importlib
import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from klsim_llm.logprobs import bf16_autocast, position_ids_from_mask

__all__ = [
    "Rollout",
    "generate",
    "sample_seeds",
    "build_tokenizer",
    "Task",
    "BanditTask",
    "SequenceTask",
    "CountTask",
    "PreferenceGameTask",
    "PromptFileTask",
    "BTPairsTask",
    "TASKS",
    "make_task",
    "TextReward",
    "ModelReward",
    "resolve_callable",
    "left_pad",
]


# ---------------------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """A batch of prompts with sampled responses.

    Attributes
    ----------
    input_ids, attention_mask : Tensor (B, P + T)
        Left-padded prompts followed by the responses (padding after EOS is masked out).
    prompt_len : int
        P; the response occupies columns ``[P, P + T)``.
    response_mask : Tensor (B, T) float
        1 on response tokens (up to and including EOS).
    sampler_logp : Tensor (B, T)
        log π_sampler(y_t) at the sampling temperature (detached), 0 on padding.
    temperature : float
        Sampling temperature T.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_len: int
    response_mask: torch.Tensor
    sampler_logp: torch.Tensor
    temperature: float

    @property
    def prompt_ids(self) -> torch.Tensor:
        return self.input_ids[:, : self.prompt_len]

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len :]


def sample_seeds(seed: int, step: int, indices: Sequence[int], stream: int = 0) -> list[int]:
    """One 63-bit generator seed per global sample index, keyed by ``(seed, stream, step, index)``."""
    return [
        int(
            np.random.SeedSequence([int(seed), int(stream), int(step), int(i)]).generate_state(2, np.uint64)[
                0
            ]
            >> 1
        )
        for i in indices
    ]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to (B, P) ids and mask."""
    P = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), P), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, P - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, P - len(s) :] = 1
    return ids, mask


def _supports_cache(model: nn.Module) -> bool:
    from transformers import PreTrainedModel

    base = getattr(model, "get_base_model", lambda: model)()
    return isinstance(base, PreTrainedModel) and bool(getattr(base.config, "use_cache", False))


def _keeps_last_logits(model: nn.Module) -> dict:
    """``{"logits_to_keep": 1}`` when the model's forward takes it (transformers causal LMs): the lm_head
    then runs on the last position only (the prompt's other positions cost a (P-1)·B·V·H matmul)."""
    import inspect

    base = getattr(model, "get_base_model", lambda: model)()
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    seeds: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
    autocast: bool | str | None = None,
) -> Rollout:
    """Sample responses with per-row keyed generators (inverse-CDF on float64 probabilities).

    Parameters
    ----------
    model : causal LM (``model(input_ids, attention_mask, position_ids, ...) .logits``)
    prompt_ids, prompt_mask : Tensor (B, P), left padded
    seeds : B ints (see :func:`sample_seeds`)
    max_new_tokens : int
        T; responses stop early at ``eos_token_id`` (the rest is masked).
    temperature : float
        Sampling temperature (recorded in the result).
    autocast : str, bool or None
        Device type for bf16 autocast of the forward passes (see :func:`~klsim_llm.logprobs.bf16_autocast`);
        the sampling distribution is computed in float64 either way.
    """
    if len(seeds) != prompt_ids.shape[0]:
        raise ValueError(f"seeds: need {prompt_ids.shape[0]} seeds, got {len(seeds)}")
    dev = prompt_ids.device
    B, P = prompt_ids.shape
    u = torch.empty((B, max_new_tokens), dtype=torch.float64)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        u[i] = torch.rand(max_new_tokens, generator=g, dtype=torch.float64)
    u = u.to(dev)
    ids, mask = prompt_ids, prompt_mask.long()
    alive = torch.ones(B, dtype=torch.bool, device=dev)
    resp_mask = torch.zeros((B, max_new_tokens), dtype=torch.float64, device=dev)
    logps = torch.zeros((B, max_new_tokens), dtype=torch.float64, device=dev)
    use_cache = _supports_cache(model)
    keep = _keeps_last_logits(model)
    past = None
    cur_ids, cur_pos = ids, position_ids_from_mask(mask)
    ctx = bf16_autocast(autocast)
    for t in range(max_new_tokens):
        with ctx:
            if use_cache:
                out = model(
                    input_ids=cur_ids,
                    attention_mask=mask,
                    position_ids=cur_pos,
                    past_key_values=past,
                    use_cache=True,
                    **keep,
                )
                past = out.past_key_values
            else:
                out = model(
                    input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), **keep
                )
        z = out.logits[:, -1].double() / temperature
        lp = torch.log_softmax(z, dim=-1)
        cdf = lp.exp().cumsum(-1)
        tok = (
            torch.searchsorted(cdf, (u[:, t] * cdf[:, -1]).unsqueeze(-1))
            .squeeze(-1)
            .clamp_max(z.shape[-1] - 1)
        )
        tok = torch.where(alive, tok, torch.full_like(tok, pad_token_id))
        resp_mask[:, t] = alive.double()
        logps[:, t] = torch.where(
            alive, lp.gather(-1, tok.unsqueeze(-1)).squeeze(-1), torch.zeros_like(z[:, 0])
        )
        ids = torch.cat([ids, tok.unsqueeze(-1)], dim=1)
        mask = torch.cat([mask, alive.long().unsqueeze(-1)], dim=1)
        if eos_token_id is not None:
            alive = alive & (tok != eos_token_id)
        cur_ids = tok.unsqueeze(-1)
        cur_pos = position_ids_from_mask(mask)[:, -1:]
        if not bool(alive.any()):
            pad = max_new_tokens - t - 1
            if pad:
                ids = torch.cat([ids, torch.full((B, pad), pad_token_id, dtype=ids.dtype, device=dev)], dim=1)
                mask = torch.cat([mask, torch.zeros((B, pad), dtype=mask.dtype, device=dev)], dim=1)
            break
    return Rollout(ids, mask, P, resp_mask, logps, float(temperature))


# ---------------------------------------------------------------------------------------------------------
# tokenizers and tasks
# ---------------------------------------------------------------------------------------------------------


def build_tokenizer(words: Sequence[str], *, pad: str | None = None, eos: str | None = None):
    """A ``PreTrainedTokenizerFast`` over ``words`` (ids in order), whitespace pre-tokenized, no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(words)}
    if len(vocab) != len(words):
        raise ValueError("words: duplicate tokens")
    unk = pad if pad is not None else words[0]
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kw = {"pad_token": pad if pad is not None else words[0], "unk_token": unk}
    if eos is not None:
        kw["eos_token"] = eos
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kw)


class Task:
    """Base class: ``tokenizer``, ``prompts`` (token-id lists), ``eos_token_id``, ``reward``."""

    tokenizer = None
    prompts: list[list[int]]
    eos_token_id: int | None = None
    pairs: list[tuple[list[int], list[int], list[int]]] | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def reward(
        self, prompt_ids: torch.Tensor, response_ids: torch.Tensor, response_mask: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no reward")

    def preference(
        self,
        prompt_ids: torch.Tensor,
        y: torch.Tensor,
        y_mask: torch.Tensor,
        y2: torch.Tensor,
        y2_mask: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no preference function")


class BanditTask(Task):
    """One prompt token, one response token; reward ``rewards[y]`` over the whole vocabulary."""

    def __init__(self, rewards: Sequence[float]) -> None:
        self.rewards = torch.as_tensor(list(rewards), dtype=torch.float64)
        if self.rewards.ndim != 1 or len(self.rewards) < 2 or not torch.isfinite(self.rewards).all():
            raise ValueError("rewards: need a finite 1-d list of length >= 2 (one per vocabulary token)")
        self.tokenizer = build_tokenizer([f"t{i}" for i in range(len(self.rewards))])
        self.prompts = [[0]]

    def reward(self, prompt_ids, response_ids, response_mask):
        return self.rewards.to(response_ids.device)[response_ids[:, 0]]


class SequenceTask(Task):
    """Fixed-length responses over a tiny vocabulary, reward table over all ``V**L`` sequences (enumerable).

    ``reward_table`` (V**L,) indexed by the base-V number of the response; default: seeded normal draws.
    """

    def __init__(
        self, vocab_size: int = 2, length: int = 3, reward_table: Sequence[float] | None = None, seed: int = 0
    ):
        if vocab_size < 2 or length < 1:
            raise ValueError("vocab_size must be >= 2 and length >= 1")
        self.V, self.L = int(vocab_size), int(length)
        n = self.V**self.L
        if reward_table is None:
            reward_table = np.random.default_rng(seed).normal(size=n)
        self.table = torch.as_tensor(np.asarray(reward_table, dtype=np.float64))
        if self.table.shape != (n,):
            raise ValueError(f"reward_table must have {n} entries, got {tuple(self.table.shape)}")
        self.tokenizer = build_tokenizer([f"t{i}" for i in range(self.V)])
        self.prompts = [[0]]

    def sequences(self) -> torch.Tensor:
        """All responses, (V**L, L) int64, in base-V order (matching ``reward_table``)."""
        return torch.tensor(list(itertools.product(range(self.V), repeat=self.L)), dtype=torch.long)

    def index(self, response_ids: torch.Tensor) -> torch.Tensor:
        w = self.V ** torch.arange(self.L - 1, -1, -1, device=response_ids.device)
        return (response_ids[:, : self.L] * w).sum(-1)

    def reward(self, prompt_ids, response_ids, response_mask):
        return self.table.to(response_ids.device)[self.index(response_ids)]


class CountTask(Task):
    """Default synthetic task: random word prompts; reward = fraction of response tokens equal to ``target``.

    Vocabulary: ``<pad>``, ``<eos>``, ``w0 … w{n_words-1}``; ``target`` is ``w0`` unless given.
    """

    def __init__(
        self,
        n_words: int = 8,
        n_prompts: int = 32,
        min_len: int = 2,
        max_len: int = 4,
        seed: int = 0,
        target: str = "w0",
    ):
        words = ["<pad>", "<eos>"] + [f"w{i}" for i in range(n_words)]
        if target not in words[2:]:
            raise ValueError(f"target must be one of the words, got {target!r}")
        self.tokenizer = build_tokenizer(words, pad="<pad>", eos="<eos>")
        self.eos_token_id = 1
        self.target = words.index(target)
        rng = np.random.default_rng(seed)
        self.prompts = [
            [int(t) for t in rng.integers(2, len(words), size=int(rng.integers(min_len, max_len + 1)))]
            for _ in range(n_prompts)
        ]

    def reward(self, prompt_ids, response_ids, response_mask):
        hit = ((response_ids == self.target).double() * response_mask).sum(-1)
        return hit / response_mask.sum(-1).clamp_min(1.0)


class PreferenceGameTask(Task):
    """Single-token preference game: ``P(y > y') = P[y, y']`` (P + P^T = 1) over the whole vocabulary."""

    def __init__(self, P: Sequence[Sequence[float]]):
        self.P = torch.as_tensor(np.asarray(P, dtype=np.float64))
        K = self.P.shape[0]
        if self.P.shape != (K, K) or not torch.allclose(
            self.P + self.P.T, torch.ones_like(self.P), atol=1e-12
        ):
            raise ValueError("P must be square with P + P^T = 1")
        self.tokenizer = build_tokenizer([f"t{i}" for i in range(K)])
        self.prompts = [[0]]

    def preference(self, prompt_ids, y, y_mask, y2, y2_mask):
        return self.P.to(y.device)[y[:, 0], y2[:, 0]]

    def reward(self, prompt_ids, response_ids, response_mask):
        """Expected win rate against the uniform opponent (for eval)."""
        return self.P.to(response_ids.device).mean(1)[response_ids[:, 0]]


class BTPairsTask(Task):
    """Tabular preference data with exact Bradley-Terry label frequencies.

    Single-token responses ``t1 … tK`` after the prompt ``t0``; for every pair (i, j) the data hold
    ``weights[i]`` copies of (i ≻ j) and ``weights[j]`` copies of (j ≻ i), so the empirical label frequency
    is exactly σ(r_i − r_j) with r = log(weights).  The DPO optimum restricted to the responses is
    π* ∝ π_ref · weights^{1/β} [DPO, arXiv:2305.18290].
    """

    def __init__(self, weights: Sequence[int]):
        w = [int(x) for x in weights]
        if len(w) < 2 or min(w) < 1:
            raise ValueError("weights: need >= 2 positive integers")
        self.weights = w
        self.tokenizer = build_tokenizer(["t0"] + [f"t{i + 1}" for i in range(len(w))])
        self.prompts = [[0]]
        pairs = []
        for i, j in itertools.combinations(range(len(w)), 2):
            pairs += [([0], [i + 1], [j + 1])] * w[i] + [([0], [j + 1], [i + 1])] * w[j]
        self.pairs = pairs

    def reward(self, prompt_ids, response_ids, response_mask):
        r = torch.zeros(self.vocab_size, dtype=torch.float64)
        r[1:] = torch.log(torch.as_tensor(self.weights, dtype=torch.float64))
        return r.to(response_ids.device)[response_ids[:, 0]]


class PromptFileTask(Task):
    """Real prompts: one per line of a text file (or the ``"prompt"`` field of a JSONL file), tokenized with
    the model's tokenizer.  The reward must come from ``task.reward`` (a ``fn(prompts, completions)``
    callable) or ``task.reward_model``; a preference from ``task.preference``."""

    def __init__(self, path: str, tokenizer=None, max_prompt_tokens: int = 512, limit: int | None = None):
        import json
        from pathlib import Path

        if tokenizer is None:
            raise ValueError(
                "task 'prompts' needs the model's tokenizer (model.name_or_path or model.tokenizer)"
            )
        f = Path(path)
        if not f.is_file():
            raise ValueError(f"task.kwargs.path={path!r} does not exist")
        lines = [x for x in f.read_text().splitlines() if x.strip()]
        texts = [json.loads(x)["prompt"] for x in lines] if f.suffix == ".jsonl" else lines
        if limit is not None:
            texts = texts[:limit]
        if not texts:
            raise ValueError(f"task.kwargs.path={path!r} holds no prompts")
        self.tokenizer = tokenizer
        self.eos_token_id = tokenizer.eos_token_id
        enc = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_prompt_tokens)
        self.prompts = [list(ids) for ids in enc["input_ids"]]


TASKS: dict[str, type] = {
    "prompts": PromptFileTask,
    "bandit": BanditTask,
    "sequence": SequenceTask,
    "count": CountTask,
    "preference_game": PreferenceGameTask,
    "bt_pairs": BTPairsTask,
}
"""Built-in synthetic tasks (``task.name`` in the config)."""


def make_task(name: str, kwargs: dict | None = None, tokenizer=None) -> Task:
    """Instantiate a task (``ValueError`` for unknown names); ``tokenizer`` goes to tasks that take one."""
    if name not in TASKS:
        raise ValueError(f"task.name={name!r} is not one of {sorted(TASKS)}")
    kw = dict(kwargs or {})
    if "tokenizer" in inspect.signature(TASKS[name]).parameters:
        kw["tokenizer"] = tokenizer
    return TASKS[name](**kw)


# ---------------------------------------------------------------------------------------------------------
# reward sources
# ---------------------------------------------------------------------------------------------------------


def resolve_callable(spec: str) -> Callable:
    """Import ``'package.module:function'``."""
    if ":" not in spec:
        raise ValueError(f"callable spec {spec!r} must look like 'package.module:function'")
    mod, _, name = spec.partition(":")
    fn = getattr(importlib.import_module(mod), name, None)
    if not callable(fn):
        raise ValueError(f"{spec!r} does not name a callable")
    return fn


class TextReward:
    """Wrap ``fn(prompts: list[str], completions: list[str]) -> list[float]`` (TRL-style) as a token reward."""

    def __init__(self, fn: Callable, tokenizer) -> None:
        self.fn, self.tokenizer = fn, tokenizer

    def __call__(self, prompt_ids, response_ids, response_mask) -> torch.Tensor:
        tok = self.tokenizer
        prompts = tok.batch_decode(prompt_ids, skip_special_tokens=True)
        comps = [
            tok.decode(r[m.bool()].tolist(), skip_special_tokens=True)
            for r, m in zip(response_ids.cpu(), response_mask.cpu())
        ]
        out = torch.as_tensor(list(self.fn(prompts, comps)), dtype=torch.float64)
        if out.shape != (len(prompts),) or not torch.isfinite(out).all():
            raise ValueError("reward callable must return one finite float per completion")
        return out.to(response_ids.device)


class ModelReward:
    """A local ``AutoModelForSequenceClassification`` folder scoring prompt + response (logit 0).

    The prompt's left padding (``pad_token_id``) and the response's masked tail are masked out; the policy
    and the reward model must share the tokenizer."""

    def __init__(self, path: str, device: torch.device | str = "cpu", pad_token_id: int = 0) -> None:
        from transformers import AutoModelForSequenceClassification

        self.model = (
            AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True).to(device).eval()
        )
        self.pad_token_id = int(pad_token_id)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.pad_token_id

    @torch.no_grad()
    def __call__(self, prompt_ids, response_ids, response_mask) -> torch.Tensor:
        # left-padded prompt: padding is the leading run of pad tokens
        pmask = (prompt_ids != self.pad_token_id).long().cummax(-1).values
        resp = torch.where(
            response_mask.bool(), response_ids, torch.full_like(response_ids, self.pad_token_id)
        )
        ids = torch.cat([prompt_ids, resp], dim=1)  # classifiers pool the last non-pad token
        mask = torch.cat([pmask, response_mask.long()], dim=1)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        dev = self.model.device
        out = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev))
        return out.logits[:, 0].double().to(response_ids.device)
