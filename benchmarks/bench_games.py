"""Preference-game benchmarks (spec nash-preference-games §5, issue 4 item 5).

Rows:

* ``nash_mp_iteration_n{n}``: one Nash-MP iteration on an n-action game exactly as ``nash_mirror_prox``
  executes it (2 BLAS preference queries + 2 fused numba log-space updates), against a straightforward
  numpy implementation of the same iteration (``P @ exp(θ)``, affine mix, max-shifted logsumexp).  Both
  are dominated by the two memory-bound n×n products, so parity (ratio ≈ 1) is the expected outcome;
  ``bandwidth_fraction`` reports the bytes of P read twice per iteration against a numpy streaming read.
* ``nash_mp_batch_{C}x{n}_solve``: Nash-MP to exploitability ≤ 1e-8 on C contexts of n actions as one
  batch (no Python loop over contexts), against the same numpy iteration run context by context.
* ``regularized_nash_batch_{C}x{n}``: the batched damped-Newton solve (certified), against calling the
  solver once per context.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._timing import ab_medians, streaming_read_bandwidth
from klsim._kernels.games import affine_normalize
from klsim.games import nash_mirror_prox, random_game, regularized_nash
from klsim.games.game import pref_matvec


def _numpy_lse(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _numpy_nash_mp_iter(P, theta, ref, beta, c):
    """Straightforward numpy Nash-MP iteration (the peer)."""
    g = P @ np.exp(theta)
    half = (1 - c) * theta + c * (ref + g / beta)
    half = half - _numpy_lse(half)
    g2 = P @ np.exp(half)
    new = (1 - c) * theta + c * (ref + g2 / beta)
    return new - _numpy_lse(new)


def _klsim_nash_mp_iter(P3, lp, ref2, beta, c, g, half, out):
    """The loop body of ``nash_mirror_prox`` on a single game (default BLAS threads)."""
    pref_matvec(P3, np.exp(lp), g)
    affine_normalize(lp, ref2, g, 1.0 - c, c, c / beta, half)
    pref_matvec(P3, np.exp(half), g)
    affine_normalize(lp, ref2, g, 1.0 - c, c, c / beta, out)
    return out


def _iteration_row(n: int, repeats: int) -> dict:
    game = random_game(n, np.random.default_rng(0))
    beta = 0.1
    c = 2 * beta / (1 + 2 * beta)
    P3, ref2 = game.P3, game.log_ref2
    lp = ref2.copy()
    g, half, out = np.empty_like(lp), np.empty_like(lp), np.empty_like(lp)
    a = _klsim_nash_mp_iter(P3, lp, ref2, beta, c, g, half, out).copy()
    b = _numpy_nash_mp_iter(game.preferences, game.log_ref, game.log_ref, beta, c)
    err = float(np.abs(a[0] - b).max())
    t = ab_medians(
        {
            "klsim": lambda: _klsim_nash_mp_iter(P3, lp, ref2, beta, c, g, half, out),
            "peer": lambda: _numpy_nash_mp_iter(game.preferences, game.log_ref, game.log_ref, beta, c),
        },
        repeats=repeats,
    )
    bw = streaming_read_bandwidth(game.preferences.nbytes, repeats=3)
    ratio = t["klsim"] / t["peer"]
    return {
        "name": f"nash_mp_iteration_n{n}",
        "klsim_s": t["klsim"],
        "peer": "numpy (P @ exp(theta), logsumexp)",
        "peer_s": t["peer"],
        "ratio": ratio,
        "target": "ratio <= 1 (at least as fast; memory-bound parity expected)",
        "met": bool(ratio <= 1.0),
        "max_abs_diff": err,
        "bandwidth_fraction": float(2 * game.preferences.nbytes / t["klsim"] / bw),
    }


def _batch_rows(C: int, n: int) -> list[dict]:
    game = random_game(n, np.random.default_rng(1), n_contexts=C)
    beta = 0.1
    t0 = time.perf_counter()
    sol = regularized_nash(game, beta)
    t_newton = time.perf_counter() - t0
    lo = sol.log_policy
    # peer for Newton: one solve per context (Python loop)
    t0 = time.perf_counter()
    for c in range(C):
        regularized_nash(game.context(c), beta)
    t_newton_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = nash_mirror_prox(game, beta, n_iter=5000, tol=1e-8, log_opt=lo)
    t_mp = time.perf_counter() - t0
    k = res.num_iter
    # peer: the numpy iteration, context by context, for the same number of iterations
    cc = 2 * beta / (1 + 2 * beta)
    t0 = time.perf_counter()
    for c in range(C):
        th = game.log_ref[c].copy()
        for _ in range(k):
            th = _numpy_nash_mp_iter(game.preferences[c], th, game.log_ref[c], beta, cc)
    t_loop = time.perf_counter() - t0
    return [
        {
            "name": f"nash_mp_batch_{C}x{n}_solve",
            "klsim_s": t_mp,
            "peer": "numpy Nash-MP, loop over contexts",
            "peer_s": t_loop,
            "ratio": t_mp / t_loop,
            "target": "batched, no Python loop over contexts; timed",
            "met": bool(res.converged),
            "iterations": k,
            "final_max_expl": float(np.nanmax(res.history["exploitability_per_context"][-1])),
        },
        {
            "name": f"regularized_nash_batch_{C}x{n}",
            "klsim_s": t_newton,
            "peer": "regularized_nash per context (loop)",
            "peer_s": t_newton_loop,
            "ratio": t_newton / t_newton_loop,
            "target": "certified batch solve (Expl <= 1e-13 every context); timed",
            "met": bool(np.max(sol.details["exploitability"]) <= 1e-13),
            "newton_steps": sol.num_iter,
        },
    ]


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows (quick: n = 3000 iteration, 20 x 300 batch)."""
    if quick:
        return [_iteration_row(3000, repeats=7)] + _batch_rows(20, 300)
    return [_iteration_row(10_000, repeats=9)] + _batch_rows(100, 1000)
