"""Enumerable autoregressive policies from a logit table, and exact expectations by enumeration.

A :class:`SequenceLM` holds a logit table ``z[x, h, v]`` over prompts ``x``, prefixes ``h`` (every string
of length < L over the V tokens) and next tokens ``v``; ``π(v | x, h) = softmax(z[x, h])_v``.  A response
``y = (y_1..y_T)`` has ``T = L`` tokens, or ends at the first EOS token when ``eos`` is set.  Every
response can be enumerated (V ≤ 5, L ≤ 3 gives at most 125 of them), so expectations are finite sums.

Spec ``llm-bridge.md`` §1 ("Tabular LM").  The gradients returned here are gradients with respect to the
logit table, derived by hand: ∂ log π(y_t | h)/∂z[h] = e_{y_t} − π(·|h).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from klsim._validation import check_distribution, check_finite, check_int, check_shape
from klsim.divergences import log_softmax

__all__ = [
    "SequenceLM",
    "Enumeration",
    "Samples",
    "TwinOut",
    "n_prefixes",
    "enumerate_sequences",
    "token_logprobs",
    "position_logprobs",
    "sequence_logprobs",
    "prefix_occupancy",
    "single_samples",
    "tuple_samples",
    "gather_batch",
    "expected_loss",
    "seq_rkl",
    "seq_fkl",
    "seq_chi2",
    "partial_rkl_grad",
    "partial_fkl_grad",
    "seq_objective_grad",
    "exact_values",
]


def n_prefixes(n_vocab: int, max_len: int) -> int:
    """Number of prefixes of length 0..L−1 over V tokens: Σ_{k<L} V^k."""
    return int(sum(n_vocab**k for k in range(max_len)))


@dataclass(frozen=True)
class SequenceLM:
    """An autoregressive policy given by its logit table.

    Parameters
    ----------
    logits : ndarray, shape (X, H, V)
        ``z[x, h, v]``; ``H = Σ_{k<L} V^k`` prefixes, indexed by length then base-V value.
    max_len : int
        L ≥ 1, the longest response.
    eos : int or None
        Token that ends a response (then responses have length 1..L); ``None``: every response has length L.
    prompt_weights : ndarray, shape (X,), optional
        Prompt distribution (uniform by default).
    """

    logits: np.ndarray
    max_len: int
    eos: int | None = None
    prompt_weights: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        z = np.array(self.logits, dtype=np.float64)
        if z.ndim != 3:
            raise ValueError(f"logits: expected shape (X, H, V), got {z.shape}")
        check_finite("logits", z, ("x", "h", "v"))
        L = check_int("max_len", self.max_len, minimum=1)
        X, H, V = z.shape
        if V < 2:
            raise ValueError(f"logits: need at least 2 tokens, got V={V}")
        if H != n_prefixes(V, L):
            raise ValueError(
                f"logits: axis 1 must have {n_prefixes(V, L)} prefixes for V={V}, L={L}, got {H}"
            )
        if self.eos is not None and not 0 <= int(self.eos) < V:
            raise ValueError(f"eos: must lie in [0, {V}), got {self.eos!r}")
        w = np.full(X, 1.0 / X) if self.prompt_weights is None else np.array(self.prompt_weights, float)
        check_shape("prompt_weights", w, (X,))
        check_distribution("prompt_weights", w)
        z.setflags(write=False)
        w.setflags(write=False)
        object.__setattr__(self, "logits", z)
        object.__setattr__(self, "prompt_weights", w)
        object.__setattr__(self, "max_len", L)

    @property
    def n_prompts(self) -> int:
        return int(self.logits.shape[0])

    @property
    def n_vocab(self) -> int:
        return int(self.logits.shape[2])

    @property
    def log_policy(self) -> np.ndarray:
        """log π(·|x, h), shape (X, H, V)."""
        return log_softmax(self.logits)

    def with_logits(self, logits: np.ndarray) -> SequenceLM:
        """Same structure, new table."""
        return SequenceLM(logits, self.max_len, self.eos, self.prompt_weights)

    @classmethod
    def random(
        cls,
        n_prompts: int,
        n_vocab: int,
        max_len: int,
        *,
        eos: int | None = None,
        scale: float = 1.0,
        seed: int = 0,
    ) -> SequenceLM:
        """Logits iid N(0, scale²) from ``numpy.random.default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        z = scale * rng.standard_normal((n_prompts, n_prefixes(n_vocab, max_len), n_vocab))
        return cls(z, max_len, eos)


