"""Exact regularized Nash equilibrium: damped Newton on the logit fixed point (spec §4).

The β-regularized equilibrium satisfies log π* = θ_ref + Pπ*/β − log Z*.  In centred logits θ (gauge
1ᵀθ = 0) the residual is r(θ) = C(θ − θ_ref − P softmax(θ)/β), C = I − 11ᵀ/n, with Jacobian
J = C(I − P(diag π − ππᵀ)/β).  Every context of a batch is solved at once (batched LU, no Python loop
over contexts).
"""

from __future__ import annotations

import numpy as np

from klsim._kernels.games import game_metrics
from klsim._validation import check_int, check_positive
from klsim.divergences import log_softmax
from klsim.games._blas import single_threaded_blas
from klsim.games.game import PreferenceGame, pref_matvec
from klsim.results import GameResult

__all__ = ["regularized_nash", "residual_tolerance", "continuation_levels", "NashNotCertifiedError"]

#: Exploitability a certified equilibrium must reach (spec §4).
EXPL_CERT = 1e-13


class NashNotCertifiedError(ValueError):
    """Raised when the Newton solver cannot certify the equilibrium at the spec's tolerance."""


def residual_tolerance(beta: float) -> float:
    """tol_r(β) = max(1e-12, 1e-14/β): the stopping threshold on max|r| (spec §4)."""
    return max(1e-12, 1e-14 / float(beta))


def continuation_levels(beta: float) -> list[float]:
    """β-levels of the continuation: [β] for β ≥ 0.1, else 0.1, 0.01, … (> β), then β."""
    beta = float(beta)
    if beta >= 0.1:
        return [beta]
    levels = []
    b = 0.1
    while b > beta * (1 + 1e-12):
        levels.append(b)
        b /= 10.0
    return levels + [beta]


def _center(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=-1, keepdims=True)


def _residual(P: np.ndarray, ref_c: np.ndarray, theta: np.ndarray, beta: float):
    """(r, π) for centred logits θ (C, n); ``ref_c`` is the centred θ_ref."""
    lp = log_softmax(theta, axis=-1)
    pi = np.exp(lp)
    Ppi = np.matmul(P, pi[..., None])[..., 0]
    return _center(theta - ref_c - Ppi / beta), pi, Ppi


#: bytes of one block of bordered systems factorized together (keeps temporaries cache- and RAM-friendly)
_BLOCK_BYTES = 1 << 26


