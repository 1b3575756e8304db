"""Input checks shared by every public function.

Each check raises :class:`ValueError` whose message names the offending argument and, where there is
one, the first offending index, e.g. ``"P: row (s=3, a=1) sums to 0.98 (must be 1 within 1e-10)"``.
Checks run once, when data containers are built or when a public function receives raw arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_float_array",
    "check_finite",
    "check_nonneg",
    "check_gamma",
    "check_positive",
    "check_nonnegative_scalar",
    "check_in_closed_interval",
    "check_shape",
    "check_distribution",
    "check_stochastic_rows",
    "check_int",
    "check_choice",
    "first_bad_index",
]


def first_bad_index(mask: np.ndarray) -> tuple[int, ...]:
    """Return the first index (C order) where ``mask`` is True, as a tuple of ints."""
    flat = int(np.flatnonzero(np.asarray(mask).ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, np.shape(mask)))


def _fmt_index(idx: tuple[int, ...], names: Sequence[str] | None) -> str:
    if names is not None and len(names) == len(idx):
        return "(" + ", ".join(f"{n}={i}" for n, i in zip(names, idx)) + ")"
    return str(idx if len(idx) != 1 else idx[0])


def as_float_array(name: str, x, ndim: int | None = None) -> np.ndarray:
    """Convert ``x`` to a C-contiguous float64 array, checking ``ndim`` if given."""
    try:
        arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float64 array ({exc})") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    return arr


def check_finite(
    name: str, x: np.ndarray, index_names: Sequence[str] | None = None, allow_neg_inf: bool = False
) -> None:
    """Raise if ``x`` holds NaN or an infinity (``-inf`` allowed when ``allow_neg_inf``)."""
    x = np.asarray(x)
    bad = np.isnan(x) | (np.isposinf(x)) | (np.isneginf(x) & (not allow_neg_inf))
    if bad.any():
        idx = first_bad_index(bad)
        raise ValueError(f"{name}: non-finite value {x[idx].item()!r} at {_fmt_index(idx, index_names)}")


def check_nonneg(name: str, x: np.ndarray, index_names: Sequence[str] | None = None) -> None:
    """Raise if ``x`` holds a negative or NaN entry."""
    x = np.asarray(x)
    bad = ~(x >= 0)
    if bad.any():
        idx = first_bad_index(bad)
        raise ValueError(f"{name}: negative or NaN entry {x[idx].item()!r} at {_fmt_index(idx, index_names)}")


def _float(name: str, x) -> float:
    """``float(x)``, or a ValueError naming ``name`` when ``x`` is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a float, got {x!r}") from None


def check_gamma(gamma: float, allow_one: bool = False) -> float:
    """Check the discount factor: ``0 <= gamma < 1`` (``<= 1`` when ``allow_one``)."""
    g = _float("gamma", gamma)
    ok = (0.0 <= g <= 1.0) if allow_one else (0.0 <= g < 1.0)
    if not ok:
        rng = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"gamma: must lie in {rng}, got {gamma!r}")
    return g


def check_positive(name: str, x: float) -> float:
    """Check ``x > 0`` and finite."""
    v = _float(name, x)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name}: must be a finite number > 0, got {x!r}")
    return v


def check_nonnegative_scalar(name: str, x: float) -> float:
    """Check ``x >= 0`` and finite."""
    v = _float(name, x)
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0, got {x!r}")
    return v


def check_in_closed_interval(name: str, x: float, lo: float, hi: float) -> float:
    """Check ``lo <= x <= hi``."""
    v = _float(name, x)
    if not (lo <= v <= hi):
        raise ValueError(f"{name}: must lie in [{lo}, {hi}], got {x!r}")
    return v


def check_int(name: str, x, minimum: int | None = None) -> int:
    """Check that ``x`` is an integer (``>= minimum`` if given)."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {x!r}")
    v = int(x)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {v}")
    return v


def check_choice(name: str, x: str, choices: Sequence[str]) -> str:
    """Check that ``x`` is one of ``choices``; the error lists the valid ones."""
    if x not in choices:
        raise ValueError(f"{name}: unknown value {x!r}; valid: {', '.join(map(repr, choices))}")
    return x


def check_shape(name: str, x: np.ndarray, shape: tuple[int | None, ...]) -> None:
    """Check ``x.shape`` against ``shape`` (``None`` matches any size)."""
    s = np.shape(x)
    if len(s) != len(shape) or any(e is not None and e != a for e, a in zip(shape, s)):
        want = "(" + ", ".join("*" if e is None else str(e) for e in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {s}")


def check_distribution(name: str, p: np.ndarray, tol: float = 1e-10, axis: int = -1) -> None:
    """Check non-negative entries summing to 1 within ``tol`` along ``axis``."""
    p = np.asarray(p, dtype=np.float64)
    check_nonneg(name, p)
    sums = p.sum(axis=axis)
    bad = np.abs(sums - 1.0) > tol
    if np.any(bad):
        if np.ndim(sums) == 0:
            raise ValueError(f"{name}: sums to {float(sums)!r} (must be 1 within {tol:g})")
        idx = first_bad_index(bad)
        raise ValueError(f"{name}: row {idx} sums to {float(sums[idx])!r} (must be 1 within {tol:g})")


def check_stochastic_rows(name: str, row_sums: np.ndarray, n_actions: int, tol: float = 1e-10) -> None:
    """Check that each state-action row sum (flat, length S*A) equals 1 within ``tol``; name ``(s, a)``."""
    row_sums = np.asarray(row_sums)
    bad = ~(np.abs(row_sums - 1.0) <= tol)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        s, a = divmod(k, n_actions)
        raise ValueError(
            f"{name}: row (s={s}, a={a}) sums to {float(row_sums[k])!r} (must be 1 within {tol:g})"
        )
