"""Matplotlib helpers shared by the reproduction scripts: Agg backend, one style, one way to save."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["new_figure", "save_figure", "plt"]

_STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 4.2, height: float = 3.2, **kwargs):
    """Create ``(fig, axes)`` in the project style; ``width``/``height`` are per panel, in inches."""
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs
        )
    for ax in axes.ravel():
        ax.grid(True, alpha=_STYLE["grid.alpha"])
    return fig, axes


def save_figure(fig, out: Path | str, name: str) -> Path:
    """Save ``fig`` as ``out/name.png``, close it, and return the path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