@dataclass(frozen=True)
class Enumeration:
    """Every response of a (V, L, eos) structure.

    Attributes
    ----------
    tokens : ndarray (Y, L) int64   tokens (0 on padding)
    mask : ndarray (Y, L) bool       response positions
    prefix : ndarray (Y, L) int64    prefix index of y_<t (0 on padding)
    """

    tokens: np.ndarray
    mask: np.ndarray
    prefix: np.ndarray
    n_vocab: int
    max_len: int

    @property
    def n_sequences(self) -> int:
        return int(self.tokens.shape[0])


def enumerate_sequences(n_vocab: int, max_len: int, eos: int | None = None) -> Enumeration:
    """All responses, in lexicographic order of their (padded) token strings."""
    V = check_int("n_vocab", n_vocab, minimum=2)
    L = check_int("max_len", max_len, minimum=1)
    rows: list[tuple[int, ...]] = []

    def rec(prefix: tuple[int, ...]) -> None:
        if len(prefix) == L or (eos is not None and prefix and prefix[-1] == eos):
            rows.append(prefix)
            return
        for v in range(V):
            rec(prefix + (v,))

    rec(())
    Y = len(rows)
    tokens = np.zeros((Y, L), np.int64)
    mask = np.zeros((Y, L), bool)
    prefix = np.zeros((Y, L), np.int64)
    offsets = np.cumsum([0] + [V**k for k in range(L)])
    for i, r in enumerate(rows):
        code = 0
        for t, v in enumerate(r):
            tokens[i, t] = v
            mask[i, t] = True
            prefix[i, t] = offsets[t] + code
            code = code * V + v
    return Enumeration(tokens, mask, prefix, V, L)


def position_logprobs(lm: SequenceLM, enum: Enumeration) -> np.ndarray:
    """log π(·|x, y_<t) at every position, shape (X, Y, L, V)."""
    return lm.log_policy[:, enum.prefix, :]


def token_logprobs(lm: SequenceLM, enum: Enumeration) -> np.ndarray:
    """log π(y_t|x, y_<t), shape (X, Y, L), 0 on padding."""
    lp = np.take_along_axis(position_logprobs(lm, enum), enum.tokens[None, :, :, None], axis=-1)[..., 0]
    return np.where(enum.mask[None], lp, 0.0)


def sequence_logprobs(lm: SequenceLM, enum: Enumeration) -> np.ndarray:
    """log π(y|x) = Σ_t log π(y_t|x, y_<t), shape (X, Y)."""
    return token_logprobs(lm, enum).sum(axis=-1)


def prefix_occupancy(lm: SequenceLM, enum: Enumeration) -> np.ndarray:
    """d(x, h) = w_x · P_π[the response passes through prefix h at a response position], shape (X, H)."""
    q = lm.prompt_weights[:, None] * np.exp(sequence_logprobs(lm, enum))  # (X, Y)
    d = np.zeros(lm.logits.shape[:2])
    for t in range(enum.max_len):
        m = enum.mask[:, t]
        for x in range(lm.n_prompts):
            np.add.at(d[x], enum.prefix[m, t], q[x, m])
    return d


@dataclass(frozen=True)
class Samples:
    """A weighted set of samples; sample ``s`` is the batch of K rows ``seq[s]`` for prompt ``prompt[s]``."""

    prompt: np.ndarray  # (S,)
    seq: np.ndarray  # (S, K)
    weight: np.ndarray  # (S,)


