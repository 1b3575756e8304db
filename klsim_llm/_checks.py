"""Input checks for klsim_llm tensors: every error is a ``ValueError`` naming the argument."""

from __future__ import annotations

import math

import torch

__all__ = ["check_same_shape", "check_finite_scalar", "masked", "check_group"]


def check_same_shape(**tensors: torch.Tensor) -> None:
    """All named tensors have the shape of the first one."""
    items = list(tensors.items())
    name0, t0 = items[0]
    for name, t in items[1:]:
        if t is None:
            continue
        if tuple(t.shape) != tuple(t0.shape):
            raise ValueError(f"{name}: shape {tuple(t.shape)} does not match {name0} {tuple(t0.shape)}")


def check_finite_scalar(name: str, x: float, positive: bool = False) -> float:
    """A finite float (and > 0 with ``positive``)."""
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: must be a number, got {x!r}") from exc
    if not math.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{name}: must be {'> 0 and ' if positive else ''}finite, got {x!r}")
    return v


def check_group(n_rows: int, group_size: int) -> int:
    """``group_size`` ≥ 1 divides the number of rows."""
    g = int(group_size)
    if g < 1 or n_rows % g:
        raise ValueError(f"group_size: must be ≥ 1 and divide the batch size {n_rows}, got {group_size!r}")
    return g


def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x where mask, else 0 (``torch.where``, so NaN/inf on padding never leaks into sums or gradients)."""
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
