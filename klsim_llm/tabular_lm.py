"""Enumerable LMs on the torch side and exact oracles from klsim (spec ``llm-bridge.md`` §1).

A :class:`Problem` bundles a policy / reference / sampler (old) logit table, the enumeration of all responses,
a weighted sample set and the extra per-response data (rewards, preferences).  :func:`torch_expectation` feeds
each sample through the *real* registry loss (one call per sample) and returns Σ_s w_s ℓ_s and its gradient
with respect to the policy logit table by autograd (weights held fixed = sg(q), so this is the exact
expected gradient of the sampled loss).  :func:`klsim_expectation` evaluates the same quantity with the
numpy twin and hand-derived gradients (:mod:`klsim.sequence`).  :data:`PARITY_CASES` lists at least one
parameter set per registry entry; the parity test loops over the registries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from klsim.sequence import (
    Enumeration,
    Samples,
    SequenceLM,
    enumerate_sequences,
    expected_loss,
    gather_batch,
    sequence_logprobs,
    single_samples,
    tuple_samples,
)
from klsim_llm.registry import REGISTRIES, Entry

__all__ = [
    "Problem",
    "make_problem",
    "torch_batch",
    "torch_expectation",
    "klsim_expectation",
    "PARITY_CASES",
    "parity_case_for",
]


@dataclass
class Problem:
    """One enumerable fixture.  ``samples`` weights are the sampling law (or any positive weights)."""

    policy: SequenceLM
    ref: SequenceLM
    old: SequenceLM | None
    enum: Enumeration
    samples: Samples
    rewards: np.ndarray  # (X, Y)
    preference: np.ndarray | None = None  # (X, Y): P(y ≻ opponent)
    anchor: SequenceLM | None = None
    extra: dict = field(default_factory=dict)

    def batch(self) -> dict[str, np.ndarray]:
        """The per-sample numpy arrays (:func:`klsim.sequence.gather_batch`)."""
        extra = {"anchor": self.anchor} if self.anchor is not None else None
        b = gather_batch(self.enum, self.samples, self.policy, self.ref, self.old, self.rewards, extra)
        if self.preference is not None:
            b["preference"] = self.preference[self.samples.prompt[:, None], self.samples.seq]
        for key in ("values", "old_values"):  # critic tables V(x, h) (X, H) -> V_t per row (S, K, L)
            if key in self.extra:
                x = self.samples.prompt[:, None, None]
                h = self.enum.prefix[self.samples.seq]
                b[key] = np.where(self.enum.mask[self.samples.seq], self.extra[key][x, h], 0.0)
        return b


def make_problem(
    *,
    n_prompts: int = 2,
    n_vocab: int = 3,
    max_len: int = 2,
    eos: int | None = None,
    group: int = 1,
    sampler: str = "policy",
    off_policy: bool = False,
    seed: int = 0,
    scale: float = 1.0,
    max_samples: int | None = 60,
    support_rows: bool = False,
    tie_rewards: bool = False,
    critic: bool = False,
) -> Problem:
    """A random enumerable problem.

    ``group`` = K rows per sample (K-tuples of iid responses; subsampled to ``max_samples`` with their exact
    weights when larger); ``sampler`` ∈ {policy, old, ref}; ``support_rows``: one sample per prompt whose
    rows are the whole support (best-of-N); ``critic``: random value tables ``extra["values"]`` and
    ``extra["old_values"]`` (X, H) (the same table unless ``off_policy``) for PPO with a critic.
    """
    rng = np.random.default_rng(seed)
    policy = SequenceLM.random(n_prompts, n_vocab, max_len, eos=eos, scale=scale, seed=seed + 1)
    ref = SequenceLM.random(n_prompts, n_vocab, max_len, eos=eos, scale=scale, seed=seed + 2)
    old = (
        SequenceLM.random(n_prompts, n_vocab, max_len, eos=eos, scale=scale, seed=seed + 3)
        if off_policy
        else None
    )
    anchor = SequenceLM.random(n_prompts, n_vocab, max_len, eos=eos, scale=scale, seed=seed + 4)
    enum = enumerate_sequences(n_vocab, max_len, eos)
    Y = enum.n_sequences
    q = {"policy": policy, "old": old if old is not None else policy, "ref": ref}[sampler]
    if support_rows:
        samples = Samples(
            np.arange(n_prompts), np.tile(np.arange(Y), (n_prompts, 1)), policy.prompt_weights.copy()
        )
    elif group == 1:
        samples = single_samples(q, enum)
    else:
        samples = tuple_samples(q, enum, group)
        if max_samples is not None and len(samples.weight) > max_samples:
            keep = np.sort(rng.choice(len(samples.weight), size=max_samples, replace=False))
            samples = Samples(samples.prompt[keep], samples.seq[keep], samples.weight[keep])
    rewards = (
        rng.integers(0, 3, size=(n_prompts, Y)).astype(float)
        if tie_rewards
        else rng.normal(size=(n_prompts, Y))
    )
    P = rng.uniform(size=(n_prompts, Y, Y))
    P = 0.5 * (P + 1.0 - np.swapaxes(P, 1, 2))  # P + Pᵀ = 1
    opp = np.exp(sequence_logprobs(anchor, enum))
    preference = np.einsum("xyz,xz->xy", P, opp)
    extra: dict = {}
    if critic:
        extra["values"] = rng.normal(size=policy.logits.shape[:2])
        extra["old_values"] = (
            extra["values"] + 0.3 * rng.normal(size=extra["values"].shape) if off_policy else extra["values"]
        )
    return Problem(policy, ref, old, enum, samples, rewards, preference, anchor, extra)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a))


def torch_batch(problem: Problem, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Torch per-sample arrays from a policy table ``z`` (X, H, V) (differentiable): ``logp``, ``logq``;
    and the fixed ``ref_logp``, ``ref_logq``, ``old_logp``, ``mask``, ``rewards``, ``preference``,
    ``anchor_logp`` from the numpy batch."""
    b = problem.batch()
    e, s = problem.enum, problem.samples
    logpol = torch.log_softmax(z, -1)
    x = torch.as_tensor(s.prompt)[:, None, None]
    h = torch.as_tensor(e.prefix[s.seq])
    logq = logpol[x, h]  # (S, K, L, V)
    tok = torch.as_tensor(e.tokens[s.seq])
    mask = torch.as_tensor(e.mask[s.seq])
    lp = torch.where(mask, torch.gather(logq, -1, tok[..., None])[..., 0], torch.zeros((), dtype=z.dtype))
    out = {"logp": lp, "logq": logq, "mask": mask}
    for k in (
        "ref_logp",
        "old_logp",
        "ref_logq",
        "rewards",
        "preference",
        "anchor_logp",
        "values",
        "old_values",
    ):
        if k in b:
            out[k] = _t(b[k])
    return out


