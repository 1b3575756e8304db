"""klsim_llm: chunked full-vocabulary divergences vs the straightforward full-logits torch versions (CPU).

Peers, on the same (B, T, V) float32 logits, forward + backward:

* ``naive``: log_softmax of policy and reference logits, elementwise divergence, autograd (what a plain
  torch implementation of a full-vocabulary KL / JSD does);
* ``k3_token``: the per-token k3 estimator of TRL's GRPO computed from full logits (log_softmax + gather of
  the sampled token), i.e. the cheapest sampled-token KL of the same tensors.

Time: alternating A/B medians in this process, with one intra-op thread (the 2-core machine is shared; with
several threads small chunk ops pay thread-pool wake-ups under load).  Peak memory: the rise of the process
high-water mark in a fresh subprocess (``klsim_llm._memory.peak_extra_bytes``), relative to the logits tensor.
Target (issue 7): at least 40 % less peak memory than the naive version at equal or better speed.
"""

from __future__ import annotations

__all__ = ["run"]


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
                    "target": "memory_saving >= 0.40 and ratio <= 1.0",
                    "met": bool(saving >= 0.40 and ratio <= 1.0),
                    "threads": 1,
                }
            )
        return rows
    finally:
        torch.set_num_threads(n_threads)
