"""klsim_llm: chunked full-vocabulary divergences vs the straightforward full-logits torch versions (CPU).

Peers, on the same (B, T, V) float32 logits, forward + backward:

* ``naive``: log_softmax of policy and reference logits, elementwise divergence, autograd (what a plain
  torch implementation of a full-vocabulary KL / JSD does);
* ``k3_token``: the per-token k3 estimator of TRL's GRPO computed from full logits (log_softmax + gather of
  the sampled token), i.e. the cheapest sampled-token KL of the same tensors.  It is a one-sample estimator of
  a different quantity, so its row is informational (no ``met``).

DPO family, on policy logits (2B, T, V) (chosen rows then rejected rows, TRL's concatenated batch, one leaf),
reference logits of the same shape, sampled tokens and a right-padding mask:

* ``dpo_sigmoid``: klsim_llm's path (``gather_logprobs``: row-chunked logsumexp forward, one-buffer chunked
  backward; then ``pref_loss(name="dpo")``) vs
  full ``log_softmax`` + ``gather`` + the same loss, and vs TRL's own code (``selective_log_softmax``, then
  ``DPOTrainer._compute_loss`` on a stand-in ``self``/model; checked against ``pref_loss`` to 1e-9 in
  float64 on the same log-probs);
* ``tdpo1``: klsim_llm's path (``gather_logprobs`` + ``pref_loss(name="tdpo1")``, whose exact per-token
  KL(π_ref‖π_θ) is the chunked ``divergence_per_token("fkl")``) vs one full log_softmax per tensor.  The klsim
  side takes the chosen and rejected policy logits as two contiguous (B, T, V) leaves ``zw``/``zl`` (as from
  two forward passes; copies of ``z[:B]``/``z[B:]``, same values), so that the backward of the two slices of
  ``z`` does not allocate two zero-filled (2B, T, V) gradients; the peer keeps the concatenated ``z``.

Every klsim/peer pair is checked to compute the same loss (float32 tolerance) before it is timed.

Time: alternating A/B medians in this process, with one intra-op thread (the 2-core machine is shared; with
several threads small chunk ops pay thread-pool wake-ups under load).  Peak memory: the rise of the process
high-water mark in a fresh subprocess (``klsim_llm._memory.peak_extra_bytes``), relative to the logits tensor.
Target (issue 7): at least 40 % less peak memory than the naive version at equal or better speed.
"""

from __future__ import annotations

__all__ = ["run"]

_TARGET = "memory_saving >= 0.40 and ratio <= 1.0"
_K3_INFO = "informational: exact full-vocabulary KL vs a one-sample estimator (different quantity)"


def run(quick: bool) -> list[dict]:
    import torch

    from benchmarks._timing import ab_medians
    from klsim_llm._memory import peak_extra_bytes
    from klsim_llm.divergences import divergence_per_token, divergence_per_token_naive

    B, T, V = (4, 256, 32000) if quick else (8, 512, 32000)
    repeats = 3 if quick else 5
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(B, T, V, generator=g, requires_grad=True)
        zr = torch.randn(B, T, V, generator=g)
        ids = torch.randint(0, V, (B, T, 1), generator=g)

        def step(fn, name, **kw):
            def f():
                z.grad = None
                fn(name, z, zr, None, **kw).sum().backward()

            return f

        def k3_token():
            z.grad = None
            lp = torch.log_softmax(z, -1).gather(-1, ids)[..., 0]
            lr = torch.log_softmax(zr, -1).gather(-1, ids)[..., 0]
            d = lp - lr
            (torch.expm1(-d) + d).sum().backward()

        rows = []
        cases = [("rkl", {}, "naive"), ("rkl", {}, "k3_token")]
        if not quick:
            cases.append(("jsd_beta", {"beta": 0.5}, "naive"))
        mem_cache: dict = {}
        for name, kw, peer in cases:
            peer_fn = k3_token if peer == "k3_token" else step(divergence_per_token_naive, name, **kw)
            t = ab_medians(
                {"klsim": step(divergence_per_token, name, **kw), "peer": peer_fn}, repeats=repeats
            )
            key_k = ("chunked", name)
            if key_k not in mem_cache:
                mem_cache[key_k] = peak_extra_bytes("chunked", name, B, T, V)
            mem_p = peak_extra_bytes(peer, name, B, T, V)
            mk = mem_cache[key_k]["extra"] / mem_cache[key_k]["logits_bytes"]
            mp = mem_p["extra"] / mem_p["logits_bytes"]
            saving = 1.0 - mk / mp
            ratio = t["klsim"] / t["peer"]
            rows.append(
                {
                    "name": f"llm_{name}_chunked_vs_{peer}_B{B}_T{T}_V{V}",
                    "klsim_s": t["klsim"],
                    "peer": f"torch {peer} full logits",
                    "peer_s": t["peer"],
                    "ratio": ratio,
                    "klsim_peak_x_logits": mk,
                    "peer_peak_x_logits": mp,
                    "memory_saving": saving,
                    "threads": 1,
                }
            )
            if peer == "k3_token":  # a one-sample estimator of a different quantity: no target
                rows[-1]["target"] = _K3_INFO
            else:
                rows[-1]["target"] = _TARGET
                rows[-1]["met"] = bool(saving >= 0.40 and ratio <= 1.0)
        rows += _pref_rows(quick, repeats)
        return rows
    finally:
        torch.set_num_threads(n_threads)


