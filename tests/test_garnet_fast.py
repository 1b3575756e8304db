"""The numba Garnet path (``klsim.mdp._garnet_rows_fast``) against numpy's own draws, bit for bit.

The reference is ``_garnet_rows_slow`` (one ``rng.choice`` / ``rng.uniform`` call per row: numpy itself), and
for the public function also ``garnet`` with the fast path switched off.  Equality is exact
(``np.array_equal``), and so is the generator state left behind (the state dict, then further draws,
including a 32-bit one that reads numpy's buffered half word).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import klsim.mdp as mdp_mod
from klsim.mdp import garnet


def _same_rows(want, got):
    return got is not None and all(np.array_equal(x, y) for x, y in zip(want, got))


def _assert_same_after(rng_a, rng_b):
    assert rng_a.bit_generator.state == rng_b.bit_generator.state
    assert rng_a.integers(0, 2**31 - 1) == rng_b.integers(0, 2**31 - 1)  # 32-bit draw (buffered half)
    assert rng_a.uniform() == rng_b.uniform()


def _garnet_slow(monkeypatch, S, A, b, seed, reward):
    with monkeypatch.context() as mp:
        mp.setattr(mdp_mod, "_fast_path_ok", lambda: False)
        rng = np.random.default_rng(seed)
        return garnet(S, A, b, seed=rng, reward=reward), rng


@pytest.fixture(scope="module", autouse=True)
def _fast_path_active():
    """Every test here is about the fast path: its self-check must pass on this numpy."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mdp_mod._fast_path_ok()


@pytest.mark.parametrize(
    "S, A, b, seed, reward",
    [
        (30, 4, 3, 0, "sa"),
        (30, 4, 3, 1, "s"),
        (1, 1, 1, 2, "sa"),
        (1, 3, 1, 3, "s"),
        (7, 2, 1, 4, "sa"),
        (12, 3, 12, 5, "sa"),
        (12, 3, 11, 6, "s"),
        (50, 2, 49, 7, "sa"),
        (200, 3, 17, 8, "sa"),
        (64, 2, 40, 9, "s"),  # b > 32: np.sort / np.argsort inside the kernel
        (12000, 2, 3, 0, "sa"),
        (12000, 2, 3, 1, "s"),
        (12000, 2, 3, 2, "sa"),
    ],
)
def test_public_garnet_equals_the_reference_loop(monkeypatch, S, A, b, seed, reward):
    rng_fast = np.random.default_rng(seed)
    fast = garnet(S, A, b, seed=rng_fast, reward=reward)
    slow, rng_slow = _garnet_slow(monkeypatch, S, A, b, seed, reward)
    for x, y in zip(fast.csr, slow.csr):
        assert np.array_equal(x, y)
    assert np.array_equal(fast.R, slow.R)
    _assert_same_after(rng_fast, rng_slow)


def test_public_garnet_uses_the_fast_path(monkeypatch):
    want = garnet(40, 3, 4, seed=11)

    def boom(*args):
        raise AssertionError("the reference loop ran")

    monkeypatch.setattr(mdp_mod, "_garnet_rows_slow", boom)
    got = garnet(40, 3, 4, seed=11)
    assert all(np.array_equal(x, y) for x, y in zip(want.csr, got.csr))


@pytest.mark.parametrize(
    "S, n_rows, b, seed",
    [
        (10001, 5, 200, 0),  # Floyd: b == S // 50
        (10001, 5, 201, 1),  # tail shuffle: b > S // 50
        (12000, 4, 300, 2),
        (12000, 2, 12000, 3),  # tail shuffle with b = S (first = 1)
        (20000, 3, 401, 4),
        (30000, 20, 600, 5),  # tail shuffle, b > 32 (np.sort / np.argsort)
    ],
)
def test_rows_equal_numpy_in_both_choice_branches(S, n_rows, b, seed):
    rng_slow, rng_fast = np.random.default_rng(seed), np.random.default_rng(seed)
    want = mdp_mod._garnet_rows_slow(rng_slow, S, n_rows, b)
    got = mdp_mod._garnet_rows_fast(rng_fast, S, n_rows, b)
    assert _same_rows(want, got)
    _assert_same_after(rng_slow, rng_fast)


@pytest.mark.parametrize("pre_draw", [0, 1, 2])
def test_rows_equal_numpy_from_any_32_bit_buffer_state(pre_draw):
    rng_slow, rng_fast = np.random.default_rng(99), np.random.default_rng(99)
    for r in (rng_slow, rng_fast):
        r.integers(0, 1000, size=pre_draw)  # an odd count leaves has_uint32 = 1
        r.uniform()
    assert rng_fast.bit_generator.state["has_uint32"] == pre_draw % 2
    want = mdp_mod._garnet_rows_slow(rng_slow, 25, 60, 4)
    got = mdp_mod._garnet_rows_fast(rng_fast, 25, 60, 4)
    assert _same_rows(want, got)
    _assert_same_after(rng_slow, rng_fast)


@pytest.mark.parametrize("S, n_rows, b", [(9, 40, 3), (15, 12, 15), (300, 10, 2), (12000, 2, 250)])
def test_rows_equal_numpy_when_the_stream_arrives_one_word_at_a_time(S, n_rows, b):
    """margin 0 and 1-word refills: rows run out of words at every offset, are dropped and redone."""
    rng_slow, rng_fast = np.random.default_rng(S + b), np.random.default_rng(S + b)
    want = mdp_mod._garnet_rows_slow(rng_slow, S, n_rows, b)
    got = mdp_mod._garnet_rows_fast(rng_fast, S, n_rows, b, chunk_words=1, margin=0)
    assert _same_rows(want, got)
    _assert_same_after(rng_slow, rng_fast)


def test_other_bit_generators_use_the_reference_loop():
    rng = np.random.Generator(np.random.MT19937(5))
    before = rng.bit_generator.state["state"]
    assert mdp_mod._garnet_rows_fast(rng, 20, 10, 3) is None
    after = rng.bit_generator.state["state"]
    assert after["pos"] == before["pos"] and np.array_equal(after["key"], before["key"])  # nothing drawn
    g = garnet(20, 2, 3, seed=np.random.Generator(np.random.MT19937(5)))
    ref = np.random.Generator(np.random.MT19937(5))
    indices, data = mdp_mod._garnet_rows_slow(ref, 20, 40, 3)
    assert np.array_equal(g.csr[1], indices.ravel()) and np.array_equal(g.csr[2], data.ravel())
    assert np.array_equal(g.R, ref.uniform(size=(20, 2)))


def test_a_failing_self_check_warns_and_falls_back(monkeypatch):
    def wrong(rng, S, n_rows, b, **kw):
        indices, data = mdp_mod._garnet_rows_slow(rng, S, n_rows, b)
        data = data.copy()
        data[-1, -1] = np.nextafter(data[-1, -1], 2.0)  # one ulp off
        return indices, data

    monkeypatch.setattr(mdp_mod, "_FAST_STATUS", [])
    monkeypatch.setattr(mdp_mod, "_garnet_rows_fast", wrong)
    with pytest.warns(RuntimeWarning, match="slow reference loop"):
        g = garnet(30, 4, 3, seed=0)
    assert mdp_mod._FAST_STATUS == [False]
    rng = np.random.default_rng(0)
    indices, data = mdp_mod._garnet_rows_slow(rng, 30, 120, 3)
    assert np.array_equal(g.csr[2], data.ravel())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        garnet(30, 4, 3, seed=1)
