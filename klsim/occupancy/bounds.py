"""Theory of correlated proxies (spec §4): Theorem 5.1's lower bound, its companions and the tight bound.

Setting: 0 < r < 1, μ_π ≪ μ_b, w = μ_π/μ_b, χ² = E_{μ_b}(w − 1)², ΔJ(X) = J(π, X) − J_b(X),
x = ΔJ(R̃)/σ_R̃.  All σ are standard deviations under μ_b.

* LB_5.1 = (σ_R/(r σ_R̃)) [ΔJ(R̃) − σ_R̃ √(1−r²) √χ²]   (paper Theorem 5.1, library form; gives λ*)
* LB_A   = σ_R [r x − √(1−r²) √χ²]
* LB_tight = σ_R [r x − √(1−r²) √(χ² − x²)]   (worst case over all R with the same μ_b-mean, σ_R, r)

Ordering: LB_5.1 ≤ LB_tight ≤ ΔJ(R) and LB_A ≤ LB_tight.  r ≤ 0 or σ = 0 gives NaN.

References: Laidlaw, Singhal, Dragan, ICLR 2025, arXiv:2403.03185, Theorem 5.1; Liu, Sun, Zheng,
arXiv:2604.12086 (the tight form; their printed version misplaces the square).
"""

from __future__ import annotations

import numpy as np

__all__ = ["lower_bound_thm51", "lower_bound_a", "lower_bound_tight", "lambda_star", "bound_chain"]


def _arr(x):
    return np.asarray(x, dtype=np.float64)


def _valid(r, s1, s2):
    return (r > 0) & (r <= 1) & (s1 > 0) & (s2 > 0)


def lambda_star(sigma_proxy: float, r: float) -> float:
    """λ* = σ_R̃ √(1 − r²): the √χ² coefficient for which the objective is Theorem 5.1's bound (spec §3(b))."""
    return float(sigma_proxy * np.sqrt(max(1.0 - r * r, 0.0)))


def lower_bound_thm51(dJ_proxy, chi2, sigma_true, sigma_proxy, r):
    """LB_5.1 = (σ_R/(r σ_R̃)) [ΔJ(R̃) − σ_R̃ √(1−r²) √χ²] (paper Thm 5.1); NaN for r ≤ 0 or σ = 0.

    All arguments broadcast; ``chi2`` = χ²(μ_π‖μ_b) (must be finite).
    """
    dJ, c2, sR, sP, r = map(_arr, (dJ_proxy, chi2, sigma_true, sigma_proxy, r))
    ok = _valid(r, sR, sP)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = sR / (r * sP) * (dJ - sP * np.sqrt(np.maximum(1 - r * r, 0.0)) * np.sqrt(c2))
    return np.where(ok, out, np.nan)[()]


def lower_bound_a(dJ_proxy, chi2, sigma_true, sigma_proxy, r):
    """LB_A = σ_R [r x − √(1−r²) √χ²] with x = ΔJ(R̃)/σ_R̃ (spec §4, companion bound)."""
    dJ, c2, sR, sP, r = map(_arr, (dJ_proxy, chi2, sigma_true, sigma_proxy, r))
    ok = _valid(r, sR, sP)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = sR * (r * dJ / sP - np.sqrt(np.maximum(1 - r * r, 0.0)) * np.sqrt(c2))
    return np.where(ok, out, np.nan)[()]


def lower_bound_tight(dJ_proxy, chi2, sigma_true, sigma_proxy, r):
    """LB_tight = σ_R [r x − √(1−r²) √(χ² − x²)] (spec §4): the worst case of ΔJ(R) over all R with the
    given μ_b-mean, σ_R and correlation r.  x² ≤ χ² always (Cauchy–Schwarz); rounding excess is clipped.
    """
    dJ, c2, sR, sP, r = map(_arr, (dJ_proxy, chi2, sigma_true, sigma_proxy, r))
    ok = _valid(r, sR, sP)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = dJ / sP
        out = sR * (r * x - np.sqrt(np.maximum(1 - r * r, 0.0)) * np.sqrt(np.maximum(c2 - x * x, 0.0)))
    return np.where(ok, out, np.nan)[()]


def bound_chain(dJ_true, dJ_proxy, chi2, sigma_true, sigma_proxy, r, slack: float = 1e-9) -> dict:
    """Check ΔJ(R) ≥ LB_tight ≥ LB_5.1 and LB_tight ≥ LB_A elementwise (slack ``slack``·max(1, |·|)).

    Returns
    -------
    dict
        ``violations`` (int, over valid entries), ``n_valid``, and the three bound arrays.
    """
    lb51 = _arr(lower_bound_thm51(dJ_proxy, chi2, sigma_true, sigma_proxy, r))
    lba = _arr(lower_bound_a(dJ_proxy, chi2, sigma_true, sigma_proxy, r))
    lbt = _arr(lower_bound_tight(dJ_proxy, chi2, sigma_true, sigma_proxy, r))
    dJ = _arr(dJ_true)
    valid = np.isfinite(lbt) & np.isfinite(lb51) & np.isfinite(lba)
    tol = slack * np.maximum(1.0, np.abs(dJ))
    bad = valid & ((dJ < lbt - tol) | (lbt < lb51 - tol) | (lbt < lba - tol))
    return {
        "violations": int(bad.sum()),
        "n_valid": int(valid.sum()),
        "lb_51": lb51,
        "lb_a": lba,
        "lb_tight": lbt,
    }
