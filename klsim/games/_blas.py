"""Best-effort control of OpenBLAS threads around the batched LU of the Newton solver.

On a shared, oversubscribed machine OpenBLAS's busy-waiting threads make numpy's batched ``solve``
50-100x slower than a single thread (measured: 20 systems of size 301 took 4.3 s with 2 threads and
0.08 s with 1 under load 10).  The solver therefore runs its factorizations single-threaded.  This
uses OpenBLAS's own ``*_set_num_threads`` entry points of the library that numpy loaded (what
``threadpoolctl`` does); when they cannot be found it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os

__all__ = ["single_threaded_blas"]

_LIB: tuple | None = None
_SEARCHED = False


def _find():
    global _LIB, _SEARCHED
    if _SEARCHED:
        return _LIB
    _SEARCHED = True
    try:
        import numpy

        base = os.path.dirname(numpy.__file__)
        paths = glob.glob(os.path.join(base, "..", "numpy.libs", "*openblas*")) + glob.glob(
            os.path.join(base, ".dylibs", "*openblas*")
        )
        for path in paths:
            lib = ctypes.CDLL(path)
            for get_name, set_name in (
                ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                ("openblas_get_num_threads", "openblas_set_num_threads"),
            ):
                get = getattr(lib, get_name, None)
                put = getattr(lib, set_name, None)
                if get is not None and put is not None:
                    get.restype = ctypes.c_int
                    put.argtypes = [ctypes.c_int]
                    _LIB = (get, put)
                    return _LIB
    except (OSError, ImportError):  # pragma: no cover - platform dependent
        _LIB = None
    return _LIB


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with one OpenBLAS thread (restoring the previous count afterwards)."""
    lib = _find()
    if lib is None:
        yield
        return
    get, put = lib
    old = get()
    put(1)
    try:
        yield
    finally:
        put(old)