def single_samples(sampler: SequenceLM, enum: Enumeration) -> Samples:
    """One row per sample, all (x, y), weight w_x·q(y|x) (the exact sampling law of ``sampler``)."""
    X, Y = sampler.n_prompts, enum.n_sequences
    q = sampler.prompt_weights[:, None] * np.exp(sequence_logprobs(sampler, enum))
    prompt = np.repeat(np.arange(X), Y)
    seq = np.tile(np.arange(Y), X)[:, None]
    return Samples(prompt, seq, q.ravel())


def tuple_samples(sampler: SequenceLM, enum: Enumeration, k: int) -> Samples:
    """All ordered K-tuples of iid responses per prompt (a group of K), weight w_x·Π_i q(y_i|x)."""
    X, Y = sampler.n_prompts, enum.n_sequences
    q = np.exp(sequence_logprobs(sampler, enum))
    grid = np.stack(np.meshgrid(*([np.arange(Y)] * k), indexing="ij"), axis=-1).reshape(-1, k)
    prompt = np.repeat(np.arange(X), len(grid))
    seq = np.tile(grid, (X, 1))
    weight = np.concatenate([sampler.prompt_weights[x] * np.prod(q[x][grid], axis=1) for x in range(X)])
    return Samples(prompt, seq, weight)


def gather_batch(
    enum: Enumeration,
    samples: Samples,
    policy: SequenceLM,
    ref: SequenceLM,
    old: SequenceLM | None = None,
    rewards: np.ndarray | None = None,
    extra: dict[str, SequenceLM] | None = None,
) -> dict[str, np.ndarray]:
    """Per-sample arrays with leading (S, K): ``logp``, ``ref_logp``, ``old_logp``, ``mask``, ``logq``
    (policy log-probability vectors, (S, K, L, V)), ``ref_logq``, ``rewards`` (S, K) and, for each
    ``extra`` LM named ``n``, ``n_logp``."""
    x = samples.prompt[:, None]
    y = samples.seq
    old = policy if old is None else old
    out = {
        "logp": token_logprobs(policy, enum)[x, y],
        "ref_logp": token_logprobs(ref, enum)[x, y],
        "old_logp": token_logprobs(old, enum)[x, y],
        "mask": enum.mask[y],
        "logq": position_logprobs(policy, enum)[x, y],
        "ref_logq": position_logprobs(ref, enum)[x, y],
    }
    if rewards is not None:
        out["rewards"] = np.asarray(rewards, float)[x, y]
    for name, lm in (extra or {}).items():
        out[f"{name}_logp"] = token_logprobs(lm, enum)[x, y]
    return out


@dataclass(frozen=True)
class TwinOut:
    """Per-sample value of a loss and its partial derivatives.

    Attributes
    ----------
    value : ndarray (S,)
    dlogp : ndarray (S, K, L)
        ∂ℓ/∂ log π(y_t | h_t) through the sampled-token log-probabilities.
    dlogq : ndarray (S, K, L, V) or None
        ∂ℓ/∂ log π(·|h_t) through the full next-token log-probability vectors.
    metrics : dict
    dvalues : ndarray (S, K, L) or None
        ∂ℓ/∂V_t through the critic's values (PPO with a critic), else None.
    """

    value: np.ndarray
    dlogp: np.ndarray
    dlogq: np.ndarray | None = None
    metrics: dict = field(default_factory=dict)
    dvalues: np.ndarray | None = None


def _grad_table(
    lm: SequenceLM, enum: Enumeration, samples: Samples, out: TwinOut, weights: np.ndarray
) -> np.ndarray:
    """Σ_s weights[s]·∇_z ℓ_s for a weight vector, shape (X, H, V) (chain rule through log-softmax)."""
    logpol = lm.log_policy
    pol = np.exp(logpol)
    X, H, V = lm.logits.shape
    S, K = samples.seq.shape
    L = enum.max_len
    G = np.zeros((S, K, L, V)) if out.dlogq is None else np.array(out.dlogq, dtype=np.float64)
    tok = enum.tokens[samples.seq]  # (S, K, L)
    np.put_along_axis(G, tok[..., None], np.take_along_axis(G, tok[..., None], -1) + out.dlogp[..., None], -1)
    mask = enum.mask[samples.seq]
    G = G * (weights[:, None, None, None] * mask[..., None])
    h = enum.prefix[samples.seq]
    x = np.broadcast_to(samples.prompt[:, None, None], h.shape)
    p = pol[x, h]  # (S, K, L, V)
    dz = G - p * G.sum(-1, keepdims=True)
    grad = np.zeros((X, H, V))
    np.add.at(grad, (x.ravel(), h.ravel()), dz.reshape(-1, V))
    return grad


