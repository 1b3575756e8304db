"""PPO with a critic: GAE(γ, λ) [GAE, Schulman et al. arXiv:1506.02438 eq. 16], the clipped value loss, the
exact oracle critic of a tabular LM, and an end-to-end PPO run with a value head (spec llm-bridge.md §5).

Every check is against something independent: a brute-force double loop written here, closed-form reductions
(λ = 1, λ = 0, γ = λ = 1 with V = 0 = the Monte-Carlo ``ppo``), conditional expectations by enumerating
every response (unbiasedness of GAE with the exact critic: E[Â_t | h, a] = Q(h, a) − V(h)), autograd against
the hand-derived twin derivative, and the bandit closed form π* ∝ π_ref·exp(r/β).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from klsim.sequence import (  # noqa: E402
    SequenceLM,
    enumerate_sequences,
    exact_values,
    gae_twin,
    pg_twin,
    token_logprobs,
    token_rewards_twin,
)
from klsim_llm.objectives import gae, pg_loss, token_rewards, value_loss  # noqa: E402

pytest.importorskip("transformers")

from klsim_llm.config import PPOConfig, config_from_dict, field_help  # noqa: E402
from klsim_llm.logprobs import LogProbModule  # noqa: E402
from klsim_llm.trainer import Trainer  # noqa: E402

pytestmark = [pytest.mark.llm, pytest.mark.usefixtures("one_torch_thread")]


def _right_padded(rng, B: int, T: int) -> np.ndarray:
    n = rng.integers(1, T + 1, size=B)
    n[0], n[-1] = T, 1
    return np.arange(T)[None, :] < n[:, None]


def _brute_gae(r, v, mask, gamma, lam):
    """Â_t = Σ_l (γλ)^l δ_{t+l}, δ_s = r_s + γ V_{s+1} − V_s, V = 0 past the last active token (double loop)."""
    B, T = r.shape
    A = np.zeros((B, T))
    for b in range(B):
        n = int(mask[b].sum())
        for t in range(n):
            acc = 0.0
            for s in range(t, n):
                v_next = v[b, s + 1] if s + 1 < n else 0.0
                acc += (gamma * lam) ** (s - t) * (r[b, s] + gamma * v_next - v[b, s])
            A[b, t] = acc
    return A


GRID = [(1.0, 1.0), (1.0, 0.0), (0.9, 0.95), (0.5, 0.3), (0.0, 0.7), (1.0, 0.6)]


@pytest.mark.parametrize(("gamma", "lam"), GRID)
def test_gae_matches_brute_force_double_loop(rng, gamma, lam):
    B, T = 6, 5
    mask = _right_padded(rng, B, T)
    r, v = rng.normal(size=(B, T)), rng.normal(size=(B, T))
    want = _brute_gae(r, v, mask, gamma, lam)
    A_t, R_t = gae(torch.as_tensor(r), torch.as_tensor(v), torch.as_tensor(mask), gamma=gamma, lam=lam)
    A_k, R_k = gae_twin(r, v, mask, gamma=gamma, lam=lam)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(A_t.numpy(), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(A_k, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(R_t.numpy(), (want + v) * mask, rtol=0, atol=1e-12)
    np.testing.assert_allclose(R_k, (want + v) * mask, rtol=0, atol=1e-12)


def test_gae_reductions(rng):
    B, T = 5, 6
    mask = _right_padded(rng, B, T)
    r, v = rng.normal(size=(B, T)) * mask, rng.normal(size=(B, T)) * mask
    rt, vt, mt = (torch.as_tensor(a) for a in (r, v, mask))
    # λ = 1: discounted return − V (discount matrix, no recursion)
    g = 0.8
    D = np.triu(g ** (np.arange(T)[None, :] - np.arange(T)[:, None]).astype(float))
    A1, _ = gae(rt, vt, mt, gamma=g, lam=1.0)
    np.testing.assert_allclose(A1.numpy(), (r @ D.T - v) * mask, atol=1e-12)
    # λ = 0: the one-step TD error δ_t
    v_next = np.where(np.roll(mask, -1, 1) & (np.arange(T) < T - 1), np.roll(v, -1, 1), 0.0)
    A0, _ = gae(rt, vt, mt, gamma=g, lam=0.0)
    np.testing.assert_allclose(A0.numpy(), (r + g * v_next - v) * mask, atol=1e-12)
    # γ = λ = 1, V = 0: the Monte-Carlo reward-to-go Σ_{s≥t} r_s
    Amc, Rmc = gae(rt, torch.zeros_like(vt), mt, gamma=1.0, lam=1.0)
    np.testing.assert_allclose(Amc.numpy(), np.cumsum(r[:, ::-1], 1)[:, ::-1] * mask, atol=1e-12)
    np.testing.assert_allclose(Rmc.numpy(), Amc.numpy(), atol=0)


def test_token_rewards_on_last_active_token_and_padding_checks(rng):
    mask = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], bool)
    R = np.array([2.0, -1.0, 0.5])
    want = np.array([[0, 0, 2.0], [-1.0, 0, 0], [0, 0.5, 0]])
    np.testing.assert_array_equal(token_rewards(torch.as_tensor(R), torch.as_tensor(mask)).numpy(), want)
    np.testing.assert_array_equal(token_rewards_twin(R, mask), want)
    holes = torch.tensor([[1, 0, 1]], dtype=torch.bool)
    with pytest.raises(ValueError, match="mask"):
        token_rewards(torch.tensor([1.0]), holes)
    with pytest.raises(ValueError, match="mask"):
        gae_twin(np.ones((1, 3)), np.ones((1, 3)), holes.numpy(), gamma=1.0, lam=1.0)
    with pytest.raises(ValueError, match="lam"):
        gae(torch.ones(1, 3), torch.ones(1, 3), torch.ones(1, 3), gamma=1.0, lam=1.5)


def _pg_inputs(rng, K=4, L=3):
    mask = _right_padded(rng, K, L)
    lp = np.log(rng.uniform(0.2, 0.9, size=(K, L))) * mask
    return dict(
        logp=lp,
        ref_logp=np.log(rng.uniform(0.2, 0.9, size=(K, L))) * mask,
        old_logp=(lp + 0.4 * rng.normal(size=(K, L))) * mask,
        mask=mask,
        rewards=rng.normal(size=K),
        values=rng.normal(size=(K, L)),
        old_values=rng.normal(size=(K, L)),
    )


@pytest.mark.parametrize("placement", ["reward", "loss"])
def test_monte_carlo_ppo_is_gae_with_zero_critic(rng, placement):
    """γ = λ = 1 with V ≡ 0 (and vf_coef = 0) reproduces the registry ``ppo`` Monte-Carlo path: value and
    gradient (so the existing entry is the special case)."""
    d = _pg_inputs(rng)
    kw = dict(name="ppo", beta=0.3, kl_estimator="k2", kl_placement=placement, clip_eps=(0.2, 0.25))

    def run(**extra):
        lp = torch.tensor(d["logp"], requires_grad=True)
        loss, _ = pg_loss(
            lp,
            torch.as_tensor(d["ref_logp"]),
            torch.as_tensor(d["mask"]),
            torch.as_tensor(d["rewards"]),
            old_logp=torch.as_tensor(d["old_logp"]),
            **kw,
            **extra,
        )
        (g,) = torch.autograd.grad(loss, lp)
        return float(loss.detach()), g.numpy()

    v0, g0 = run()
    z = torch.zeros(d["logp"].shape, dtype=torch.float64)
    v1, g1 = run(values=z, old_values=z, gamma=1.0, lam=1.0, vf_coef=0.0)
    assert abs(g0).max() > 1e-3
    assert abs(v0 - v1) <= 1e-13 and np.abs(g0 - g1).max() <= 1e-13


@pytest.mark.parametrize("value_clip", [None, 0.3])
def test_value_loss_and_gradients_match_twin(rng, value_clip):
    """Value, ∂/∂log π (autograd) and ∂/∂V (autograd) of ``ppo`` with a critic against ``pg_twin`` (hand-derived
    derivatives), off-policy, clip active on some tokens, KL in the reward (1e-10)."""
    d = _pg_inputs(rng, K=5, L=4)
    params = dict(beta=0.2, kl_estimator="k3", gamma=0.95, lam=0.8, vf_coef=0.7, value_clip=value_clip)
    lp = torch.tensor(d["logp"], requires_grad=True)
    V = torch.tensor(d["values"], requires_grad=True)
    loss, m = pg_loss(
        lp,
        torch.as_tensor(d["ref_logp"]),
        torch.as_tensor(d["mask"]),
        torch.as_tensor(d["rewards"]),
        name="ppo",
        old_logp=torch.as_tensor(d["old_logp"]),
        values=V,
        old_values=torch.as_tensor(d["old_values"]),
        **params,
    )
    g_lp, g_v = torch.autograd.grad(loss, (lp, V))
    batch = {k: np.asarray(v)[None] for k, v in d.items()}
    tw = pg_twin(batch, name="ppo", **params)
    assert abs(float(loss) - tw.value[0]) <= 1e-10 * max(1.0, abs(tw.value[0]))
    np.testing.assert_allclose(g_lp.numpy(), tw.dlogp[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(g_v.numpy(), tw.dvalues[0], rtol=0, atol=1e-10)
    assert np.abs(tw.dvalues).max() > 1e-3
    if value_clip is not None:
        assert 0.0 < m["vf_clip_frac"] < 1.0  # both branches of the max are exercised


def test_value_loss_convention():
    """½·max((V−R)², (clip(V, V_old ± ε)−R)²), by hand on three tokens (seq_sum over one row)."""
    V = torch.tensor([[1.0, 0.0, 2.45]], dtype=torch.float64)
    R = torch.tensor([[0.0, 1.0, 2.5]], dtype=torch.float64)
    Vo = torch.tensor([[0.5, 0.5, 2.0]], dtype=torch.float64)
    loss, m = value_loss(V, R, torch.ones(1, 3), old_values=Vo, value_clip=0.2)
    # token 1: (1−0)² = 1 vs (0.7−0)²; token 2: (0−1)² = 1 vs (0.3−1)²; token 3: 0.05² vs (2.2−2.5)² = 0.09
    assert abs(float(loss) - 0.5 * (1.0 + 1.0 + 0.09)) <= 1e-12
    assert abs(m["vf_clip_frac"] - 1.0) <= 1e-15
    unclipped, _ = value_loss(V, R, torch.ones(1, 3))
    assert abs(float(unclipped) - 0.5 * (1.0 + 1.0 + 0.0025)) <= 1e-12


# --- unbiasedness with the exact oracle critic ------------------------------------------------------------


def _tabular(eos):
    X, V, L = 2, 3, 3
    pol = SequenceLM.random(X, V, L, eos=eos, seed=11)
    ref = SequenceLM.random(X, V, L, eos=eos, seed=12)
    enum = enumerate_sequences(V, L, eos)
    R = np.random.default_rng(13).normal(size=(X, enum.n_sequences))
    beta = 0.3
    lp, lr = token_logprobs(pol, enum), token_logprobs(ref, enum)
    last = enum.mask.sum(1) - 1
    r = np.zeros(lp.shape)
    r[:, np.arange(enum.n_sequences), last] = R
    r = (r - beta * (lp - lr)) * enum.mask  # reward on the last token, −β·k1 per token (KL in the reward)
    return pol, enum, lp, r


def _conditional_stats(enum, lp, r, A, gamma):
    """By enumeration: P(h, a), E[Â_t | h, a], Q(h, a) = E[G_t | h, a] and V(h) = E[G_t | h]."""
    X, Y, L = lp.shape
    q = np.exp(lp.sum(-1))  # π(y|x)
    G = np.zeros_like(r)
    for t in range(L):
        for s in range(t, L):
            G[..., t] += gamma ** (s - t) * r[..., s]
    rows = []
    for x in range(X):
        for t in range(L):
            ys = np.nonzero(enum.mask[:, t])[0]
            for h in np.unique(enum.prefix[ys, t]):
                yh = ys[enum.prefix[ys, t] == h]
                Vh = np.sum(q[x, yh] * G[x, yh, t]) / np.sum(q[x, yh])
                for a in np.unique(enum.tokens[yh, t]):
                    ya = yh[enum.tokens[yh, t] == a]
                    P = np.sum(q[x, ya])
                    EA = np.sum(q[x, ya] * A[x, ya, t]) / P
                    Q = np.sum(q[x, ya] * G[x, ya, t]) / P
                    rows.append((x, t, h, EA, Q, Vh))
    return rows


@pytest.mark.parametrize("eos", [None, 1])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_gae_with_exact_critic_is_unbiased(eos, gamma):
    """E_π[Â_t^{GAE(γ,λ)} | x, y_<t = h, y_t = a] = Q^π(h, a) − V^π(h) for every λ when V is the exact value
    of π (enumerated, 1e-10); a wrong critic makes λ < 1 biased (control, gap > 1e-3)."""
    pol, enum, lp, r = _tabular(eos)
    X, Y, L = lp.shape
    Vtab = exact_values(pol, enum, r, gamma=gamma)  # (X, H)
    Vt = np.where(enum.mask[None], Vtab[:, enum.prefix], 0.0)  # V(x, y_<t) per token
    mask = np.broadcast_to(enum.mask, (X, Y, L)).reshape(-1, L)
    for lam in (0.0, 0.5, 0.9, 1.0):
        A, _ = gae(
            torch.as_tensor(r.reshape(-1, L)),
            torch.as_tensor(Vt.reshape(-1, L)),
            torch.as_tensor(mask),
            gamma=gamma,
            lam=lam,
        )
        rows = _conditional_stats(enum, lp, r, A.numpy().reshape(X, Y, L), gamma)
        assert len(rows) > 10
        gap = max(abs(EA - (Q - Vh)) for *_, EA, Q, Vh in rows)
        assert gap <= 1e-10, (lam, gap)
        # the oracle critic equals the enumerated conditional value at every reachable prefix
        assert max(abs(Vtab[x, h] - Vh) for x, _, h, *_, Vh in rows) <= 1e-12
        assert max(abs(Q - Vh) for *_, Q, Vh in rows) > 0.05  # advantages are not trivially zero
    wrong = Vt + 0.5 * np.random.default_rng(0).normal(size=Vt.shape) * enum.mask
    A, _ = gae(
        torch.as_tensor(r.reshape(-1, L)),
        torch.as_tensor(wrong.reshape(-1, L)),
        torch.as_tensor(mask),
        gamma=gamma,
        lam=0.5,
    )
    rows = _conditional_stats(enum, lp, r, A.numpy().reshape(X, Y, L), gamma)
    assert max(abs(EA - (Q - Vh)) for *_, EA, Q, Vh in rows) > 1e-3


# --- trainer: value head, end-to-end, config, resume -----------------------------------------------------

_TINY = {
    "from_config": {
        "model_type": "llama",
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 8,
    },
    "dtype": "float64",
}
_CRITIC = {"critic": "value_head", "gae_lambda": 0.95, "vf_coef": 0.5, "value_clip": 0.2, "epochs": 2}


def _next_token_logp(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)


@pytest.mark.parametrize(("beta", "r"), [(0.1, [0.0, 0.25, -0.1, 0.15]), (1.0, [0.0, 1.2, -0.8, 0.6])])
def test_bandit_ppo_with_critic_converges_to_tilted_reference(tmp_path, beta, r):
    """One-token bandit, KL (k1) in the reward, GAE(1, 0.95) with the value head: π_θ → π* ∝ π_ref·e^{r/β}
    (KL < 0.01) and the critic → the value of π*, E_{π*}[r − β log π*/π_ref] = β·log Σ π_ref e^{r/β}."""
    cfg = config_from_dict(
        {
            "method": "ppo",
            "algo": _CRITIC,
            "task": {"name": "bandit", "kwargs": {"rewards": r}},
            "model": _TINY,
            "kl": {"beta": beta, "estimator": "k1", "placement": "reward"},
            "rollout": {"max_new_tokens": 1, "prompts_per_step": 1, "group_size": 64},
            "optim": {"lr": 0.05, "scheduler": "linear"},
            "steps": 60,
            "log": {"out_dir": str(tmp_path), "progress": False},
        }
    )
    tr = Trainer(cfg)
    ref = _next_token_logp(tr.reference.model, [0])
    rt = torch.tensor(r, dtype=torch.float64)
    star = torch.log_softmax(ref + rt / beta, -1)
    kl0 = float((star.exp() * (star - ref)).sum())
    tr.train()
    got = _next_token_logp(tr.policy, [0])
    kl = float((star.exp() * (star - got)).sum())
    with torch.no_grad():
        ids = torch.tensor([[0, 1]])
        v = LogProbModule(tr.policy, tr.value_head)(ids, torch.ones_like(ids), 1)[3]
    v_star = beta * float(torch.logsumexp(ref + rt / beta, -1))
    print(f"ppo+critic beta={beta}: KL(pi*||pi)={kl:.2e} (start {kl0:.2e}); V={float(v):.5f} vs {v_star:.5f}")
    assert kl0 > 0.02
    assert kl < 0.01, (kl, kl0)
    assert abs(float(v) - v_star) < 2e-3, (float(v), v_star)


def test_ppo_config_validation_and_help():
    c = PPOConfig(critic="value_head", gae_gamma=0.99, gae_lambda=0.9, vf_coef=0.5, value_clip=None)
    assert c.gae_lambda == 0.9
    PPOConfig(gae_gamma=0.9)  # a discounted Monte-Carlo return needs no critic
    for kw, msg in [
        ({"gae_lambda": 0.9}, "critic"),
        ({"critic": "value_head", "gae_lambda": 1.2}, "gae_lambda"),
        ({"critic": "value_head", "gae_gamma": -0.1}, "gae_gamma"),
        ({"critic": "value_head", "baseline": "rloo"}, "baseline"),
        ({"critic": "value_head", "vf_coef": -1.0}, "vf_coef"),
        ({"critic": "value_head", "value_clip": 0.0}, "value_clip"),
        ({"critic": "mlp"}, "critic"),
    ]:
        with pytest.raises(ValueError, match=msg):
            PPOConfig(**kw)
    for f in ("gae_gamma", "gae_lambda", "vf_coef", "value_clip", "critic"):
        assert "arXiv:" in field_help(PPOConfig, f), f


def _count_cfg(tmp, steps):
    return config_from_dict(
        {
            "method": "ppo",
            "algo": _CRITIC,
            "task": {"name": "count", "kwargs": {"n_words": 4, "n_prompts": 8, "seed": 1}},
            "model": {**_TINY, "from_config": {**_TINY["from_config"], "max_position_embeddings": 16}},
            "kl": {"beta": 0.1, "estimator": "k1", "placement": "reward"},
            "rollout": {"max_new_tokens": 3, "prompts_per_step": 2, "group_size": 2},
            "optim": {"lr": 0.01},
            "steps": steps,
            "log": {"out_dir": str(tmp), "progress": False},
        }
    )


def test_value_head_trains_and_resume_is_bitwise(tmp_path):
    """Multi-token rollouts: the value head moves, its old values are used, and 4 steps = 2 + save/resume + 2
    bitwise for the policy, the value head and the optimizer state."""
    full = Trainer(_count_cfg(tmp_path / "a", 4))
    rows = full.train()
    assert all("obj/value_loss" in r and np.isfinite(r["obj/value_loss"]) for r in rows)
    assert float(full.value_head.weight.abs().max()) > 0  # zero-initialized, then trained
    part = Trainer(_count_cfg(tmp_path / "b", 4))
    part.train(steps=2)
    part.save()
    resumed = Trainer(_count_cfg(tmp_path / "b", 4), resume=True)
    assert resumed.step == 2
    resumed.train()
    for a, b in ((full.policy, resumed.policy), (full.value_head, resumed.value_head)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(full.value_head.weight, part.value_head.weight)  # the resume did real steps


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_ppo_critic_two_processes_equal_single_process(tmp_path, strategy):
    """torchrun, gloo, 2 ranks with half the batch each = 1 process (token-mean aggregation, so the value loss
    also goes through the global token count): policy and value head after 5 steps, relative ≤ 1e-9.
    FSDP2 also resumes a fresh 2-process run from the step-3 checkpoint (the value head is gathered into
    and sharded back out of the full state dict): the same final weights to 1e-12."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from klsim_llm.checkpoint import latest_checkpoint, load_checkpoint
    from klsim_llm.config import dump_config

    def cfg(name):
        c = _count_cfg(tmp_path / name, 5)
        c.kl.aggregation = "token_mean"
        c.rollout.prompts_per_step = 4
        c.dist.backend = "gloo"
        c.dist.strategy = strategy  # 1 process: nothing is wrapped; the checkpoint format follows it
        c.log.checkpoint_every = 3
        c.log.keep_checkpoints = 5
        return c

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")

    def launch(name, *extra):
        path = dump_config(cfg(name), tmp_path / f"{name}.yaml")
        run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0"]
        run += ["--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", "-m", "klsim_llm.train_cli"]
        r = subprocess.run(
            run + ["train", str(path), *extra], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    def worst(a, b):
        w = 0.0
        for key in ("policy", "value_head"):
            for k, v in a[key].items():
                w = max(w, float((v - b[key][k]).abs().max()) / max(1e-12, float(v.abs().max())))
        return w

    Trainer(cfg("single")).train()
    rows = launch("multi")
    assert [row["world_size"] for row in rows] == [2] * 5
    a = load_checkpoint(latest_checkpoint(tmp_path / "single"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "multi"))
    moved = float(a["value_head"]["weight"].abs().max())
    assert moved > 0 and worst(a, b) <= 1e-9, (moved, worst(a, b))
    if strategy == "fsdp":
        shutil.copytree(
            tmp_path / "multi" / "checkpoints" / "step_3", tmp_path / "resumed" / "checkpoints" / "step_3"
        )
        rows = launch("resumed", "--resume")
        assert [row["step"] for row in rows] == [4, 5]
        c = load_checkpoint(latest_checkpoint(tmp_path / "resumed"))
        assert worst(b, c) <= 1e-12
