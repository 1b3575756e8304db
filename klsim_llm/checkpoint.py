"""Atomic training checkpoints (spec ``llm-bridge.md`` §8).

A checkpoint is a folder ``<out_dir>/checkpoints/step_<k>/`` holding

- ``model/``: ``save_pretrained`` of the policy and the tokenizer (loadable with ``from_pretrained``);
- ``state.pt``: exact policy tensors, optimizer, scheduler, reference strategy state (EMA, anchors,
  precomputed tables), drift tracker, KL controller (β), step, RNG states, and the config dict.

It is written to a temporary folder and renamed, so a run killed while saving leaves the previous
checkpoint intact.  Sampling is keyed by (seed, step, sample index), so resuming at step k replays
exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "rng_state", "set_rng_state"]

_STEP = re.compile(r"^step_(\d+)$")


def rng_state() -> dict:
    """Python, numpy and torch (CPU, CUDA) RNG states."""
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}  # noqa: NPY002
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore :func:`rng_state`."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])  # noqa: NPY002
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    state: dict[str, Any],
    *,
    model: torch.nn.Module | None = None,
    tokenizer: Any = None,
    keep: int = 2,
    model_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``state`` (and ``model``/``tokenizer`` in HF format) to ``out_dir/checkpoints/step_<step>``.

    ``model_state``: the weights ``save_pretrained`` writes instead of ``model.state_dict()`` (the gathered
    full weights of an FSDP-sharded model).  Returns the checkpoint folder.  Older checkpoints beyond the
    newest ``keep`` are removed.
    """
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".tmp_step_{step}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    if model is not None and hasattr(model, "save_pretrained"):
        model.save_pretrained(tmp / "model", safe_serialization=True, state_dict=model_state)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)))
    for _, p in steps[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete ``step_<k>`` folder under ``out_dir/checkpoints`` (or ``None``)."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    steps = sorted(
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP.match(p.name)) and (p / "state.pt").is_file()
    )
    return steps[-1][1] if steps else None


def load_checkpoint(path: str | Path) -> dict:
    """Read ``state.pt`` of a checkpoint folder (``ValueError`` if missing)."""
    f = Path(path) / "state.pt"
    if not f.is_file():
        raise ValueError(f"checkpoint {str(path)!r} has no state.pt")
    return torch.load(f, map_location="cpu", weights_only=False)
