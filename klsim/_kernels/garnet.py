"""Numba kernel that draws Garnet rows from a PCG64 raw stream exactly as numpy's ``Generator`` would.

``klsim.mdp.garnet`` follows a normative draw order (spec ``kl-regularized-dp.md`` §8, convention C10): per
state-action row ``nxt = rng.choice(S, size=b, replace=False)`` then ``cuts = sort(rng.uniform(size=b-1))``.
:func:`garnet_rows` replays numpy 2.x's algorithms for those two calls on the 64-bit words of the bit
generator (``PCG64.random_raw``), so the caller gets the same arrays bit for bit and can advance the real
generator by the number of words used.  Replayed numpy source (``numpy/random``):

* ``pcg64.h`` ``pcg64_next32``: a 32-bit draw returns the low half of a fresh 64-bit word and keeps the high
  half (``has_uint32``/``uinteger``) for the next 32-bit draw.  64-bit draws never touch that buffer.
* ``distributions.c`` ``random_bounded_uint64(off=0, rng, mask=0, use_masked=false)``: ``rng == 0`` returns
  0 without a draw; ``rng <= 0xFFFFFFFF`` uses ``buffered_bounded_lemire_uint32``: ``m = next32 * (rng+1)``,
  rejected while ``m mod 2^32 < (2^32 - 1 - rng) mod (rng+1)``, result ``m >> 32``.
* ``distributions.c`` ``random_standard_uniform``/``next_double``: ``(next64 >> 11) * 2^-53``; ``uniform``
  with low 0 and high 1 returns ``0 + 1 * x``, which is ``x`` exactly.
* ``_generator.pyx`` ``Generator.choice(pop, size, replace=False, p=None, shuffle=True)``: when
  ``pop > 10000 and size > pop // 50`` a tail shuffle of ``arange(pop)`` (``_shuffle_int(pop, max(pop -
  size, 1))``, keep the last ``size``); otherwise Floyd's algorithm (``j`` from ``pop - size`` to
  ``pop - 1``: ``val = bounded(j)``, keep ``val`` unless already taken, else ``j``) followed by
  ``_shuffle_int(size, 1)``.  ``_shuffle_int(n, first)`` swaps ``data[i]`` with ``data[bounded(i)]`` for
  ``i = n-1, ..., first``.

All integer arithmetic is int64: the caller guarantees ``S <= 2^31`` so ``next32 * (rng+1) < 2^63``.
"""

from __future__ import annotations

import numpy as np

from klsim._jit import njit

__all__ = ["garnet_rows", "hash_mask", "MAX_STATES"]

MAX_STATES = 1 << 31
"""Largest S the kernel supports (int64 Lemire products stay below 2^63)."""

_M32 = 0xFFFFFFFF
_M53 = (1 << 53) - 1
_TWO_M53 = 1.0 / 9007199254740992.0


def hash_mask(branching: int) -> int:
    """numpy's Floyd hash-set mask: the smallest 2^k - 1 >= int(1.2 * b) (``_gen_mask``)."""
    m = int(1.2 * branching)
    for s in (1, 2, 4, 8, 16, 32):
        m |= m >> s
    return m


# The stream position ``pos`` and numpy's 32-bit buffer (``has32``, ``u32``) are threaded through the
# helpers as scalars (returned tuples), so that they stay in registers.  Reading past the end of ``raw``
# sets ``pos = raw.shape[0] + 1`` (exhausted) and returns 0; the caller discards such a row.


@njit
def _next32(raw, pos, has32, u32):
    """``pcg64_next32``: (value, pos, has32, u32)."""
    if has32 != 0:
        return u32, pos, 0, u32
    n = raw.shape[0]
    if pos >= n:
        return 0, n + 1, has32, u32
    w = raw[pos]
    return w & _M32, pos + 1, 1, (w >> 32) & _M32


@njit
def _next_double(raw, pos):
    """``next_double``: (next64 >> 11) * 2^-53, exact in float64; (value, pos)."""
    n = raw.shape[0]
    if pos >= n:
        return 0.0, n + 1
    return ((raw[pos] >> 11) & _M53) * _TWO_M53, pos + 1


@njit
def _bounded(raw, pos, has32, u32, rng):
    """``random_bounded_uint64(0, rng, 0, False)`` for 0 <= rng < 2^31: (uniform on {0..rng}, pos, has32, u32)."""
    if rng == 0:
        return 0, pos, has32, u32
    rng_excl = rng + 1
    x, pos, has32, u32 = _next32(raw, pos, has32, u32)
    m = x * rng_excl
    leftover = m & _M32
    if leftover < rng_excl:
        threshold = (_M32 - rng) % rng_excl
        while leftover < threshold and pos <= raw.shape[0]:
            x, pos, has32, u32 = _next32(raw, pos, has32, u32)
            m = x * rng_excl
            leftover = m & _M32
    return m >> 32, pos, has32, u32


@njit
def _choice_tail(raw, pos, has32, u32, n, b, perm, touched, nxt):
    """Tail-shuffle branch of ``choice``: ``perm`` is arange(n) on entry and on exit (touched cells reset)."""
    first = max(n - b, 1)
    nt = 0
    for i in range(n - 1, first - 1, -1):
        j, pos, has32, u32 = _bounded(raw, pos, has32, u32, i)
        tmp = perm[j]
        perm[j] = perm[i]
        perm[i] = tmp
        touched[nt] = i
        touched[nt + 1] = j
        nt += 2
    for k in range(b):
        nxt[k] = perm[n - b + k]
    for k in range(nt):
        perm[touched[k]] = touched[k]
    return pos, has32, u32