def _newton_direction(P, pi, Ppi, r, beta):
    """Solve [[J, 1], [1ᵀ, 0]] [d; λ] = [−r; 0] for every context (batched LU, in blocks of contexts).

    J = C(I − (P·diag(π) − (Pπ)πᵀ)/β) is assembled in place in the bordered matrix (O(n²) per context,
    no matrix product).  Contexts are factorized in blocks of at most 64 MB of systems each.
    """
    C, n = pi.shape
    per = max(1, _BLOCK_BYTES // (8 * (n + 1) ** 2))
    d = np.empty((C, n))
    diag = np.arange(n)
    for s in range(0, C, per):
        e = min(C, s + per)
        K = np.empty((e - s, n + 1, n + 1))
        M = K[:, :n, :n]
        np.multiply(P[s:e], (-pi[s:e] / beta)[:, None, :], out=M)
        M += (Ppi[s:e] / beta)[:, :, None] * pi[s:e, None, :]
        M[:, diag, diag] += 1.0
        M -= M.mean(axis=1, keepdims=True)  # left-multiply by C = I − 11ᵀ/n
        K[:, :n, n] = 1.0
        K[:, n, :n] = 1.0
        K[:, n, n] = 0.0
        rhs = np.zeros((e - s, n + 1, 1))
        rhs[:, :n, 0] = -r[s:e]
        d[s:e] = np.linalg.solve(K, rhs)[:, :n, 0]
    return d


def _solve_level(P, ref_c, theta, beta, max_iter, hist):
    """Damped Newton with Armijo backtracking on ‖r‖₂ at one β, all contexts at once; returns (θ, r)."""
    tol = residual_tolerance(beta)
    C = theta.shape[0]
    r, pi, Ppi = _residual(P, ref_c, theta, beta)
    polish = np.zeros(C, dtype=np.int64)
    for _ in range(max_iter):
        rmax = np.abs(r).max(axis=1)
        hist.append(float(rmax.max()))
        active = (rmax > tol) | (polish < 3)
        if not active.any():
            break
        idx = np.flatnonzero(active)
        d = np.zeros_like(theta)
        if idx.size == C:
            d[:] = _newton_direction(P, pi, Ppi, r, beta)
        else:
            d[idx] = _newton_direction(P[idx], pi[idx], Ppi[idx], r[idx], beta)
        nr0 = np.linalg.norm(r, axis=1)
        conv = rmax <= tol  # converged contexts only polish: full steps that reduce the residual
        t = np.ones(C)
        pending = active.copy()
        while pending.any():
            th = _center(theta + (t * pending)[:, None] * d)
            rt, pit, Ppit = _residual(P, ref_c, th, beta)  # one batched product, no copy of P
            nrt = np.linalg.norm(rt, axis=1)
            ok = pending & np.where(conv, nrt < nr0, nrt <= (1.0 - 1e-4 * t) * nr0)
            theta[ok], r[ok], pi[ok], Ppi[ok] = th[ok], rt[ok], pit[ok], Ppit[ok]
            pending &= ~ok
            give_up = pending & (conv | (t / 2 < 1e-8))
            polish[give_up] = 3  # no further progress possible for these contexts
            pending &= ~give_up
            t[pending] /= 2
        polish[conv] += 1
    return theta, r


def regularized_nash(
    game: PreferenceGame, beta: float, *, max_iter: int = 200, log_init: np.ndarray | None = None
) -> GameResult:
    """Exact β-regularized Nash equilibrium π*_β by damped Newton with continuation in β.

    Solves log π* = θ_ref + Pπ*/β − log Z* (spec §1) via the centred residual
    r(θ) = C(θ − θ_ref − P softmax(θ)/β) and the bordered system [[J, 1], [1ᵀ, 0]][d; λ] = [−r; 0],
    J = C(I − P(diag π − ππᵀ)/β), with Armijo backtracking on ‖r‖₂ (factor 1 − 1e-4·t, t halved down to
    1e-8), starting from θ_ref.  For β < 0.1 it solves at 0.1, 0.01, …, β, warm-starting each level.
    It stops at max|r| ≤ tol_r(β) = max(1e-12, 1e-14/β), then takes ≤ 3 polishing steps while ‖r‖ drops.

    Parameters
    ----------
    game : PreferenceGame
        Single game or batch (every context solved at once).
    beta : float > 0
    max_iter : int
        Newton steps per β-level.
    log_init : ndarray, shape (n,) or (C, n), optional
        Initial logits for the final level (skips continuation).

    Returns
    -------
    GameResult
        ``log_policy`` = log π*_β; ``history["residual"]`` is max|r| per Newton step;
        ``details`` holds the certificate (``exploitability`` and ``residual_span`` per context).

    Raises
    ------
    NashNotCertifiedError (a ValueError)
        Unless every context has Expl(π*) ≤ 1e-13 and span(r) ≤ 10·tol_r(β) (the certificate of spec §4).

    Notes
    -----
    Spec nash-preference-games §4; the equilibrium is that of Munos et al. (2024), Tiapkin et al. (2025)
    eq. (2).  Never iterate π ← softmax(θ_ref + Pπ/β): its Lipschitz constant is ~1/(2β).
    """
    beta = check_positive("beta", beta)
    max_iter = check_int("max_iter", max_iter, 1)
    P = game.P3
    ref_c = _center(game.log_ref2)
    if log_init is None:
        theta = ref_c.copy()
        levels = continuation_levels(beta)
    else:
        theta = _center(game.as_batch(log_init).copy())
        levels = [beta]
    hist: list[float] = []
    with single_threaded_blas():
        for b in levels:
            theta, r = _solve_level(P, ref_c, theta, b, max_iter, hist)
    lp = log_softmax(theta, axis=-1)
    C = lp.shape[0]
    g = np.empty_like(lp)
    pref_matvec(P, np.exp(lp), g)
    kl, ex, sp, spr = np.empty(C), np.empty(C), np.empty(C), np.empty(C)
    game_metrics(lp, lp, game.log_ref2, g, beta, kl, ex, sp, spr)
    span_r = r.max(axis=1) - r.min(axis=1)
    tol = residual_tolerance(beta)
    bad = np.flatnonzero(~((ex <= EXPL_CERT) & (span_r <= 10 * tol)))
    if bad.size:
        c = int(bad[0])
        where = f" (context {c})" if game.is_batched else ""
        raise NashNotCertifiedError(
            f"regularized_nash: not certified at beta={beta!r}{where}: span(residual)={span_r[c]:.3g} "
            f"(need <= {10 * tol:.3g}), exploitability={ex[c]:.3g} (need <= {EXPL_CERT:g})"
        )
    return GameResult(
        log_policy=game.unbatch(lp),
        num_iter=len(hist),
        converged=True,
        history={"residual": np.asarray(hist)},
        details={"exploitability": game.unbatch(ex.copy()), "residual_span": game.unbatch(span_r)},
        algorithm="regularized_nash",
        params={"beta": beta, "levels": levels, "max_iter": max_iter},
    )
