"""Numba options, set in one place.

Every kernel in :mod:`klsim._kernels` is decorated with :func:`njit` (or :func:`pnjit` for kernels whose
``prange`` runs over independent states).  ``cache=True`` keeps compiled code on disk (set
``NUMBA_CACHE_DIR`` to choose where); ``fastmath`` is never enabled because it breaks ``-inf`` masking in
logsumexp (spec kl-regularized-dp §12, pitfall 3).
"""

from __future__ import annotations

import numba

__all__ = ["njit", "pnjit", "prange"]

prange = numba.prange


def njit(*args, **kwargs):
    """``numba.njit`` with ``cache=True`` and ``fastmath=False`` (the project's only JIT options)."""
    kwargs.setdefault("cache", True)
    kwargs["fastmath"] = False
    return numba.njit(*args, **kwargs)


def pnjit(*args, **kwargs):
    """Like :func:`njit` with ``parallel=True``; use ``prange`` only over independent states."""
    kwargs.setdefault("cache", True)
    kwargs["fastmath"] = False
    kwargs["parallel"] = True
    return numba.njit(*args, **kwargs)