def expected_loss(
    lm: SequenceLM, enum: Enumeration, samples: Samples, out: TwinOut, per_sample: bool = False
) -> tuple[float, np.ndarray] | tuple[float, np.ndarray, np.ndarray]:
    """E[ℓ] = Σ_s w_s ℓ_s and E[∇_z ℓ] = Σ_s w_s ∇_z ℓ_s (weights held fixed: sg(q), spec §1).

    Returns
    -------
    value : float
    grad : ndarray (X, H, V)
    per_sample_grads : ndarray (S, X·H·V), only with ``per_sample=True`` (for exact variances).
    """
    value = float(np.sum(samples.weight * out.value))
    grad = _grad_table(lm, enum, samples, out, samples.weight)
    if not per_sample:
        return value, grad
    S = len(samples.weight)
    rows = np.empty((S, grad.size))
    for s in range(S):
        e = np.zeros(S)
        e[s] = 1.0
        rows[s] = _grad_table(lm, enum, samples, out, e).ravel()
    return value, grad, rows


def seq_objective_grad(
    lm: SequenceLM, enum: Enumeration, f: np.ndarray, df_dlogpi: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Exact J(θ) = Σ_x w_x Σ_y π(y|x) f(x, y) and its gradient (score function + pathwise part).

    ∇J = Σ w π(y) [f(y) ∇log π(y) + ∂f/∂log π(y) ∇log π(y)] (f may depend on log π(y|x) through
    ``df_dlogpi``, shape (X, Y)).
    """
    X, Y = f.shape
    q = lm.prompt_weights[:, None] * np.exp(sequence_logprobs(lm, enum))
    coef = f if df_dlogpi is None else f + df_dlogpi
    samples = single_samples(lm, enum)
    L = enum.max_len
    dlogp = np.broadcast_to(coef.reshape(-1)[:, None, None], (X * Y, 1, L)) * enum.mask[samples.seq]
    out = TwinOut(np.zeros(X * Y), dlogp)
    grad = _grad_table(lm, enum, samples, out, q.ravel())
    return float(np.sum(q * f)), grad


def seq_rkl(lm: SequenceLM, ref: SequenceLM, enum: Enumeration) -> tuple[float, np.ndarray]:
    """KL_seq(π‖π_ref) = Σ_x w_x Σ_y π(y|x) log(π(y|x)/π_ref(y|x)) and its exact logit gradient."""
    s = sequence_logprobs(lm, enum) - sequence_logprobs(ref, enum)
    return seq_objective_grad(lm, enum, s, np.ones_like(s))


def seq_fkl(lm: SequenceLM, ref: SequenceLM, enum: Enumeration) -> tuple[float, np.ndarray]:
    """KL_seq(π_ref‖π) and its gradient −Σ_x w_x Σ_y π_ref(y|x) ∇log π(y|x)."""
    lr = sequence_logprobs(ref, enum)
    lp = sequence_logprobs(lm, enum)
    qref = ref.prompt_weights[:, None] * np.exp(lr)
    samples = single_samples(ref, enum)
    X, Y = lp.shape
    dlogp = -np.ones((X * Y, 1, enum.max_len)) * enum.mask[samples.seq]
    grad = _grad_table(lm, enum, samples, TwinOut(np.zeros(X * Y), dlogp), qref.ravel())
    return float(np.sum(qref * (lr - lp))), grad


def seq_chi2(lm: SequenceLM, ref: SequenceLM, enum: Enumeration) -> tuple[float, np.ndarray]:
    """χ²_seq(π‖π_ref) = Σ_x w_x (Σ_y π(y)²/π_ref(y) − 1) and its gradient Σ w π(y)·2u(y)∇log π(y)."""
    u = np.exp(sequence_logprobs(lm, enum) - sequence_logprobs(ref, enum))
    val, grad = seq_objective_grad(lm, enum, u, u)
    return val - 1.0, grad


def _partial_grad(
    lm: SequenceLM, ref: SequenceLM, sampler: SequenceLM, enum: Enumeration, forward: bool
) -> np.ndarray:
    d = prefix_occupancy(sampler, enum)  # (X, H)
    lp, lr = lm.log_policy, ref.log_policy
    p = np.exp(lp)
    if forward:  # ∇_z KL(ref_h‖π_h) = π_h − ref_h
        g = p - np.exp(lr)
    else:  # ∇_z KL(π_h‖ref_h) = π_h ⊙ (log π_h − log ref_h − KL_h)
        diff = lp - lr
        g = p * (diff - np.sum(p * diff, axis=-1, keepdims=True))
    return d[..., None] * g


def partial_rkl_grad(
    lm: SequenceLM, ref: SequenceLM, enum: Enumeration, sampler: SequenceLM | None = None
) -> np.ndarray:
    """Per-step ("partial") reverse-KL gradient Σ_h d_q(h) ∇_z KL(π(·|h)‖π_ref(·|h)), prefixes from q."""
    return _partial_grad(lm, ref, lm if sampler is None else sampler, enum, forward=False)


def partial_fkl_grad(
    lm: SequenceLM, ref: SequenceLM, enum: Enumeration, sampler: SequenceLM | None = None
) -> np.ndarray:
    """Per-step forward-KL gradient Σ_h d_q(h) ∇_z KL(π_ref(·|h)‖π(·|h)), prefixes from q (spec §2.1)."""
    return _partial_grad(lm, ref, lm if sampler is None else sampler, enum, forward=True)


def exact_values(
    lm: SequenceLM, enum: Enumeration, token_rewards: np.ndarray, gamma: float = 1.0
) -> np.ndarray:
    """Exact value function of the policy ``lm`` at every prefix (the oracle critic of a tabular LM):

    V^π(x, h) = E_π[Σ_{s≥t} γ^{s−t} r_s(x, y) | x, y_<t = h],  t = |h|,

    by enumeration: Σ over the responses y through h of π(y_≥t | x, h)·G_t(y).  The state after the last
    token is terminal (value 0).  [GAE, Schulman et al. arXiv:1506.02438, §2 (V^{π,γ})].

    Parameters
    ----------
    token_rewards : ndarray (X, Y, L)
        r_t(x, y) on the response positions (ignored on padding); may depend on the whole prefix y_≤t.
    gamma : float in [0, 1]

    Returns
    -------
    ndarray (X, H)
        V(x, h); 0 on prefixes no response passes through at a response position.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma: must lie in [0, 1], got {gamma!r}")
    X, H, _ = lm.logits.shape
    r = np.asarray(token_rewards, dtype=np.float64)
    check_shape("token_rewards", r, (X, enum.n_sequences, enum.max_len))
    check_finite("token_rewards", np.where(enum.mask[None], r, 0.0), ("x", "y", "t"))
    r = np.where(enum.mask[None], r, 0.0)
    lp = token_logprobs(lm, enum)
    G = np.zeros_like(r)
    cont = np.zeros_like(lp)
    g_run = np.zeros(r.shape[:2])
    c_run = np.zeros(r.shape[:2])
    for t in range(enum.max_len - 1, -1, -1):
        g_run = r[..., t] + gamma * g_run
        c_run = lp[..., t] + c_run
        G[..., t], cont[..., t] = g_run, c_run
    V = np.zeros((X, H))
    ys, ts = np.nonzero(enum.mask)
    for x in range(X):
        np.add.at(V[x], enum.prefix[ys, ts], np.exp(cont[x, ys, ts]) * G[x, ys, ts])
    return V
