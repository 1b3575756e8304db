"""Numba kernels for preference games (``klsim.games``).

Every kernel works on a batch of contexts: policies are ``(C, n)`` float64 arrays (rows = contexts) and
preference matrices are ``(C, n, n)``.  One signature per kernel.

* :func:`pref_matvec` computes P π = ½·(1ᵀπ)·1 + A π with A = P − ½ 11ᵀ antisymmetric, reading only the
  strict upper triangle of P (half the memory traffic of a dense product; the game stores P in the
  canonical form ½ + (P − Pᵀ)/2, so A_ji = −A_ij to rounding).
* :func:`affine_normalize` forms a·θ + b·θ_ref + s·g and renormalizes with a max-shifted logsumexp; every
  log-space update of the family (prox / magnetic mirror step, MWU step, Nash-MD mixture) is one call.
* :func:`game_metrics` computes per context KL(π*‖π) (stable form), β-exploitability (Jensen-gap form)
  and span(log π − log π*).
"""

from __future__ import annotations

import numpy as np

from klsim._jit import njit

__all__ = ["pref_matvec", "affine_normalize", "game_metrics"]


@njit
def pref_matvec(P, pi, out):
    """out[c] = P[c] @ pi[c] using only the strict upper triangle of each P[c] (antisymmetry).

    Parameters
    ----------
    P : float64 (C, n, n), with P + Pᵀ = 11ᵀ.
    pi : float64 (C, n), any non-negative weights (not necessarily normalized).
    out : float64 (C, n), overwritten.
    """
    C, n = pi.shape
    for c in range(C):
        o = out[c]
        p = pi[c]
        tot = 0.0
        for j in range(n):
            o[j] = 0.0
            tot += p[j]
        for i in range(n):
            row = P[c, i]
            pii = p[i]
            # four independent accumulators for the row dot product (deterministic order)
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            j = i + 1
            while j + 3 < n:
                a0 = row[j] - 0.5
                a1 = row[j + 1] - 0.5
                a2 = row[j + 2] - 0.5
                a3 = row[j + 3] - 0.5
                s0 += a0 * p[j]
                s1 += a1 * p[j + 1]
                s2 += a2 * p[j + 2]
                s3 += a3 * p[j + 3]
                o[j] -= a0 * pii
                o[j + 1] -= a1 * pii
                o[j + 2] -= a2 * pii
                o[j + 3] -= a3 * pii
                j += 4
            while j < n:
                a0 = row[j] - 0.5
                s0 += a0 * p[j]
                o[j] -= a0 * pii
                j += 1
            o[i] += (s0 + s1) + (s2 + s3)
        half = 0.5 * tot
        for j in range(n):
            o[j] += half
    return out


@njit
def affine_normalize(theta, log_ref, g, a, b, s, out):
    """out[c] = normalize(a·θ[c] + b·θ_ref[c] + s·g[c]) in log space (max-shifted logsumexp).

    A term whose coefficient is exactly 0 is skipped (so −inf·0 never produces NaN).  ``out`` may alias
    ``theta``.
    """
    C, n = theta.shape
    for c in range(C):
        m = -np.inf
        for j in range(n):
            v = 0.0
            if a != 0.0:
                v += a * theta[c, j]
            if b != 0.0:
                v += b * log_ref[c, j]
            if s != 0.0:
                v += s * g[c, j]
            out[c, j] = v
            if v > m:
                m = v
        tot = 0.0
        for j in range(n):
            tot += np.exp(out[c, j] - m)
        lz = m + np.log(tot)
        for j in range(n):
            out[c, j] -= lz
    return out


@njit
def game_metrics(log_pi, log_opt, log_ref, g, beta, kl_out, expl_out, span_out):
    """Per-context KL(π*‖π), β-exploitability of π and span(log π − log π*).

    KL(p‖q) = Σ p·(expm1(δ) − δ), δ = log q − log p (each term ≥ 0, accurate for nearby laws).
    Expl(π) = β·log E_π[exp(u − E_π u)] + β·Σ_{π_y=0} exp(w_y − E_π u) inside the log, with
    w = θ_ref + (g − ½)/β and u = w − log π on the support of π; this equals
    φ(π) + βKL(π‖π_ref) − ½ because πᵀAπ = 0 (spec §1).  ``g`` must be P π.
    """
    C, n = log_pi.shape
    for c in range(C):
        # KL(pi* || pi) and span
        kl = 0.0
        mx = -np.inf
        mn = np.inf
        for j in range(n):
            lp = log_opt[c, j]
            lq = log_pi[c, j]
            if lp == -np.inf:
                continue
            if lq == -np.inf:
                kl = np.inf
                mx = np.inf
                continue
            d = lq - lp
            kl += np.exp(lp) * (np.expm1(d) - d)
            if d > mx:
                mx = d
            if d < mn:
                mn = d
        kl_out[c] = kl
        span_out[c] = mx - mn
        # exploitability (Jensen-gap form)
        mean_u = 0.0
        for j in range(n):
            lq = log_pi[c, j]
            if lq != -np.inf:
                w = log_ref[c, j] + (g[c, j] - 0.5) / beta
                mean_u += np.exp(lq) * (w - lq)
        acc = 0.0
        for j in range(n):
            lq = log_pi[c, j]
            w = log_ref[c, j] + (g[c, j] - 0.5) / beta
            if lq != -np.inf:
                acc += np.exp(lq) * np.expm1(w - lq - mean_u)
            else:
                acc += np.exp(w - mean_u)
        expl_out[c] = beta * np.log1p(acc)
    return expl_out
