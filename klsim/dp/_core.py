"""Private helpers of :mod:`klsim.dp`: input checks and layout dispatch to the numba kernels."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from klsim._jit import SizedKernelChooser
from klsim._kernels.dp import (
    backup_csr,
    backup_dense,
    hard_greedy_rows,
    policy_value_rows,
    soft_greedy_rows,
    soft_sweep_csr,
    soft_sweep_csr_par,
    soft_sweep_dense,
)
from klsim._validation import as_float_array, check_nonnegative_scalar
from klsim.mdp import TabularMDP

PARALLEL_MIN_WORK = 100_000
"""CSR sweeps touching at least this many transition entries use the ``prange`` kernel (same bits as
serial: no reduction crosses states).  Measured on the idle 2-core machine, 2 numba threads: Garnet(2000,
10, 10) (2e5 entries) 177 µs serial vs 134 µs parallel; S = 20,000: 4.3 ms vs 2.5 ms; S = 100,000: 22 ms vs
12 ms."""

DENSE_BLAS_MIN_WORK = 4_000_000
"""Dense sweeps touching at least this many entries use numpy's BLAS matrix-vector product (memory-bound;
equal to the numba dot product up to rounding)."""

ZERO_SKIP_MAX_DENSITY = 0.25
"""Dense-layout MDPs with at most this fraction of nonzero transition probabilities are swept over their
nonzeros (:attr:`klsim.mdp.TabularMDP.nonzero_csr`, built once).  Skipping exact zeros drops only
products that are exactly 0.0; the remaining products are summed in column order instead of the dense
kernels' 8 partial sums (or BLAS's order), so results agree with the dense kernels to rounding.  A CSR
entry costs 16 bytes (value + int64 index) against 8 for a dense one, so the break-even density is 0.5;
0.25 keeps a margin.  Garnet(2000, 10, 10) stored dense has density 0.005: its sweep reads 3.2 MB
instead of 320 MB."""

SWEEP_CHOOSER = SizedKernelChooser()
"""Times the serial and ``prange`` CSR sweeps and runs the faster (see :class:`klsim._jit.KernelChooser`)."""

PARALLEL_MIN_THREADS = 2
"""The ``prange`` CSR sweep needs at least this many numba threads (``numba.set_num_threads(1)`` turns it
off); above that, :data:`SWEEP_CHOOSER` falls back to the serial kernel while it is faster (busy cores)."""

LOG_NORM_TOL = 1e-10
"""Tolerance on Σ_a exp(log π(a|s)) − 1 for log-policies given by the user."""


def check_mdp(mdp) -> TabularMDP:
    """Raise unless ``mdp`` is a :class:`~klsim.mdp.TabularMDP`."""
    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
    return mdp


def check_coefs(kl_coef: float, entropy_coef: float) -> tuple[float, float]:
    """Validate λ ≥ 0 and τ ≥ 0 (finite)."""
    return check_nonnegative_scalar("kl_coef", kl_coef), check_nonnegative_scalar(
        "entropy_coef", entropy_coef
    )


def check_log_policy(name: str, log_pi, shape: tuple[int, int]) -> np.ndarray:
    """A (S, A) float64 log-policy: no NaN/+inf, each row's probabilities sum to 1 within 1e-10."""
    arr = as_float_array(name, log_pi)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    bad = np.isnan(arr) | np.isposinf(arr)
    if bad.any():
        s, a = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), arr.shape)
        raise ValueError(f"{name}: NaN or +inf log-probability at (s={s}, a={a})")
    sums = np.exp(arr).sum(axis=1)
    off = np.abs(sums - 1.0) > LOG_NORM_TOL
    if off.any():
        s = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"{name}: row s={s} has probabilities summing to {sums[s]!r} (must be 1 within 1e-10)"
        )
    return arr


def check_q(name: str, q, shape: tuple[int, int]) -> np.ndarray:
    """A finite (S, A) float64 array."""
    arr = as_float_array(name, q)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        s, a = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), arr.shape)
        raise ValueError(f"{name}: non-finite value {arr[s, a]!r} at (s={s}, a={a})")
    return arr


def uniform_log_policy(S: int, A: int) -> np.ndarray:
    """C1: π_0 uniform over the (rectangular) action set, as log-probabilities."""
    return np.full((S, A), -np.log(A))


def sweeps_csr(mdp: TabularMDP) -> bool:
    """True when sweeps use the CSR kernels: the sparse layout, or a dense P with density ≤ 0.25."""
    return mdp.is_sparse or mdp.nnz <= ZERO_SKIP_MAX_DENSITY * mdp.P.size


