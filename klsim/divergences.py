"""Log-space primitives and divergences between finite distributions.

Conventions (``docs/notation.md``):

* C2: ``logsumexp`` is unweighted and always max-shifted; an all-(−inf) slice gives −inf, not NaN.
* C11: 0·ln 0 = 0; a term with π(a) = μ(a) = 0 contributes 0; KL = +inf if π(a) > 0 = μ(a).

Distributions are passed as **log-probabilities** where they can underflow (``log_p``), with −inf for
probability 0.  All reductions run over the last axis.

The Tsallis primitives (``log_q``, ``exp_q``, S_q, D_q, ``tsallis_policy``) are defined below in their own
section (spec ``kl-regularized-dp.md`` §6).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "logsumexp",
    "log_softmax",
    "softmax",
    "kl_divergence",
    "entropy",
    "chi2_divergence",
    "js_divergence",
    "alpha_divergence",
    "f_divergence",
    # Tsallis section (spec §6)
    "log_q",
    "exp_q",
    "log_q_lee",
    "exp_q_lee",
    "tsallis_entropy",
    "tsallis_kl",
    "tsallis_greedy",
    "tsallis_policy",
    "tsallis_normalizer",
]


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Max-shifted ln Σ_a exp(x_a) along ``axis``.

    Parameters
    ----------
    x : ndarray, shape (..., A)
    axis : int

    Returns
    -------
    ndarray, shape (...)
        −inf where the whole slice is −inf (never NaN); +inf if any entry is +inf.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m_safe), axis=axis, keepdims=True)) + m_safe
    out = np.where(np.isposinf(m), np.inf, out)
    return np.squeeze(out, axis=axis)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """ln sm(x) = x − lse(x) along ``axis`` (an all-(−inf) slice gives an all-(−inf) result)."""
    x = np.asarray(x, dtype=np.float64)
    L = np.expand_dims(logsumexp(x, axis=axis), axis)
    with np.errstate(invalid="ignore"):
        out = x - L
    return np.where(np.isneginf(x), -np.inf, out)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """sm(x) = exp(x − lse(x)) along ``axis``."""
    return np.exp(log_softmax(x, axis=axis))


def _xlogy_terms(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        t = p * (log_p - log_q)
    t = np.where(np.isneginf(log_p), 0.0, t)  # 0·ln 0 = 0 (C11)
    return np.where(np.isneginf(log_q) & ~np.isneginf(log_p), np.inf, t)


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray, axis: int = -1) -> np.ndarray:
    """KL(p‖q) = Σ p (ln p − ln q) from log-probabilities, with convention C11.

    Parameters
    ----------
    log_p, log_q : ndarray, shape (..., A)
        Log-probabilities (−inf = 0).

    Returns
    -------
    ndarray, shape (...)
        +inf where p puts mass outside supp q.
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    if log_p.shape != log_q.shape:
        raise ValueError(f"kl_divergence: shape mismatch log_p {log_p.shape} vs log_q {log_q.shape}")
    return np.sum(_xlogy_terms(log_p, log_q), axis=axis)


