"""All numba code of klsim, split by family (``dp``, ``tsallis``, ``games``, ``bon``, ``occupancy``).

Kernels take arrays, scalars and ``out=`` buffers, never objects.  Public modules import from here;
nothing else in klsim defines ``@njit`` functions.
"""