def backup(mdp: TabularMDP, v: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = R + γ P v (layout dispatch)."""
    if sweeps_csr(mdp):
        indptr, indices, data = mdp.nonzero_csr
        return backup_csr(indptr, indices, data, mdp.R, mdp.gamma, v, out)
    return backup_dense_kernel(mdp, v, out)


def backup_dense_kernel(mdp: TabularMDP, v: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = R + γ P v with the dense kernels (numba, or BLAS gemv for large P), whatever P's density."""
    if mdp.P.size >= DENSE_BLAS_MIN_WORK:
        return _backup_dense_blas(mdp, v, out)
    return backup_dense(mdp.P, mdp.R, mdp.gamma, v, out)


def _backup_dense_blas(mdp: TabularMDP, v: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = R + γ P v with one BLAS gemv over the (S*A, S) view (large dense MDPs are memory-bound)."""
    flat = out.reshape(-1)
    np.matmul(mdp.transition_matrix(), v, out=flat)
    flat *= mdp.gamma
    flat += mdp.R.reshape(-1)
    return out


def greedy_rows(q, log_mu, kl_coef: float, entropy_coef: float, log_pi, v) -> None:
    """In-place G^{λ,τ}_μ(q) per state (hard branch when λ = τ = 0)."""
    temp = kl_coef + entropy_coef
    if temp == 0.0:
        hard_greedy_rows(q, log_pi, v)
    else:
        soft_greedy_rows(
            np.ascontiguousarray(q), np.ascontiguousarray(log_mu), kl_coef / temp, temp, log_pi, v
        )


def sweep(mdp: TabularMDP, q, log_mu, kl_coef: float, entropy_coef: float, log_pi, v, q_out) -> None:
    """One regularized sweep: log_pi = G^{λ,τ}_μ(q), v = its bracket value, q_out = R + γ P v (spec §2)."""
    temp = kl_coef + entropy_coef
    if temp == 0.0:
        hard_greedy_rows(q, log_pi, v)
        backup(mdp, v, q_out)
        return
    beta = kl_coef / temp
    if sweeps_csr(mdp):
        indptr, indices, data = mdp.nonzero_csr
        args = (indptr, indices, data, mdp.R, mdp.gamma, q, log_mu, beta, temp, log_pi, v, q_out)
        SWEEP_CHOOSER.run(
            soft_sweep_csr,
            soft_sweep_csr_par,
            data.size,
            *args,
            min_work=PARALLEL_MIN_WORK,
            min_threads=PARALLEL_MIN_THREADS,
        )
    else:
        soft_sweep_dense_kernel(mdp, q, log_mu, beta, temp, log_pi, v, q_out)


def soft_sweep_dense_kernel(mdp: TabularMDP, q, log_mu, beta: float, temp: float, log_pi, v, q_out) -> None:
    """The soft sweep with the dense kernels (numba, or numba greedy + BLAS gemv for large P), any density."""
    if mdp.P.size >= DENSE_BLAS_MIN_WORK:
        soft_greedy_rows(q, log_mu, beta, temp, log_pi, v)
        _backup_dense_blas(mdp, v, q_out)
    else:
        soft_sweep_dense(mdp.P, mdp.R, mdp.gamma, q, log_mu, beta, temp, log_pi, v, q_out)


def policy_value(log_pi, q, log_mu, kl_coef: float, entropy_coef: float, out=None) -> np.ndarray:
    """⟨π,q⟩ − λKL(π‖μ) + τH(π) per state, shape (S,)."""
    if out is None:
        out = np.empty(q.shape[0])
    mu = log_pi if log_mu is None else log_mu
    return policy_value_rows(log_pi, q, mu, float(kl_coef), float(entropy_coef), out)


def policy_transition(mdp: TabularMDP, policy: np.ndarray):
    """P^π[s, s'] = Σ_a π(a|s) P(s'|s, a): dense (S, S) array, or CSC sparse for the sparse layout."""
    S, A = mdp.n_states, mdp.n_actions
    if not mdp.is_sparse:
        return np.einsum("sa,sat->st", policy, mdp.P)
    rows = np.repeat(np.arange(S), A)
    cols = np.arange(S * A)
    D = sp.csr_array((policy.ravel(), (rows, cols)), shape=(S, S * A))
    return (D @ mdp.transition_matrix()).tocsc()
