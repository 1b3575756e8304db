"""Best-of-N benchmark: exact KL(BoN‖p) on 10^6 reward levels, klsim (numba) against vectorized numpy.

Both sides compute the same stable log-space formula (spec ``best-of-n-vs-kl-rl.md`` §3.2–3.3) from the same
sorted level log-masses and ln N: klsim's fused two-pass kernel ``bon_kl_levels`` against a direct numpy
implementation (``np.logaddexp.accumulate`` for ln F / ln T, ``np.where`` branches for g and h).  Accuracy
is measured on a small case against a 60-digit mpmath reference; the naive ``F^N − F_<^N`` form is reported
too, to show why the log-space form is needed.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks._timing import ab_medians
from klsim._kernels.bon import bon_kl_levels

__all__ = ["run", "numpy_bon_kl", "naive_bon_kl", "mpmath_bon_kl"]

_LOG2 = math.log(2.0)


def _g(u: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(u < -18.0, u + np.log1p(np.exp(u) / 2.0), np.log(-np.log1p(-np.exp(u))))


def _h(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.exp(v)
        l1m = np.where(x < _LOG2, np.log(-np.expm1(-x)), np.log1p(-np.exp(-x)))
        return np.where(v < -18.0, v + np.log1p(-x / 2.0), l1m)


def numpy_bon_kl(log_mass: np.ndarray, log_n: float) -> float:
    """The §3.2 log-space BoN KL written directly in vectorized numpy (the peer)."""
    lf = np.logaddexp.accumulate(log_mass)
    lf[-1] = 0.0
    lt = np.empty_like(log_mass)
    lt[:-1] = np.logaddexp.accumulate(log_mass[::-1])[::-1][1:]
    lt[-1] = -np.inf
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        la = np.where(lf < -_LOG2, log_n + np.log(-lf), log_n + _g(lt))
        ratio = log_mass - lf
        lf_prev = np.concatenate(([-np.inf], lf[:-1]))
        ldiff = np.where(ratio < -_LOG2, log_n + _g(ratio), log_n + np.log(lf - lf_prev))
        ldiff[0] = np.inf
        lq = -np.exp(la) + _h(ldiff)
        terms = np.where(lq > -np.inf, np.exp(lq) * (lq - log_mass), 0.0)
    return float(terms.sum())


def naive_bon_kl(probs: np.ndarray, n: float) -> float:
    """Textbook form Q = F^N − F_<^N with a forward cumsum (cancels for large N; for illustration)."""
    f = np.cumsum(probs)
    q = f**n - np.concatenate(([0.0], f[:-1])) ** n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(q > 0, q * np.log(q / probs), 0.0)
    return float(t.sum())


def mpmath_bon_kl(probs: np.ndarray, n: float, dps: int = 60) -> float:
    """60-digit reference Σ Q ln(Q/P) with F from exact partial sums of the float probabilities."""
    import mpmath

    mpmath.mp.dps = dps
    ps = [mpmath.mpf(float(x)) for x in probs]
    tot = mpmath.fsum(ps)
    ps = [x / tot for x in ps]
    nn = mpmath.mpf(n)
    acc, f_prev, s = mpmath.mpf(0), mpmath.mpf(0), mpmath.mpf(0)
    for k, pk in enumerate(ps):
        acc += pk
        f = acc if k < len(ps) - 1 else mpmath.mpf(1)
        q = f**nn - f_prev**nn
        if q > 0:
            s += q * mpmath.log(q / pk)
        f_prev = f
    return float(s)


def accuracy(n_values=(2.0, 7.5, 1e3, 1e8, 1e15), seeds=(0, 1, 2), size: int = 200) -> dict[str, float]:
    """Max relative error of klsim / numpy / naive KL against mpmath (60 digits) over small random cases."""
    errs = {"klsim": [], "numpy": [], "naive": []}
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        small = np.maximum(rng.dirichlet(np.full(size, 0.3)), 1e-200)
        small /= small.sum()
        ls = np.log(small)
        ls -= np.logaddexp.reduce(ls)
        for n in n_values:
            ln = math.log(n)
            ref = mpmath_bon_kl(small, n)
            scale = max(1e-300, abs(ref))
            errs["klsim"].append(abs(bon_kl_levels(ls, ln, np.empty(ls.size)) - ref) / scale)
            errs["numpy"].append(abs(numpy_bon_kl(ls.copy(), ln) - ref) / scale)
            errs["naive"].append(abs(naive_bon_kl(small, n) - ref) / scale)
    return {k: float(np.max(v)) for k, v in errs.items()} | {
        f"{k}_mean": float(np.mean(v)) for k, v in errs.items()
    }


def run(quick: bool) -> list[dict]:
    """Time klsim's kernel and the numpy peer on 10^6 levels; report both errors against mpmath."""
    rng = np.random.default_rng(0)
    size = 1_000_000
    p = rng.dirichlet(np.ones(size))
    log_mass = np.log(p)
    log_mass -= np.logaddexp.reduce(log_mass)
    work = np.empty(size)
    acc = accuracy(seeds=(0,) if quick else (0, 1, 2, 3))
    rows = []
    for n in (2.0, 1e3, 1e15) if quick else (2.0, 7.5, 1e3, 1e8, 1e15):
        ln = math.log(n)
        t = ab_medians(
            {
                "klsim": lambda ln=ln: bon_kl_levels(log_mass, ln, work),
                "peer": lambda ln=ln: numpy_bon_kl(log_mass, ln),
            },
            repeats=3 if quick else 9,
        )
        rows.append(
            {
                "name": f"bon_kl 1e6 levels N={n:g}",
                "klsim_s": t["klsim"],
                "peer": "numpy (same §3.2 formula)",
                "peer_s": t["peer"],
                "ratio": t["klsim"] / t["peer"],
                "target": "ratio <= 1 and max rel err (mpmath, small cases) klsim <= numpy",
                "met": bool(t["klsim"] <= t["peer"] and acc["klsim"] <= acc["numpy"]),
                "kl_klsim": bon_kl_levels(log_mass, ln, work),
                "kl_numpy": numpy_bon_kl(log_mass, ln),
                "max_rel_err_klsim": acc["klsim"],
                "max_rel_err_numpy": acc["numpy"],
                "max_rel_err_naive_cumsum": acc["naive"],
            }
        )
    return rows


if __name__ == "__main__":  # pragma: no cover
    print(accuracy())
    for row in run(quick=True):
        print(row)
