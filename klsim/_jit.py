"""Numba options, set in one place.

Every kernel in :mod:`klsim._kernels` is decorated with :func:`njit` (or :func:`pnjit` for kernels whose
``prange`` runs over independent states).  ``cache=True`` keeps compiled code on disk (set
``NUMBA_CACHE_DIR`` to choose where); ``fastmath`` is never enabled because it breaks ``-inf`` masking in
logsumexp (spec kl-regularized-dp §12, pitfall 3).
"""

from __future__ import annotations

import time

import numba

__all__ = ["njit", "pnjit", "prange", "KernelChooser", "SizedKernelChooser"]

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


class KernelChooser:
    """Pick, call by call, the faster of a serial kernel and its ``prange`` twin (which give the same bits).

    The ``prange`` kernels split the states statically over numba's threads.  When another process keeps a
    core busy, the share of the thread waiting on that core waits for an OS time slice: measured on the
    2-core machine, one regularized sweep of Garnet(2000, 10, 10) takes 0.10 ms idle with 2 threads, 0.17 ms
    serial, and 16 ms with 2 threads while one other process runs.  The chooser times every call (two
    ``perf_counter`` reads) and runs the kernel with the lower recorded time per unit of work (the median
    of its last 3 calls, :attr:`cost`).  A kernel is
    measured by a *trial* of ``trial_calls`` consecutive calls of which only the last is recorded (the first
    call after a pause pays for waking the worker threads, and the first call ever for loading the
    compiled code); for the same reason the first regular call after a trial is not recorded.  Both kernels get a trial first; then the other one gets a trial every ``probe_every``
    calls, an interval that doubles (up to ``max_probe_every``) each time the trial confirms the choice and
    is reset by a switch.  Only speed depends on this: both kernels compute the same numbers.

    Parameters
    ----------
    probe_every, max_probe_every : int
        First and largest number of calls between two trials of the kernel not in use.
    trial_calls : int
        Consecutive calls per trial (≥ 1); the last one is recorded.

    Examples
    --------
    >>> chooser = KernelChooser(trial_calls=1)
    >>> parallel = chooser.choose()          # True first: try the prange kernel
    >>> chooser.record(parallel, work=2e5, seconds=1.6e-2)
    >>> chooser.choose()                     # then the serial one is tried
    False
    """

    def __init__(self, probe_every: int = 16, max_probe_every: int = 1024, trial_calls: int = 2) -> None:
        if trial_calls < 1:
            raise ValueError(f"trial_calls: must be >= 1, got {trial_calls}")
        self.samples: dict[bool, list[float]] = {True: [], False: []}
        self.cost: dict[bool, float | None] = {True: None, False: None}
        """Seconds per unit of work of each kernel: the median of its last 3 recorded calls (None: untried).
        The median ignores a lone slow call (a wake-up after other work, an OS hiccup); two slow calls in a
        row (a busy core) move it."""
        self.first_probe = int(probe_every)
        self.probe_every = int(probe_every)
        self.max_probe_every = int(max_probe_every)
        self.trial_calls = int(trial_calls)
        self.since_probe = 0
        self.trial: list | None = None  # [kernel under trial, calls left]
        self.last: bool | None = None  # the kernel of the previous call

    def best(self) -> bool:
        """The kernel with the lower recorded cost (parallel while untried or tied)."""
        par, ser = self.cost[True], self.cost[False]
        if par is None or ser is None:
            return ser is not None or par is None
        return par <= ser

    def choose(self) -> bool:
        """True to run the ``prange`` kernel on this call."""
        if self.trial is None:
            if self.cost[True] is None or self.cost[False] is None:
                self.trial = [self.cost[True] is None, self.trial_calls]
            else:
                self.since_probe += 1
                if self.since_probe >= self.probe_every:
                    self.since_probe = 0
                    self.trial = [not self.best(), self.trial_calls]
        return self.trial[0] if self.trial is not None else self.best()

    def record(self, parallel: bool, work: float, seconds: float) -> None:
        """Record the call just made (the last call of a trial); adapt the interval between trials."""
        switched, self.last = self.last is not None and parallel != self.last, bool(parallel)
        per_work = seconds / max(float(work), 1.0)
        if self.trial is None:  # a regular call: its time updates its kernel's cost ...
            if not switched:  # ... unless it is the first call back after a trial (a wake-up)
                hist = self.samples[bool(parallel)]
                hist.append(per_work)
                del hist[:-3]
                self.cost[bool(parallel)] = sorted(hist)[len(hist) // 2]
            return
        self.trial[1] -= 1
        if self.trial[1] > 0:  # warm-up call of a trial
            return
        self.trial = None
        before = self.best() if None not in self.cost.values() else None
        self.samples[bool(parallel)] = [per_work]  # a trial measures the current conditions afresh
        self.cost[bool(parallel)] = per_work
        if before is None:
            return
        if self.best() == before:  # the trial confirmed the current choice
            self.probe_every = min(2 * self.probe_every, self.max_probe_every)
        else:
            self.probe_every = self.first_probe

    def run(self, serial, parallel, work: float, *args):
        """Call ``parallel(*args)`` or ``serial(*args)`` as :meth:`choose` says, timing it; return its result."""
        use_par = self.choose()
        t0 = time.perf_counter()
        out = (parallel if use_par else serial)(*args)
        self.record(use_par, work, time.perf_counter() - t0)
        return out


class SizedKernelChooser:
    """One :class:`KernelChooser` per size class of the work (its power of two), so that the costs measured
    on one problem size never decide for another (per-entry costs differ with cache sizes: on the 2-core
    machine, the CSR sweep costs 0.5 ns per entry in parallel at S = 2,000 and 1.3 ns at S = 100,000)."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.by_size: dict[int, KernelChooser] = {}

    def for_work(self, work: float) -> KernelChooser:
        """The chooser of the size class of ``work``."""
        key = int(max(float(work), 1.0)).bit_length()
        if key not in self.by_size:
            self.by_size[key] = KernelChooser(**self.kwargs)
        return self.by_size[key]

    def run(self, serial, parallel, work: float, *args, min_work: float = 0.0, min_threads: int = 1):
        """:meth:`KernelChooser.run` with the chooser of this size class, or ``serial(*args)`` alone when
        the work is below ``min_work`` or numba has fewer than ``min_threads`` threads."""
        if work < min_work or numba.get_num_threads() < min_threads:
            return serial(*args)
        return self.for_work(work).run(serial, parallel, work, *args)