def entropy(log_p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy H(p) = −Σ p ln p from log-probabilities (0·ln 0 = 0)."""
    log_p = np.asarray(log_p, dtype=np.float64)
    return -np.sum(
        np.where(np.isneginf(log_p), 0.0, np.exp(log_p) * np.where(np.isneginf(log_p), 0.0, log_p)), axis=axis
    )


def chi2_divergence(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson χ²(p‖q) = Σ (p − q)²/q (probabilities; terms with p = q = 0 are 0, p > 0 = q gives +inf)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(q > 0, (p - q) ** 2 / np.where(q > 0, q, 1.0), np.where(p > 0, np.inf, 0.0))
    return np.sum(t, axis=axis)


def js_divergence(log_p: np.ndarray, log_q: np.ndarray, beta: float = 0.5, axis: int = -1) -> np.ndarray:
    """Generalized Jensen-Shannon JSD_β(p‖q) = β KL(p‖m) + (1−β) KL(q‖m), m = βp + (1−β)q, β ∈ (0, 1)."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta: must lie in (0, 1), got {beta!r}")
    log_p = np.asarray(log_p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    log_m = np.logaddexp(np.log(beta) + log_p, np.log1p(-beta) + log_q)
    return beta * kl_divergence(log_p, log_m, axis) + (1 - beta) * kl_divergence(log_q, log_m, axis)


def alpha_divergence(log_p: np.ndarray, log_q: np.ndarray, alpha: float, axis: int = -1) -> np.ndarray:
    """Amari α-divergence D_α(p‖q) = (1 − Σ p^α q^{1−α}) / (α(1−α)); α → 1 gives KL(p‖q), α → 0 KL(q‖p)."""
    if alpha in (0.0, 1.0):
        return kl_divergence(log_p, log_q, axis) if alpha == 1.0 else kl_divergence(log_q, log_p, axis)
    log_p = np.asarray(log_p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    s = np.exp(logsumexp(alpha * log_p + (1 - alpha) * log_q, axis=axis))
    return (1.0 - s) / (alpha * (1.0 - alpha))


def f_divergence(p: np.ndarray, q: np.ndarray, f, axis: int = -1) -> np.ndarray:
    """Generic D_f(p‖q) = Σ_a q(a) f(p(a)/q(a)) over the support of q (probabilities; f convex, f(1) = 0)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(q > 0, q * f(np.where(q > 0, p / np.where(q > 0, q, 1.0), 1.0)), 0.0)
    return np.sum(t, axis=axis)


# --- Tsallis section (spec §6) ------------------------------------------------------------------
#
# Conventions (docs/notation.md, spec §1 and §6):
#
# * C4: ``log_q`` / ``exp_q`` use the Tsallis (1988) convention ln_q x = (x^{1−q} − 1)/(1 − q); the Lee
#   convention ln^L_q = ln_{2−q} is available only as ``log_q_lee`` / ``exp_q_lee``.
# * C5: S_q(π) = (1 − Σ π^q)/(q − 1), so the q = 2 entropy-greedy step is sparsemax(Q/(2τ)).
# * C6: the MVI(q) normalizer M_{q,τ}(Q) is ν' with Q − ν' = qτ ln^L_q π on the support
#   (``tsallis_normalizer``).
# * C11 applies to S_q and D_q (terms with π(a) = 0 contribute 0).


from klsim._jit import SizedKernelChooser as _SizedKernelChooser  # noqa: E402
from klsim._kernels import tsallis as _tsk  # noqa: E402
from klsim._validation import as_float_array as _as_float_array  # noqa: E402
from klsim._validation import check_finite as _check_finite  # noqa: E402
from klsim._validation import check_nonnegative_scalar as _check_nonnegative_scalar  # noqa: E402
from klsim._validation import check_positive as _check_positive  # noqa: E402

_REF_TOL = 1e-10
_TSALLIS_CHOOSER = _SizedKernelChooser()
"""Runs the faster of the serial and ``prange`` Tsallis kernels on large batches (same bits)."""


def _check_tsallis_index(tsallis_q: float, minimum: float = 0.0) -> float:
    """``tsallis_q`` as a finite float > ``minimum`` (0: primitives) or >= 1 (greedy steps)."""
    try:
        qv = float(tsallis_q)
    except (TypeError, ValueError):
        raise ValueError(f"tsallis_q: expected a float, got {tsallis_q!r}") from None
    if minimum >= 1.0:
        if not (np.isfinite(qv) and qv >= 1.0):
            raise ValueError(
                f"tsallis_q: greedy steps need a finite q >= 1 (q < 1 is out of scope), got {tsallis_q!r}"
            )
    elif not (np.isfinite(qv) and qv > 0.0):
        raise ValueError(f"tsallis_q: must be a finite number > 0, got {tsallis_q!r}")
    return qv


def _ln_index(x: np.ndarray, k: float) -> np.ndarray:
    """ln_k x = (x^{1−k} − 1)/(1 − k) = expm1((1−k) ln x)/(1−k) for any real k (ln at k = 1), x >= 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lx = np.log(x)
        if k == 1.0:
            return lx
        return np.expm1((1.0 - k) * lx) / (1.0 - k)


def _exp_index(x: np.ndarray, k: float) -> np.ndarray:
    """exp_k x = [1 + (1−k) x]_+^{1/(1−k)} = exp(log1p((1−k)x)/(1−k)) for any real k (exp at k = 1)."""
    if k == 1.0:
        return np.exp(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        base = (1.0 - k) * x
        out = np.exp(np.log1p(np.maximum(base, -1.0)) / (1.0 - k))
    # [·]_+ = 0: the power is 0 for k < 1 and +inf for k > 1 (the pole of exp_k)
    return np.where(base <= -1.0, 0.0 if k < 1.0 else np.inf, out)


def _nonneg_input(name: str, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    bad = np.isnan(x) | (x < 0)
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), x.shape))
        raise ValueError(f"{name}: ln_q needs x >= 0, got {x[idx].item()!r} at {idx if x.ndim else '()'}")
    return x


def log_q(x: np.ndarray, tsallis_q: float) -> np.ndarray:
    """Tsallis q-logarithm ln_q x = (x^{1−q} − 1)/(1 − q) (convention C4; Tsallis 1988).

    Parameters
    ----------
    x : array_like, entries >= 0
    tsallis_q : float
        q > 0; q = 1 gives ``np.log``.

    Returns
    -------
    ndarray, shape of ``x``
        ln_q 0 = −inf for q >= 1 and −1/(1−q) for q < 1.  Computed as expm1((1−q) ln x)/(1−q), which is
        accurate for q close to 1.

    Notes
    -----
    Pseudo-additivity: ln_q(xy) = ln_q x + ln_q y + (1−q) ln_q x ln_q y (spec §6).  The Lee convention is
    :func:`log_q_lee` (ln^L_q = ln_{2−q}).
    """
    qv = _check_tsallis_index(tsallis_q)
    return _ln_index(_nonneg_input("x", x), qv)


def exp_q(x: np.ndarray, tsallis_q: float) -> np.ndarray:
    """Tsallis q-exponential exp_q x = [1 + (1−q) x]_+^{1/(1−q)} (convention C4), the inverse of :func:`log_q`.

    Parameters
    ----------
    x : array_like
    tsallis_q : float
        q > 0; q = 1 gives ``np.exp``.

    Returns
    -------
    ndarray
        For q > 1 the result is +inf at and beyond the pole x >= 1/(q−1) (where [·]_+ = 0 is raised to a
        negative power); for q < 1 it is 0 for x <= −1/(1−q).
    """
    qv = _check_tsallis_index(tsallis_q)
    return _exp_index(np.asarray(x, dtype=np.float64), qv)


def log_q_lee(x: np.ndarray, tsallis_q: float) -> np.ndarray:
    """Lee-convention q-logarithm ln^L_q x = (x^{q−1} − 1)/(q − 1) = ln_{2−q} x (spec §6, C4).

    ln^L_q 0 = −1/(q−1) is finite for q > 1; the pseudo-additivity factor is (q − 1).  ``tsallis_q > 0``.
    """
    qv = _check_tsallis_index(tsallis_q)
    return _ln_index(_nonneg_input("x", x), 2.0 - qv)


def exp_q_lee(x: np.ndarray, tsallis_q: float) -> np.ndarray:
    """Lee-convention q-exponential exp^L_q x = [1 + (q−1) x]_+^{1/(q−1)} = exp_{2−q} x (spec §6, C4)."""
    qv = _check_tsallis_index(tsallis_q)
    return _exp_index(np.asarray(x, dtype=np.float64), 2.0 - qv)


def tsallis_entropy(log_p: np.ndarray, tsallis_q: float, axis: int = -1) -> np.ndarray:
    """Tsallis entropy S_q(π) = (1 − Σ π^q)/(q − 1) = ⟨π, ln_q(1/π)⟩ from log-probabilities (C5, C11).

    Parameters
    ----------
    log_p : ndarray, shape (..., A)
        Log-probabilities (−inf = 0).
    tsallis_q : float
        q > 0; q = 1 returns the Shannon :func:`entropy` exactly.

    Returns
    -------
    ndarray, shape (...)

    Notes
    -----
    Evaluated as Σ_a π_a expm1((q−1) ln π_a)/(1 − q), equal to the closed form when Σπ = 1 and accurate as
    q → 1 (where S_q → H).  Normalization C5: the factor is 1/(q−1), not ½ at q = 2.
    """
    qv = _check_tsallis_index(tsallis_q)
    log_p = np.asarray(log_p, dtype=np.float64)
    if qv == 1.0:
        return entropy(log_p, axis=axis)
    with np.errstate(invalid="ignore", over="ignore"):
        t = np.exp(log_p) * np.expm1((qv - 1.0) * log_p) / (1.0 - qv)
    return np.sum(np.where(np.isneginf(log_p), 0.0, t), axis=axis)


def tsallis_kl(log_p: np.ndarray, log_mu: np.ndarray, tsallis_q: float, axis: int = -1) -> np.ndarray:
    """Tsallis relative entropy D_q(π‖μ) = (Σ π^q μ^{1−q} − 1)/(q − 1) = ⟨π, ln^L_q(π/μ)⟩ (spec §6, C11).

    Parameters
    ----------
    log_p, log_mu : ndarray, shape (..., A)
        Log-probabilities of π and μ (−inf = 0).
    tsallis_q : float
        q > 0; q = 1 returns :func:`kl_divergence` exactly.  D_2 is Pearson's χ²(π‖μ).

    Returns
    -------
    ndarray, shape (...)
        D_q ≥ 0; +inf for q ≥ 1 when π puts mass outside supp μ (for q < 1 such terms are finite).

    Notes
    -----
    Evaluated as Σ_a π_a expm1((q−1)(ln π_a − ln μ_a))/(q − 1), accurate as q → 1 (D_q → KL).  Caution
    (spec §12, pitfall 5): −⟨π, ln^L_q(μ/π)⟩ is *not* a divergence (it is ≡ 0 at q = 2).
    """
    qv = _check_tsallis_index(tsallis_q)
    log_p = np.asarray(log_p, dtype=np.float64)
    log_mu = np.asarray(log_mu, dtype=np.float64)
    if log_p.shape != log_mu.shape:
        raise ValueError(f"tsallis_kl: shape mismatch log_p {log_p.shape} vs log_mu {log_mu.shape}")
    if qv == 1.0:
        return kl_divergence(log_p, log_mu, axis=axis)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.where(np.isneginf(log_mu) & ~np.isneginf(log_p), np.inf, log_p - log_mu)
        t = np.exp(log_p) * np.expm1((qv - 1.0) * d) / (qv - 1.0)
    return np.sum(np.where(np.isneginf(log_p), 0.0, t), axis=axis)


def _check_log_ref(log_ref, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Broadcast a log-reference policy to ``shape`` and check each row is a log-distribution."""
    lr = np.asarray(log_ref, dtype=np.float64)
    try:
        lr = np.broadcast_to(lr, shape)
    except ValueError:
        raise ValueError(f"{name}: shape {lr.shape} does not broadcast to q_values {shape}") from None
    bad = np.isnan(lr) | np.isposinf(lr) | (lr > 1e-12)
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), shape))
        raise ValueError(
            f"{name}: expected log-probabilities (<= 0 or -inf), got {lr[idx].item()!r} at {idx}"
        )
    sums = logsumexp(lr, axis=-1)
    bad = ~(np.abs(sums) <= _REF_TOL)
    if np.any(bad):
        idx = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(np.ravel(bad))[0]), np.shape(sums)))
        raise ValueError(
            f"{name}: row {idx} is not a log-distribution (logsumexp {float(np.asarray(sums)[idx])!r}, "
            f"must be 0 within {_REF_TOL:g}); pass log-probabilities, not probabilities"
        )
    return lr


def _tsallis_step(
    q_values: np.ndarray, qv: float, lam: float, tau: float, log_ref: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validated-input core for q > 1: ``(log π, ν)`` with shapes (..., A) and (...)."""
    shape = q_values.shape
    A = shape[-1]
    # writable C-contiguous float64 (a read-only array would compile a second kernel specialization)
    Q2 = np.require(q_values.reshape(-1, A), np.float64, ["C", "W"])
    if lam > 0.0 and log_ref is not None:
        lm2 = np.require(np.broadcast_to(log_ref, shape).reshape(-1, A), np.float64, ["C", "W"])
    else:
        lm2 = np.zeros((1, A))
    out = np.empty_like(Q2)
    nu = np.empty(Q2.shape[0])
    args = (Q2, lm2, float(lam), float(tau), float(qv), out, nu)
    _TSALLIS_CHOOSER.run(
        _tsk.tsallis_threshold_rows,
        _tsk.tsallis_threshold_rows_par,
        Q2.size,
        *args,
        min_work=_tsk.PARALLEL_MIN_ENTRIES,
        min_threads=_tsk.PARALLEL_MIN_THREADS,
    )
    if qv == 2.0 and lam == 0.0 and np.isnan(nu).any():
        # the sparsemax path checks finiteness in its first pass (no extra pass over Q) and flags rows
        _check_finite("q_values", q_values)
        raise RuntimeError("tsallis kernel flagged a finite row (internal error)")
    return out.reshape(shape), nu.reshape(shape[:-1])


def _check_q_values(q_values, finite: bool = True) -> np.ndarray:
    """``q_values`` as a float64 array of shape (..., A), A >= 1; finite unless ``finite=False``.

    ``finite=False`` is for the q = 2, λ = 0 kernel path, which checks finiteness itself
    (:func:`_tsallis_step` then raises the same ``ValueError``).
    """
    Q = _as_float_array("q_values", q_values)
    if Q.ndim < 1 or Q.shape[-1] < 1:
        raise ValueError(f"q_values: expected shape (..., A) with A >= 1, got {Q.shape}")
    if finite:
        # NaN/±inf always make the sum non-finite (one pass, no temporary); an overflowing sum of finite
        # values only triggers the detailed check, which then passes.  The detailed check names the index.
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.sum(Q)
        if not np.isfinite(total):
            _check_finite("q_values", Q)
    return Q


def tsallis_greedy(
    q_values: np.ndarray,
    tsallis_q: float,
    *,
    kl_coef: float = 0.0,
    entropy_coef: float = 0.0,
    log_ref: np.ndarray | None = None,
) -> np.ndarray:
    """General Tsallis-regularized greedy step argmax_π ⟨π,Q⟩ − λ D_q(π‖μ) + τ S_q(π), as log-probabilities.

    Parameters
    ----------
    q_values : ndarray, shape (..., A)
        Action values Q (finite).
    tsallis_q : float
        q >= 1.  q = 1 dispatches to the Shannon step of spec §2: log sm(β ln μ + Q/(λ+τ)), β = λ/(λ+τ).
    kl_coef, entropy_coef : float
        λ, τ >= 0 with λ + τ > 0.
    log_ref : ndarray, shape broadcastable to (..., A), optional
        ln μ (log-probabilities, −inf = 0); required when λ > 0.

    Returns
    -------
    ndarray, shape (..., A)
        ln π, −inf off the support.

    Notes
    -----
    For q > 1 (spec §6, [TKL]): π(a) = [(q−1)(Q(a) − ν)/(q w(a))]_+^{1/(q−1)} with w(a) = λ μ(a)^{1−q} + τ
    and ν fixed by Σπ = 1; actions outside supp μ get 0 when λ > 0.  The threshold is found by sorting and
    a root-find in the numba kernel :func:`klsim._kernels.tsallis.tsallis_threshold_rows`, with the root
    bracket widened by a relative 1e-12; ties at the threshold get probability 0.  With the C5
    normalization of S_q, λ = 0 and q = 2 give sparsemax(Q/(2τ)) ([SPM]).
    """
    Q = _check_q_values(q_values, finite=False)
    qv = _check_tsallis_index(tsallis_q, 1.0)
    lam = _check_nonnegative_scalar("kl_coef", kl_coef)
    tau = _check_nonnegative_scalar("entropy_coef", entropy_coef)
    if lam + tau <= 0.0:
        raise ValueError(f"kl_coef + entropy_coef: must be > 0, got {kl_coef!r} + {entropy_coef!r}")
    if not (qv == 2.0 and lam == 0.0):  # the sparsemax kernel path checks finiteness in its first pass
        _check_q_values(Q)
    lr = None
    if lam > 0.0:
        if log_ref is None:
            raise ValueError("log_ref: required when kl_coef > 0")
        lr = _check_log_ref(log_ref, Q.shape, "log_ref")
    if qv == 1.0:
        if lr is None:
            return log_softmax(Q / tau)
        beta = lam / (lam + tau)
        with np.errstate(invalid="ignore"):
            z = beta * lr + Q / (lam + tau)
        return log_softmax(np.where(np.isneginf(lr), -np.inf, z))
    return _tsallis_step(Q, qv, lam, tau, lr)[0]


def tsallis_policy(
    q_values: np.ndarray, tsallis_q: float, coef: float, ref: np.ndarray | None = None
) -> np.ndarray:
    """Tsallis-regularized greedy policy, as log-probabilities (spec §6).

    Parameters
    ----------
    q_values : ndarray, shape (..., A)
        Action values Q (finite).
    tsallis_q : float
        q >= 1; q = 1 is exactly the softmax (``log_softmax(Q/coef)``, or ``log_softmax(ref + Q/coef)``).
    coef : float
        > 0.  Without ``ref``: the entropy coefficient τ of argmax ⟨π,Q⟩ + τ S_q(π).  With ``ref``: the
        Tsallis-KL coefficient λ of the mirror step argmax ⟨π,Q⟩ − λ D_q(π‖μ).
    ref : ndarray, shape broadcastable to (..., A), optional
        ln μ, the reference policy as **log-probabilities** (−inf = 0); probabilities are rejected.

    Returns
    -------
    ndarray, shape (..., A)
        ln π (−inf off the support).

    Notes
    -----
    τ-only: π = exp^L_q((Q − ν')/(qτ)), at q = 2 sparsemax(Q/(2τ)) (C5).  λ-only: π = μ[(q−1)(Q−ν)/(qλ)]_+^{1/(q−1)},
    so supp π ⊆ supp μ (support collapse of the iterated step).  See :func:`tsallis_greedy` for the
    general (λ, τ) step and the algorithm.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(np.exp(tsallis_policy(np.array([1.0, 0.8, -1.0]), 2.0, 0.5)), 6)
    array([0.6, 0.4, 0. ])
    """
    c = _check_positive("coef", coef)
    if ref is None:
        return tsallis_greedy(q_values, tsallis_q, entropy_coef=c)
    return tsallis_greedy(q_values, tsallis_q, kl_coef=c, log_ref=ref)


def tsallis_normalizer(q_values: np.ndarray, tsallis_q: float, tau: float) -> np.ndarray:
    """MVI(q)'s normalizer M_{q,τ}(Q) = ν' (convention C6, spec §6).

    Parameters
    ----------
    q_values : ndarray, shape (..., A)
    tsallis_q : float
        q >= 1; q = 1 gives τ lse(Q/τ).
    tau : float
        τ > 0.

    Returns
    -------
    ndarray, shape (...)
        ν' such that Q − ν' = qτ ln^L_q π on supp π, π = argmax ⟨π,Q⟩ + τ S_q(π); ν' = ν + qτ/(q−1) with ν
        the threshold of :func:`tsallis_greedy`.  As q → 1, ν' → τ lse(Q/τ); as q → ∞, ν' → max Q.
    """
    Q = _check_q_values(q_values)
    qv = _check_tsallis_index(tsallis_q, 1.0)
    t = _check_positive("tau", tau)
    if qv == 1.0:
        return t * logsumexp(Q / t)
    return _tsallis_step(Q, qv, 0.0, t, None)[1] + qv * t / (qv - 1.0)
