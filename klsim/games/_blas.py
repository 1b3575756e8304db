"""Single-threaded BLAS around the batched LU of the Newton solver and the batched game updates.

On a shared, oversubscribed machine OpenBLAS's busy-waiting threads make numpy's batched ``solve``
50-100x slower than a single thread (measured: 20 systems of size 301 took 4.3 s with 2 threads and
0.08 s with 1 under load 10).  The batched paths therefore run their BLAS calls single-threaded, through
``threadpoolctl`` (which restores the previous thread count on exit).
"""

from __future__ import annotations

import contextlib

from threadpoolctl import threadpool_limits

__all__ = ["single_threaded_blas"]


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with one BLAS thread, restoring the previous count afterwards."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