def _call(entry: Entry, tb: dict, s: int, params: dict, on_policy: bool):
    fam = entry.family
    lp, rl, m = tb["logp"][s], tb["ref_logp"][s], tb["mask"][s]
    old = None if on_policy else tb["old_logp"][s]
    if fam in ("kl", "preset"):
        return entry.fn(lp, rl, m, old_logp=old, logits=tb["logq"][s], ref_logits=tb["ref_logq"][s], **params)
    if fam == "div":
        return entry.fn(tb["logq"][s], tb["ref_logq"][s], m, **params)
    if fam == "pref":
        kw = dict(params)
        if entry.name in ("tdpo1", "tdpo2"):
            kw.update(
                logits_w=tb["logq"][s, 0:1],
                ref_logits_w=tb["ref_logq"][s, 0:1],
                logits_l=tb["logq"][s, 1:2],
                ref_logits_l=tb["ref_logq"][s, 1:2],
            )
        return entry.fn(lp[0:1], rl[0:1], m[0:1], lp[1:2], rl[1:2], m[1:2], **kw)
    if fam == "pg":
        if "values" in tb:  # PPO with a critic: rollout values are the old ones off-policy
            params = dict(
                params, values=tb["values"][s], old_values=None if on_policy else tb["old_values"][s]
            )
        return entry.fn(lp, rl, m, tb["rewards"][s], old_logp=old, group_size=lp.shape[0], **params)
    if fam == "nash":
        return entry.fn(lp, rl, tb["anchor_logp"][s], m, tb["preference"][s], **params)
    if fam in ("occupancy", "bon"):
        return entry.fn(lp, rl, m, tb["rewards"][s], **params)
    raise ValueError(f"family: no torch batch builder for {fam!r}")


def torch_expectation(
    entry: Entry, problem: Problem, params: dict, z: torch.Tensor | None = None, on_policy: bool = True
) -> tuple[float, np.ndarray]:
    """Σ_s w_s ℓ_s with ℓ_s the real torch loss on sample s, and its gradient w.r.t. the policy table."""
    if z is None:
        z = torch.tensor(problem.policy.logits, dtype=torch.float64, requires_grad=True)
    tb = torch_batch(problem, z)
    w = torch.as_tensor(problem.samples.weight)
    total = torch.zeros((), dtype=torch.float64)
    for s in range(len(w)):
        loss, _ = _call(entry, tb, s, params, on_policy)
        total = total + w[s] * loss
    (grad,) = torch.autograd.grad(total, z, allow_unused=True)
    grad = torch.zeros_like(z) if grad is None else grad
    return float(total.detach()), grad.detach().numpy()


def klsim_expectation(entry: Entry, problem: Problem, params: dict, per_sample: bool = False):
    """The same quantity from the numpy twin (:func:`klsim.sequence.expected_loss`)."""
    twin = entry.resolve_twin()
    out = twin(problem.batch(), **params)
    return expected_loss(problem.policy, problem.enum, problem.samples, out, per_sample=per_sample)


# --- parity cases: (problem kwargs, loss params, on_policy) per entry ------------------------------------

_P1 = dict(n_prompts=2, n_vocab=3, max_len=2)
_PE = dict(n_prompts=2, n_vocab=3, max_len=3, eos=2)


