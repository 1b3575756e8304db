"""Regularized Bellman sweep: klsim vs QuantEcon ``DiscreteDP.bellman_operator`` vs a numpy/scipy soft sweep.

Issue 2 item 6.  On Garnet(S=2000, A=10, b=10) in both layouts, and on the sparse Garnet(S=100,000, A=10,
b=10) (quick mode: S = 20,000, stated in the row name), one process times, alternating A/B/C between samples of ``BLOCK`` = 10
consecutive calls:

* klsim's fused regularized sweep (``klsim.dp._core.sweep``, the step inside ``md_vi``): log π = G^{λ,τ}_μ(q),
  v = (λ+τ) lse(β ln μ + q/(λ+τ)), q_next = R + γPv;
* QuantEcon's unregularized ``bellman_operator`` (max_a (R + γPv): strictly less work), dense ``(S, A, S)``
  or the sparse state-action-pair form matching the layout;
* the same soft sweep vectorized with numpy (dense: BLAS gemv) or scipy.sparse (CSR matvec).

Targets: klsim/QuantEcon ≤ 1.0; klsim/numpy ≤ 0.5 (≥ 2× faster); a dense sweep reads P at ≥ 70% of the
bandwidth of a numpy streaming read (``np.sum``) of an array of the same size, timed in the same run.

On dense input, ``sweep`` skips exact zeros when P's density is ≤ ``ZERO_SKIP_MAX_DENSITY`` (0.25; dense
Garnet(2000, 10, 10) has density 0.005), so the "dense" ratio rows time what ``md_vi`` does on that input
(column ``kernel`` says which kernel ran).  The dense kernels are also timed forced, on the same input, for
the bandwidth target and for the memory-bound parity ratios (reported, no target: reading all S·A·S entries
once is the same work for klsim, QuantEcon and BLAS gemv).
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks._timing import ab_medians, streaming_read_bandwidth
from klsim.dp._core import soft_sweep_dense_kernel, sweep, sweeps_csr
from klsim.mdp import TabularMDP, garnet

__all__ = ["run"]

LAM, TAU = 1.0, 0.1
BLOCK = 10
"""Consecutive sweeps per timing sample (solvers call the sweep back to back; numba's worker threads stay
awake between calls, as they do inside ``md_vi``)."""


def _klsim_sweep(mdp: TabularMDP, q: np.ndarray, log_mu: np.ndarray):
    S, A = mdp.n_states, mdp.n_actions
    log_pi, v, q_next = np.empty((S, A)), np.empty(S), np.empty((S, A))

    def f():
        sweep(mdp, q, log_mu, LAM, TAU, log_pi, v, q_next)
        return q_next

    return f


def _numpy_sweep(mdp: TabularMDP, q: np.ndarray, log_mu: np.ndarray):
    S, A = mdp.n_states, mdp.n_actions
    M = mdp.transition_matrix()
    R, gamma, temp, beta = np.asarray(mdp.R), mdp.gamma, LAM + TAU, LAM / (LAM + TAU)

    def f():
        z = beta * log_mu + q / temp
        m = z.max(axis=1)
        L = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
        log_pi = z - L[:, None]
        v = temp * L
        return log_pi, R + gamma * (M @ v).reshape(S, A)

    return f


def _quantecon(mdp: TabularMDP):
    from quantecon.markov import DiscreteDP

    S, A = mdp.n_states, mdp.n_actions
    if mdp.is_sparse:
        s_idx = np.repeat(np.arange(S), A)
        a_idx = np.tile(np.arange(A), S)
        ddp = DiscreteDP(np.asarray(mdp.R).ravel(), mdp.transition_matrix(), mdp.gamma, s_idx, a_idx)
    else:
        ddp = DiscreteDP(np.asarray(mdp.R), mdp.P, mdp.gamma)
    return ddp


def _case(name: str, mdp: TabularMDP, repeats: int) -> list[dict]:
    S, A = mdp.n_states, mdp.n_actions
    rng = np.random.default_rng(0)
    q = rng.standard_normal((S, A))
    log_mu = np.full((S, A), -np.log(A))
    ddp = _quantecon(mdp)
    v0 = q.max(axis=1)
    kl, npf = _klsim_sweep(mdp, q, log_mu), _numpy_sweep(mdp, q, log_mu)
    # correctness guard: the three agree where they should
    got = kl()
    ref = npf()[1]
    if not np.allclose(got, ref, rtol=1e-12, atol=1e-12):
        raise AssertionError(f"{name}: klsim sweep differs from the numpy soft sweep")
    t = _block_medians({"klsim": kl, "quantecon": lambda: ddp.bellman_operator(v0), "numpy": npf}, repeats)
    layout = "sparse" if mdp.is_sparse else "dense"
    kernel = "csr" if sweeps_csr(mdp) else "dense"
    common = {"layout": layout, "kernel": kernel, "S": S, "A": A, "nnz": mdp.nnz, "threads": _threads()}
    if layout == "dense" and kernel == "csr":
        name = f"{name} [klsim skips zeros: density {mdp.nnz / mdp.P.size:.3g}]"
    rows = [
        {
            "name": f"{name} regularized sweep vs QuantEcon bellman_operator",
            "klsim_s": t["klsim"],
            "peer": "quantecon DiscreteDP.bellman_operator (unregularized)",
            "peer_s": t["quantecon"],
            "ratio": t["klsim"] / t["quantecon"],
            "target": "<= 1.0",
            "met": bool(t["klsim"] <= t["quantecon"]),
            **common,
        },
        {
            "name": f"{name} regularized sweep vs numpy/scipy soft sweep",
            "klsim_s": t["klsim"],
            "peer": "numpy BLAS gemv soft sweep"
            if layout == "dense"
            else "scipy.sparse CSR matvec soft sweep",
            "peer_s": t["numpy"],
            "ratio": t["klsim"] / t["numpy"],
            "target": "<= 0.5",
            "met": bool(t["klsim"] <= 0.5 * t["numpy"]),
            **common,
        },
    ]
    if layout == "dense":
        rows += _dense_kernel_rows(name, mdp, q, log_mu, npf, ddp, v0, repeats, common)
    return rows


def _dense_kernel_rows(name, mdp, q, log_mu, npf, ddp, v0, repeats, common) -> list[dict]:
    """The dense kernels forced (no zero skipping): bandwidth fraction (target) and ratios (reported)."""
    S, A = mdp.n_states, mdp.n_actions
    log_pi, v, q_next = np.empty((S, A)), np.empty(S), np.empty((S, A))
    temp = LAM + TAU

    def dense():
        soft_sweep_dense_kernel(mdp, q, log_mu, LAM / temp, temp, log_pi, v, q_next)
        return q_next

    if not np.allclose(dense(), npf()[1], rtol=1e-12, atol=1e-12):
        raise AssertionError(f"{name}: dense-kernel sweep differs from the numpy soft sweep")
    t = _block_medians({"dense": dense, "quantecon": lambda: ddp.bellman_operator(v0), "numpy": npf}, repeats)
    bw = streaming_read_bandwidth(mdp.P.nbytes, repeats=repeats)
    achieved = mdp.P.nbytes / t["dense"]
    label = f"{name} dense kernel forced (reads all S*A*S entries)"
    return [
        {
            "name": f"{label}: bandwidth fraction",
            "klsim_s": t["dense"],
            "peer": "numpy streaming read (np.sum) of an array of the same size",
            "peer_s": mdp.P.nbytes / bw,
            "ratio": t["dense"] / (mdp.P.nbytes / bw),
            "bandwidth_fraction": achieved / bw,
            "klsim_GBps": achieved / 1e9,
            "stream_GBps": bw / 1e9,
            "target": "bandwidth_fraction >= 0.7",
            "met": bool(achieved >= 0.7 * bw),
            **common,
        },
        *(
            {
                "name": f"{label}: vs {peer}",
                "klsim_s": t["dense"],
                "peer": peer,
                "peer_s": t[key],
                "ratio": t["dense"] / t[key],
                "target": "reported (both stream P once: memory-bound parity expected)",
                **common,
            }
            for key, peer in (
                ("quantecon", "quantecon bellman_operator"),
                ("numpy", "numpy BLAS gemv soft sweep"),
            )
        ),
    ]


def _block_medians(fns: dict, repeats: int) -> dict:
    """Seconds per call: each sample times BLOCK consecutive calls of one contender (as the iterations of
    ``md_vi`` or of QuantEcon's value iteration do), samples alternate between contenders."""
    blocks = {k: (lambda f=f: [f() for _ in range(BLOCK)]) for k, f in fns.items()}
    return {k: v / BLOCK for k, v in ab_medians(blocks, repeats=repeats).items()}


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows (see module docstring); quick mode uses fewer repeats and S = 20,000 for the large case."""
    repeats = 15
    rows: list[dict] = []
    t0 = time.perf_counter()
    g = garnet(2000, 10, 10, seed=0)
    rows += _case("Garnet(2000,10,10) sparse", g, repeats)
    gd = g.to_dense()
    del g
    rows += _case("Garnet(2000,10,10) dense", gd, repeats)
    del gd
    big_s = 20_000 if quick else 100_000
    label = f"Garnet({big_s},10,10) sparse" + (" [quick: S reduced from 100,000]" if quick else "")
    rows += _case(label, garnet(big_s, 10, 10, seed=0), repeats)
    for r in rows:
        r["total_bench_s"] = time.perf_counter() - t0
        r["cpu_count"] = os.cpu_count()
    return rows
