"""Kernel dispatch of klsim.dp: zero skipping on dense input, and the serial/``prange`` chooser.

Zero skipping must not change the numbers beyond rounding (the dense kernels, forced, are the independent
reference; the CSR layout built by scipy is a second one), and the chooser must only pick kernels, never
change results.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import klsim.dp._core as core
from klsim._jit import KernelChooser, SizedKernelChooser
from klsim.dp import md_vi, value_iteration
from klsim.mdp import TabularMDP, garnet


@pytest.fixture(scope="module")
def g40():
    return garnet(40, 3, 4, seed=3, gamma=0.9)


def _sweep(mdp, q, log_mu, lam=0.5, tau=0.2):
    S, A = q.shape
    out = (np.empty((S, A)), np.empty(S), np.empty((S, A)))
    core.sweep(mdp, q, log_mu, lam, tau, *out)
    return out


def test_nonzero_csr_equals_scipy_csr_of_the_dense_matrix(g40):
    d = g40.to_dense()
    indptr, indices, data = d.nonzero_csr
    ref = sp.csr_array(d.transition_matrix())  # scipy drops zeros, columns sorted
    ref.sort_indices()
    assert np.array_equal(indptr, ref.indptr) and np.array_equal(indices, ref.indices)
    assert np.array_equal(data, ref.data)
    assert d.nnz == ref.nnz == 40 * 3 * 4
    assert not data.flags.writeable
    assert d.nonzero_csr is d.nonzero_csr  # cached: built once
    assert g40.nonzero_csr is g40.csr


def test_zero_skipping_only_below_the_density_threshold(g40, rng):
    assert core.sweeps_csr(g40) and core.sweeps_csr(g40.to_dense())  # density 4/40 = 0.1
    P = rng.dirichlet(np.ones(6), size=(6, 2))  # fully dense rows
    dense = TabularMDP(P, rng.uniform(size=(6, 2)), 0.9)
    assert dense.nnz == P.size and not core.sweeps_csr(dense)


def test_zero_skipping_sweep_equals_the_dense_kernel_and_the_sparse_layout(g40, rng, monkeypatch):
    S, A = 40, 3
    q = rng.standard_normal((S, A))
    log_mu = np.log(rng.dirichlet(np.ones(A), size=S))
    d = g40.to_dense()
    skipped = _sweep(d, q, log_mu)
    sparse = _sweep(g40, q, log_mu)
    for x, y in zip(skipped, sparse):  # same CSR arrays, same kernel: same bits
        assert np.array_equal(x, y)
    monkeypatch.setattr(core, "ZERO_SKIP_MAX_DENSITY", -1.0)
    assert not core.sweeps_csr(d)
    forced = _sweep(d, q, log_mu)
    for x, y in zip(skipped, forced):
        np.testing.assert_allclose(x, y, rtol=1e-14, atol=1e-14)


def test_zero_skipping_md_vi_and_vi_equal_the_dense_kernels(g40, monkeypatch):
    d = g40.to_dense()
    kw = dict(kl_coef=0.3, entropy_coef=0.05, n_iter=40, eval_steps=2, noise_std=0.5, seed=1)
    a, vi_a = md_vi(d, **kw), value_iteration(d, tol=1e-10)
    monkeypatch.setattr(core, "ZERO_SKIP_MAX_DENSITY", -1.0)
    b, vi_b = md_vi(d, **kw), value_iteration(d, tol=1e-10)
    np.testing.assert_allclose(a.q, b.q, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.log_policy, b.log_policy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vi_a.v, vi_b.v, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- KernelChooser


def _drive(c, n, cost):
    """n calls through the chooser with per-call times cost(parallel, call_index); the kernels picked."""
    picks = []
    for i in range(n):
        p = c.choose()
        picks.append(p)
        c.record(p, 100, cost(p, i))
    return picks


def test_chooser_tries_both_then_runs_the_faster():
    c = KernelChooser(probe_every=4, max_probe_every=16, trial_calls=1)
    picks = _drive(c, 14, lambda p, i: 1.0 if p else 0.1)  # parallel 10x slower (a busy core)
    # a trial of each, then serial except the re-tries: after 4 calls, then 8 (interval doubled)
    assert picks == [True, False] + [False, False, False, True] + [False] * 7 + [True]
    assert c.probe_every == 16


def test_chooser_records_only_the_last_call_of_a_trial():
    """The first call of a trial pays for waking the threads: it must not decide the choice."""
    c = KernelChooser(probe_every=3, trial_calls=2)

    def cost(p, i):  # a call right after a switch of kernel is slow (wake-up), then parallel is 2x faster
        return 5.0 if i > 0 and picks_so_far[i - 1] != p else (0.5 if p else 1.0)

    picks_so_far: list[bool] = []
    for i in range(12):
        p = c.choose()
        picks_so_far.append(p)
        c.record(p, 100, cost(p, i))
    assert picks_so_far[:4] == [True, True, False, False]  # two trials of two calls
    assert picks_so_far[4:6] == [True, True]  # the warm-up calls did not count
    assert picks_so_far[6:8] == [False, False]  # a serial trial at the 3rd regular call ...
    assert all(picks_so_far[8:]) and c.probe_every == 6  # ... confirms parallel (its wake-up ignored)


def test_chooser_switches_back_when_the_other_kernel_becomes_faster():
    c = KernelChooser(probe_every=3, max_probe_every=64, trial_calls=1)
    assert _drive(c, 4, lambda p, i: 1.0 if p else 0.1) == [True, False, False, False]
    assert c.choose() is True  # re-try
    c.record(True, 1, 0.001)  # the cores are free again
    assert c.best() is True and c.probe_every == 3
    assert c.choose() is True
    c.record(True, 1, 1.0)  # a busy core again: the next call is serial at once
    assert c.choose() is False
    with pytest.raises(ValueError, match="trial_calls"):
        KernelChooser(trial_calls=0)


def test_chooser_run_calls_the_chosen_function_and_returns_its_result():
    calls = []
    c = KernelChooser(trial_calls=1)
    out = [
        c.run(lambda x: calls.append(("s", x)) or "s", lambda x: calls.append(("p", x)) or "p", 10, i)
        for i in range(2)
    ]
    assert out == ["p", "s"] and calls == [("p", 0), ("s", 1)]


def test_sweep_through_the_chooser_gives_the_same_bits_whichever_kernel_runs(g40, rng, monkeypatch):
    monkeypatch.setattr(core, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(core, "PARALLEL_MIN_THREADS", 0)
    monkeypatch.setattr(core, "SWEEP_CHOOSER", SizedKernelChooser(probe_every=1))
    q = rng.standard_normal((40, 3))
    log_mu = np.full((40, 3), -np.log(3))
    results = [_sweep(g40, q, log_mu) for _ in range(8)]  # trials of both kernels, then re-tries
    (chooser,) = core.SWEEP_CHOOSER.by_size.values()
    assert None not in chooser.cost.values()
    for r in results[1:]:
        for x, y in zip(results[0], r):
            assert np.array_equal(x, y)


def test_sized_chooser_keeps_one_chooser_per_power_of_two():
    c = SizedKernelChooser(trial_calls=1)
    assert c.for_work(1000) is c.for_work(1023) and c.for_work(1024) is not c.for_work(1000)

    def serial(x):
        return ("s", x)

    def parallel(x):
        return ("p", x)

    assert c.run(serial, parallel, 2000, 1) == ("p", 1)  # a fresh size class starts with its own trials
    assert c.run(serial, parallel, 2000, 2) == ("s", 2)
    assert c.run(serial, parallel, 200_000, 3) == ("p", 3)
    assert len(c.by_size) == 3  # 1000 / 1024 and 2000 / 200,000


def test_chooser_ignores_a_lone_slow_call_but_not_two():
    c = KernelChooser(probe_every=1000, trial_calls=1)
    assert _drive(c, 5, lambda p, i: 1.0 if p else 2.0) == [True, False, True, True, True]
    c.record(c.choose(), 1, 50.0)  # one wake-up / hiccup
    assert c.choose() is True
    c.record(True, 1, 50.0)  # two slow calls in a row: a busy core
    assert c.choose() is False


def test_sized_chooser_runs_serial_alone_below_the_work_or_thread_minimum():
    c = SizedKernelChooser(trial_calls=1)

    def serial(x):
        return ("s", x)

    def parallel(x):
        return ("p", x)

    assert c.run(serial, parallel, 10, 1, min_work=100) == ("s", 1)
    assert c.run(serial, parallel, 1000, 2, min_work=100, min_threads=10**6) == ("s", 2)
    assert c.by_size == {}  # nothing was timed
    assert c.run(serial, parallel, 1000, 3, min_work=100) == ("p", 3)