def _kl_cases(name: str) -> list[tuple[dict, dict, bool]]:
    cases = [(_P1, {}, True), (dict(_PE, sampler="old", off_policy=True), {}, False)]
    if name in ("k1", "k2", "k3", "k3_rho", "k2_rho", "k3_st", "is_k1"):
        cases += [
            (_PE, dict(agg="token_mean", log_ratio_clamp=0.8, kl_clamp=0.3), True),
            (
                dict(_PE, sampler="old", off_policy=True),
                dict(placement="reward", agg="seq_mean_token_mean"),
                False,
            ),
            (dict(_P1, off_policy=True), dict(is_level="sequence", agg="seq_sum_over_maxlen"), False),
        ]
    if name == "is_k1":
        cases.append((dict(_P1, sampler="old", off_policy=True), dict(is_clamp=1.1), False))
    return cases


def _div_cases(name: str) -> list[tuple[dict, dict, bool]]:
    par = {
        "jsd_beta": [dict(beta=0.3)],
        "gkd_jsd": [dict(beta=0.0), dict(beta=1.0), dict(beta=0.6)],
        "alpha": [dict(alpha=0.3), dict(alpha=0.0), dict(alpha=1.0)],
        "tsallis": [dict(tsallis_q=1.5)],
    }.get(name, [{}])
    chunks = [dict(chunk_rows=2, chunk_vocab=2, temperature=0.7)] + [{}] * (len(par) - 1)
    return [(_PE, dict(p, **c), True) for p, c in zip(par, chunks)] + [
        (_P1, dict(reduction="token_mean"), True)
    ]


def _pref_cases(name: str) -> list[tuple[dict, dict, bool]]:
    pb = dict(_PE, group=2, sampler="ref", max_samples=16)
    base = dict(beta=0.7)
    extra = {
        "fdpo": [dict(divergence=d, alpha=0.3) for d in ("rkl", "fkl", "js", "alpha")],
        "is_daa": [dict(eps=0.1), dict(eps=0.3, base="ipo")],
        "hdpo": [dict(alpha=0.6)],
        "tdpo2": [dict(alpha=0.5)],
    }.get(name, [{}])
    return [(pb, dict(base, **e), True) for e in extra]


def _pg_cases(name: str) -> list[tuple[dict, dict, bool]]:
    g = 3 if name == "grpo" else 2
    pb = dict(_PE, group=g, max_samples=16)
    cases = [(pb, dict(beta=0.3), True), (pb, dict(beta=0.2, kl_estimator="k3", kl_placement="loss"), True)]
    if name == "ppo":
        cases.append(
            (
                dict(pb, sampler="old", off_policy=True, scale=1.5),
                dict(beta=0.1, clip_eps=(0.2, 0.3), kl_estimator="k2", kl_placement="loss"),
                False,
            )
        )
        # with a critic: GAE(γ, λ) advantages and the clipped value loss (values from random tables)
        cases += [
            (dict(pb, critic=True), dict(beta=0.3, gamma=0.9, lam=0.7, vf_coef=0.5, value_clip=0.2), True),
            (
                dict(pb, sampler="old", off_policy=True, scale=1.5, critic=True),
                dict(beta=0.2, kl_estimator="k3", gamma=1.0, lam=0.5, vf_coef=0.3, value_clip=0.1),
                False,
            ),
            (
                dict(pb, critic=True),
                dict(beta=0.2, kl_estimator="k3", kl_placement="loss", agg="token_mean", lam=0.0),
                True,
            ),
            (pb, dict(beta=0.3, gamma=0.8, lam=0.6), True),  # no values: V = 0, γλ-discounted rewards
        ]
    return cases


PARITY_CASES: dict[str, dict[str, list[tuple[dict, dict, bool]]]] = {
    "kl_estimators": {n: _kl_cases(n) for n in REGISTRIES["kl_estimators"]},
    "divergences": {n: _div_cases(n) for n in REGISTRIES["divergences"]},
    "objectives": {
        **{
            n: _pref_cases(n)
            for n in ("dpo", "ipo", "ipo_lennorm", "fdpo", "is_daa", "hdpo", "tdpo1", "tdpo2")
        },
        **{n: _pg_cases(n) for n in ("reinforce", "rloo", "grpo", "ppo")},
        "nash_mp": [(_PE, dict(beta=0.5, eta=2.0), True)],
        "occupancy_chi2": [
            (_PE, dict(kl_coef=0.7), True),
            (_P1, dict(kl_coef=0.5, log_ratio_clamp=0.2), True),
        ],
        "bon_distill": [
            (dict(_PE, support_rows=True, tie_rewards=True), dict(n=4, divergence=d), True)
            for d in ("fkl", "rkl")
        ],
    },
    "presets": {
        n: [(_PE, {}, True), (dict(_PE, sampler="old", off_policy=True), {}, False)]
        for n in REGISTRIES["presets"]
    },
}
"""(problem kwargs, loss params, on-policy flag) per registry entry; advantages are checked on values."""


def parity_case_for(registry: str, name: str) -> list[tuple[dict, dict, bool]]:
    """The parity cases of an entry (``KeyError`` if it has none: such an entry fails the parity test)."""
    return PARITY_CASES[registry][name]