# --- DPO family: per-sequence log-probs from (B, T, V) logits, then the preference loss -------------------------

_BETA = 0.1
_ROW_CHUNK = 256  # rows of the chunked log-prob path (a (256, V) float32 chunk: 33 MB at V = 32,000)
_GRAD_LEAVES = ("z", "zw", "zl")


def _pref_tensors(B: int, T: int, V: int, seed: int = 0) -> dict:
    """Policy logits ``z`` (2B, T, V) (rows :B chosen, B: rejected; TRL's concatenated batch, one leaf),
    reference ``zr``, separate leaves ``zw``/``zl`` (B, T, V) holding copies of ``z[:B]``/``z[B:]`` (klsim's
    TDPO side), response tokens ``ids`` (2B, T) and a right-padding mask (lengths uniform in [T/2, T])."""
    import torch

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2 * B, T, V, generator=g, requires_grad=True)
    zr = torch.randn(2 * B, T, V, generator=g)
    ids = torch.randint(0, V, (2 * B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (2 * B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    zw = z.detach()[:B].clone().requires_grad_(True)
    zl = z.detach()[B:].clone().requires_grad_(True)
    return {"z": z, "zr": zr, "zw": zw, "zl": zl, "ids": ids, "mask": mask, "B": B}


def _klsim_token_logp(z, ids):
    """klsim_llm's chunked per-token log-probs: ``gather_logprobs`` (row chunks of ``_ROW_CHUNK``) on ``z``."""
    from klsim_llm.logprobs import gather_logprobs

    return gather_logprobs(z, ids, chunk_rows=_ROW_CHUNK)


def _naive_token_logp(z, ids):
    import torch

    return torch.log_softmax(z, -1).gather(-1, ids[..., None])[..., 0]


def _dpo_klsim(d):
    import torch

    from klsim_llm.objectives import pref_loss

    B, m = d["B"], d["mask"]
    lp = _klsim_token_logp(d["z"], d["ids"])
    with torch.no_grad():
        lr = _klsim_token_logp(d["zr"], d["ids"])
    return pref_loss(lp[:B], lr[:B], m[:B], lp[B:], lr[B:], m[B:], name="dpo", beta=_BETA)[0]


def _dpo_naive(d):
    import torch

    from klsim_llm.objectives import pref_loss

    B, m = d["B"], d["mask"]
    lp = _naive_token_logp(d["z"], d["ids"])
    with torch.no_grad():
        lr = _naive_token_logp(d["zr"], d["ids"])
    return pref_loss(lp[:B], lr[:B], m[:B], lp[B:], lr[B:], m[B:], name="dpo", beta=_BETA)[0]


def _trl_dpo_loss(per_token_logp, ref_chosen, ref_rejected, mask, beta):
    """``trl.DPOTrainer._compute_loss`` (TRL's code, unmodified; sigmoid loss, reverse KL) with a stand-in
    ``self`` and a stand-in model whose ``log_probs`` are ``per_token_logp`` (2B, T), zero on padding (what
    TRL's fused lm-head returns for labels = -100); its metric-only outputs (entropy, mean logits, top-1) are
    zeros.  Reference log-probs are passed precomputed (``precompute_ref_logps``)."""
    from collections import defaultdict
    from types import SimpleNamespace

    import torch
    from trl.trainer.dpo_trainer import DPOTrainer

    from klsim_llm.audit import _IdentityAccelerator

    n, T = per_token_logp.shape
    acc = _IdentityAccelerator()
    acc.device = per_token_logp.device
    zeros = torch.zeros((n, T + 1))
    out = SimpleNamespace(
        log_probs=torch.cat([per_token_logp.new_zeros((n, 1)), per_token_logp], 1)[:, 1:],
        entropy=zeros,
        mean_logits=zeros,
        is_top1=torch.zeros((n, T + 1), dtype=torch.bool),
    )
    fake = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=acc,
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=["sigmoid"],
        loss_weights=[1.0],
        beta=beta,
        use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    cmask = torch.cat([torch.zeros((n, 1), dtype=torch.long), mask.long()], 1)  # prompt column + response
    inputs = {
        "input_ids": torch.zeros((n, T + 1), dtype=torch.long),
        "attention_mask": torch.ones((n, T + 1), dtype=torch.long),
        "completion_mask": cmask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    return DPOTrainer._compute_loss(fake, lambda **_: out, inputs, False)


def _dpo_trl(d):
    """TRL's path: ``trl.trainer.utils.selective_log_softmax`` (its row-looped logsumexp log-probs) for policy
    and reference, then TRL's DPO sigmoid loss code."""
    import torch
    from trl.trainer.utils import selective_log_softmax

    B, m = d["B"], d["mask"]
    lp = selective_log_softmax(d["z"], d["ids"], row_mask=m)
    with torch.no_grad():
        ref = (selective_log_softmax(d["zr"], d["ids"], row_mask=m) * m).sum(-1)
    return _trl_dpo_loss(lp, ref[:B], ref[B:], m, _BETA)


def _tdpo_klsim(d):
    """TDPO1 via klsim_llm: chunked token log-probs + ``pref_loss("tdpo1")`` (chunked exact KL(π_ref‖π_θ))."""
    import torch

    from klsim_llm.objectives import pref_loss

    B, m, zw, zl, zr, ids = d["B"], d["mask"], d["zw"], d["zl"], d["zr"], d["ids"]
    lpw, lpl = _klsim_token_logp(zw, ids[:B]), _klsim_token_logp(zl, ids[B:])
    with torch.no_grad():
        lr = _klsim_token_logp(zr, ids)
    return pref_loss(
        lpw,
        lr[:B],
        m[:B],
        lpl,
        lr[B:],
        m[B:],
        name="tdpo1",
        beta=_BETA,
        logits_w=zw,
        ref_logits_w=zr[:B],
        logits_l=zl,
        ref_logits_l=zr[B:],
    )[0]


def _tdpo_naive(d):
    """TDPO1 written straightforwardly: one full log_softmax per tensor, gather, Σ_v q(ℓq − ℓp), the loss."""
    import torch
    import torch.nn.functional as F

    B, m = d["B"], d["mask"]
    lp = torch.log_softmax(d["z"], -1)
    with torch.no_grad():
        lq = torch.log_softmax(d["zr"], -1)
        lr = lq.gather(-1, d["ids"][..., None])[..., 0]
    tok = lp.gather(-1, d["ids"][..., None])[..., 0]
    kl = (lq.exp() * (lq - lp)).sum(-1)
    s = ((tok - lr) * m).sum(-1)
    D = (kl * m).sum(-1)
    h = _BETA * (s[:B] - s[B:]) - (_BETA * D[B:] - _BETA * D[:B])
    return (-F.logsigmoid(h)).mean()


_PREF_PATHS = {
    "dpo_klsim": _dpo_klsim,
    "dpo_naive": _dpo_naive,
    "dpo_trl": _dpo_trl,
    "tdpo_klsim": _tdpo_klsim,
    "tdpo_naive": _tdpo_naive,
}


def _pref_mem_child(modes: str, B: int, T: int, V: int) -> None:
    """Subprocess body of :func:`_pref_peaks`: for each comma-separated mode, fresh tensors, one warm-up on tiny
    tensors, then one forward + backward with the high-water mark reset just before; prints one JSON dict."""
    import json
    import time

    import torch

    torch.set_num_threads(1)

    def hwm() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("VmHWM not found")

    res = {}
    for mode in modes.split(","):
        fn = _PREF_PATHS[mode]
        fn(_pref_tensors(2, 3, 7, seed=1)).backward()  # warm up kernels and libraries
        d = _pref_tensors(B, T, V)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = hwm()
        t0 = time.perf_counter()
        fn(d).backward()
        dt = time.perf_counter() - t0
        per = d["z"].numel() * d["z"].element_size() // 2  # one (B, T, V) float32 tensor
        res[mode] = {"extra": hwm() - base, "logits_bytes": per, "seconds": dt}
        del d
    print(json.dumps(res))


def _pref_peaks(modes: list[str], B: int, T: int, V: int) -> dict:
    """Peak extra bytes of each mode, measured as in ``klsim_llm._memory.peak_extra_bytes`` (a fresh subprocess
    with a 16 MiB mmap threshold, so every large tensor is returned to the OS when freed; rise of VmHWM over
    the state where the inputs exist), the modes one after another in one subprocess."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = dict(
        os.environ,
        MALLOC_MMAP_THRESHOLD_=str(16 << 20),
        MALLOC_TRIM_THRESHOLD_=str(16 << 20),
        PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    )
    code = f"from benchmarks.bench_llm import _pref_mem_child; _pref_mem_child({','.join(modes)!r}, {B}, {T}, {V})"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check_same(name: str, a, b, rtol: float = 1e-4, atol: float = 1e-5) -> float:
    """Raise unless the two float32 losses agree (sums of ~10³ log-probs of size ~10: float32 rounding of the
    sequence sums is ~10⁻⁴ relative); return the absolute gap."""
    import torch

    if not torch.allclose(a.detach(), b.detach(), rtol=rtol, atol=atol):
        raise AssertionError(f"{name}: losses differ: {float(a)!r} vs {float(b)!r}")
    return float((a.detach() - b.detach()).abs())


def _trl_check(d) -> float:
    """TRL's DPO loss on klsim_llm's own per-token log-probs equals ``pref_loss("dpo")`` to 1e-9.  Done in
    float64: in float32 the two codes' different summation orders of the sequence sums (TRL: Σlog π − Σlog π_ref;
    pref_loss: Σ(log π − log π_ref)) alone move the loss by ~5e-6 at these sizes."""
    import torch

    from klsim_llm.objectives import pref_loss

    B, m = d["B"], d["mask"]
    with torch.no_grad():
        lp = _klsim_token_logp(d["z"], d["ids"]).double()
        lr = _klsim_token_logp(d["zr"], d["ids"]).double()
        ours = pref_loss(lp[:B], lr[:B], m[:B], lp[B:], lr[B:], m[B:], name="dpo", beta=_BETA)[0]
        ref = (lr * m).sum(-1)
        theirs = _trl_dpo_loss(lp * m, ref[:B], ref[B:], m, _BETA)
    return _check_same("TRL DPO loss on klsim_llm log-probs", ours, theirs, rtol=0.0, atol=1e-9)


def _pref_rows(quick: bool, repeats: int) -> list[dict]:
    """DPO (sigmoid) and TDPO1 rows: klsim_llm's chunked path vs full-logits torch and (DPO) TRL's code."""
    from benchmarks._timing import ab_medians

    B, T, V = (2, 128, 32000) if quick else (4, 512, 32000)
    d = _pref_tensors(B, T, V)
    try:
        import trl  # noqa: F401

        trl_note = None
    except ImportError as e:  # TRL is a dev extra
        trl_note = f"trl not importable ({e}); TRL row skipped"
    pairs = [("dpo", "naive", "torch log_softmax + gather on full logits, then pref_loss('dpo')")]
    if trl_note is None:
        pairs.append(
            (
                "dpo",
                "trl",
                "TRL 1.16 selective_log_softmax + DPOTrainer._compute_loss (sigmoid), stand-in self/model",
            )
        )
    pairs.append(("tdpo", "naive", "torch full log_softmax, gather, Σ q(ℓq − ℓp), TDPO1 loss"))

    def step(mode):
        fn = _PREF_PATHS[mode]

        def f():
            for k in _GRAD_LEAVES:
                d[k].grad = None
            fn(d).backward()

        return f

    modes = list(dict.fromkeys(m for fam, peer, _ in pairs for m in (f"{fam}_klsim", f"{fam}_{peer}")))
    mem = _pref_peaks(modes, B, T, V)
    rows = []
    for fam, peer, desc in pairs:
        k_mode, p_mode = f"{fam}_klsim", f"{fam}_{peer}"
        gap = _check_same(f"{k_mode} vs {p_mode}", _PREF_PATHS[k_mode](d), _PREF_PATHS[p_mode](d))
        extra = {"loss_gap": gap}
        if peer == "trl":
            extra["trl_loss_gap_same_logps"] = _trl_check(d)
        # the value check above already ran both paths once (kernels, imports): no extra warm-up round
        t = ab_medians({"klsim": step(k_mode), "peer": step(p_mode)}, repeats=repeats, warmup=0)
        mk = mem[k_mode]["extra"] / mem[k_mode]["logits_bytes"]
        mp = mem[p_mode]["extra"] / mem[p_mode]["logits_bytes"]
        saving, ratio = 1.0 - mk / mp, t["klsim"] / t["peer"]
        name = "dpo_sigmoid" if fam == "dpo" else "tdpo1"
        rows.append(
            {
                "name": f"llm_{name}_chunked_vs_{peer}_B{B}x2_T{T}_V{V}",
                "klsim_s": t["klsim"],
                "peer": desc,
                "peer_s": t["peer"],
                "ratio": ratio,
                "klsim_peak_x_logits": mk,
                "peer_peak_x_logits": mp,
                "memory_saving": saving,
                "target": _TARGET,
                "met": bool(saving >= 0.40 and ratio <= 1.0),
                "threads": 1,
                **extra,
            }
        )
    if trl_note is not None:
        rows.append({"name": "llm_dpo_sigmoid_chunked_vs_trl", "target": "informational: " + trl_note})
    return rows