@njit
def _choice_floyd(raw, pos, has32, u32, n, b, hash_set, nxt):
    """Floyd branch of ``choice`` followed by ``_shuffle_int(b, 1)``; ``hash_set`` has mask + 1 cells."""
    mask = hash_set.shape[0] - 1
    for k in range(mask + 1):
        hash_set[k] = -1
    for j in range(n - b, n):
        val, pos, has32, u32 = _bounded(raw, pos, has32, u32, j)
        loc = val & mask
        while hash_set[loc] != -1 and hash_set[loc] != val:
            loc = (loc + 1) & mask
        if hash_set[loc] == -1:
            hash_set[loc] = val
            nxt[j - n + b] = val
        else:
            loc = j & mask
            while hash_set[loc] != -1:
                loc = (loc + 1) & mask
            hash_set[loc] = j
            nxt[j - n + b] = j
    for i in range(b - 1, 0, -1):
        j, pos, has32, u32 = _bounded(raw, pos, has32, u32, i)
        tmp = nxt[j]
        nxt[j] = nxt[i]
        nxt[i] = tmp
    return pos, has32, u32


@njit
def _probs_sorted_by_successor(b, nxt, cuts, idx_row, data_row):
    """``probs = diff([0, *sort(cuts), 1])``, then (nxt, probs) ordered by nxt into the output row."""
    m = b - 1
    if m <= 32:
        for i in range(1, m):  # insertion sort: same values as np.sort (ties are equal bits)
            x = cuts[i]
            k = i - 1
            while k >= 0 and cuts[k] > x:
                cuts[k + 1] = cuts[k]
                k -= 1
            cuts[k + 1] = x
    else:
        cuts[:m] = np.sort(cuts[:m])
    prev = 0.0
    for i in range(b):
        cur = cuts[i] if i < m else 1.0
        data_row[i] = cur - prev
        idx_row[i] = nxt[i]
        prev = cur
    if b <= 32:
        for i in range(1, b):  # successors are distinct: the order is unique
            x = idx_row[i]
            y = data_row[i]
            k = i - 1
            while k >= 0 and idx_row[k] > x:
                idx_row[k + 1] = idx_row[k]
                data_row[k + 1] = data_row[k]
                k -= 1
            idx_row[k + 1] = x
            data_row[k + 1] = y
    else:
        order = np.argsort(nxt[:b])
        for i in range(b):
            idx_row[i] = nxt[order[i]]
        tmp = data_row.copy()
        for i in range(b):
            data_row[i] = tmp[order[i]]


@njit
def garnet_rows(
    raw, st, n_states, branching, row_start, tail, margin, perm, touched, hash_set, indices, data
):
    """Draw Garnet rows ``row_start, row_start+1, ...`` from the raw words ``raw[st[0]:]``.

    Parameters
    ----------
    raw : int64 array
        PCG64 64-bit outputs (``random_raw`` viewed as int64), consumed from ``st[0]``.
    st : int64 array of shape (3,)
        ``[pos, has_uint32, uinteger]``: next unread word and numpy's 32-bit buffer.  Updated in place to
        the state after the last completed row.
    n_states, branching : int
        S (<= 2^31) and b (1 <= b <= S).
    row_start : int
        First row to draw; rows up to ``indices.shape[0] - 1`` are drawn while words remain.
    tail : int
        1 for ``choice``'s tail-shuffle branch (S > 10000 and b > S // 50), 0 for Floyd's branch.
    margin : int
        Start a row only while at least ``margin`` words are left (a row usually needs about 2b + 1).
    perm : int64 array of shape (S,) (tail) or (1,)
        arange(S) on entry (tail branch); restored on exit.
    touched : int64 array of shape (2 b,)
        Scratch for the tail branch.
    hash_set : int64 array of shape (hash_mask(b) + 1,)
        Scratch for Floyd's branch.
    indices, data : int64 / float64 arrays of shape (n_rows, b)
        Output rows: successors in increasing order and their probabilities.

    Returns
    -------
    int
        The first row not drawn (``indices.shape[0]`` when done).  A row that would read past ``raw`` is
        discarded and ``st`` left at its start, so the caller can append words and call again.
    """
    n_rows = indices.shape[0]
    b = branching
    n = n_states
    n_raw = raw.shape[0]
    nxt = np.empty(b, dtype=np.int64)
    cuts = np.empty(max(b - 1, 1), dtype=np.float64)
    pos = st[0]
    has32 = st[1]
    u32 = st[2]
    row = row_start
    while row < n_rows and n_raw - pos >= margin:
        if tail != 0:
            p, h, u = _choice_tail(raw, pos, has32, u32, n, b, perm, touched, nxt)
        else:
            p, h, u = _choice_floyd(raw, pos, has32, u32, n, b, hash_set, nxt)
        for k in range(b - 1):
            cuts[k], p = _next_double(raw, p)
        if p > n_raw:  # ran out of words: redo this row after a refill
            break
        _probs_sorted_by_successor(b, nxt, cuts, indices[row], data[row])
        pos = p
        has32 = h
        u32 = u
        row += 1
    st[0] = pos
    st[1] = has32
    st[2] = u32
    return row
