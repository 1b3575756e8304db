"""Tests of ``klsim.mdp``: TabularMDP validation (issue 2 item 2), Garnet draws (spec §8), layouts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from klsim.mdp import TabularMDP, chain, garnet, gridworld, puterman_two_state


def _valid(S: int = 3, A: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    P = rng.random((S, A, S))
    P /= P.sum(axis=2, keepdims=True)
    return P, rng.random((S, A))


# ----------------------------------------------------------------------------- validation errors
@pytest.mark.parametrize("sparse", [False, True])
def test_row_not_summing_to_one_names_state_action(sparse):
    P, R = _valid()
    P[1, 0, 2] += 1e-8
    P_in = sp.csr_array(P.reshape(6, 3)) if sparse else P
    with pytest.raises(ValueError, match=r"P: row \(s=1, a=0\) sums to"):
        TabularMDP(P_in, R, 0.9)


def test_row_sum_tolerance_is_1e_10():
    P, R = _valid()
    P[2, 1, 0] += 5e-11  # within 1e-10: accepted
    TabularMDP(P, R, 0.9)
    P[2, 1, 0] += 1e-10  # now 1.5e-10 off: rejected
    with pytest.raises(ValueError, match=r"\(s=2, a=1\)"):
        TabularMDP(P, R, 0.9)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("bad", [-0.25, np.nan])
def test_negative_or_nan_probability_names_index(sparse, bad):
    P, R = _valid()
    P[2, 1, :] = [0.5, 0.75, 0.0]
    P[2, 1, 2] = bad if bad < 0 else 0.0
    if np.isnan(bad):
        P[2, 1, 1] = np.nan
    P_in = sp.csr_array(P.reshape(6, 3)) if sparse else P
    with pytest.raises(ValueError, match=r"P: negative or NaN probability .* \(s=2, a=1, s'=[12]\)"):
        TabularMDP(P_in, R, 0.9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_reward_names_index(bad):
    P, R = _valid()
    R[1, 1] = bad
    with pytest.raises(ValueError, match=r"R: non-finite value .* \(s=1, a=1\)"):
        TabularMDP(P, R, 0.9)


def test_nan_reward_in_3d_reward():
    P, R = _valid()
    R3 = np.zeros((3, 2, 3))
    R3[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"R: non-finite value .* \(s=0, a=1, s'=2\)"):
        TabularMDP(P, R3, 0.9)


@pytest.mark.parametrize("gamma", [1.0, 1.5, -0.1, np.nan, "x"])
def test_gamma_outside_unit_interval(gamma):
    P, R = _valid()
    with pytest.raises(ValueError, match="gamma"):
        TabularMDP(P, R, gamma)


def test_gamma_zero_is_allowed():
    P, R = _valid()
    assert TabularMDP(P, R, 0.0).gamma == 0.0


def test_mismatched_shapes():
    P, R = _valid()
    with pytest.raises(ValueError, match=r"P: expected shape \(S, A, S\)"):
        TabularMDP(P[:, :, :2], R, 0.9)
    with pytest.raises(ValueError, match=r"P: expected shape \(S, A, S\)"):
        TabularMDP(P, R[:, :1], 0.9)
    with pytest.raises(ValueError, match=r"sparse P must have shape \(S\*A, S\)"):
        TabularMDP(sp.csr_array(P.reshape(6, 3)[:4]), R, 0.9)
    with pytest.raises(ValueError, match=r"R: a 3-d reward must have shape"):
        TabularMDP(P, np.zeros((3, 2, 2)), 0.9)
    with pytest.raises(ValueError, match=r"R: expected shape"):
        TabularMDP(P, np.zeros(3), 0.9)


@pytest.mark.parametrize(
    "initial, pattern",
    [
        (np.array([0.5, 0.5, 0.5]), r"initial: sums to"),
        (np.array([1.5, -0.5, 0.0]), r"initial: negative or NaN entry .* at 1"),
        (np.array([np.nan, 0.5, 0.5]), r"initial: negative or NaN entry"),
        (np.array([0.5, 0.5]), r"initial: expected shape \(3,\)"),
    ],
)
def test_initial_not_a_distribution(initial, pattern):
    P, R = _valid()
    with pytest.raises(ValueError, match=pattern):
        TabularMDP(P, R, 0.9, initial)


def test_valid_mdp_is_frozen_and_read_only():
    P, R = _valid()
    mdp = TabularMDP(P, R, 0.9)
    with pytest.raises(ValueError):
        mdp.R[0, 0] = 1.0
    with pytest.raises(AttributeError):
        mdp.gamma = 0.5  # type: ignore[misc]
    np.testing.assert_allclose(mdp.initial, np.full(3, 1 / 3))


@pytest.mark.parametrize("sparse", [False, True])
def test_caller_arrays_are_neither_frozen_nor_aliased(sparse):
    P, R = _valid()
    rho = np.array([0.2, 0.3, 0.5])
    P_in = sp.csr_array(P.reshape(6, 3)) if sparse else P
    mdp = TabularMDP(P_in, R, 0.9, rho)
    R[0, 0] += 1.0
    rho[0] = 7.0
    if sparse:
        P_in.data[0] = 9.0
    else:
        P[0, 0, 0] = 9.0
    assert mdp.R[0, 0] == R[0, 0] - 1.0 and mdp.initial[0] == 0.2
    assert mdp.dense_P()[0, 0, 0] != 9.0


def test_3d_reward_is_reduced_to_expectation_in_both_layouts(rng):
    P, _ = _valid()
    R3 = rng.standard_normal((3, 2, 3))
    expected = np.array(
        [[sum(P[s, a, t] * R3[s, a, t] for t in range(3)) for a in range(2)] for s in range(3)]
    )
    dense = TabularMDP(P, R3, 0.9)
    sparse = TabularMDP(sp.csr_array(P.reshape(6, 3)), R3, 0.9)
    np.testing.assert_allclose(dense.R, expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(sparse.R, expected, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------- Garnet (spec §8)
def _garnet_reference(S, A, b, seed, reward="sa"):
    """The spec's normative draw order, written independently with a dense P."""
    rng = np.random.default_rng(seed)
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            nxt = rng.choice(S, size=b, replace=False)
            cuts = np.sort(rng.uniform(size=b - 1))
            P[s, a, nxt] = np.diff(np.concatenate(([0.0], cuts, [1.0])))
    r = rng.uniform(size=(S, A)) if reward == "sa" else np.repeat(rng.uniform(size=S)[:, None], A, axis=1)
    return P, r


@pytest.mark.parametrize("S, A, b, reward", [(30, 4, 3, "sa"), (12, 3, 12, "s"), (7, 2, 1, "sa")])
def test_garnet_follows_the_normative_draw_order(S, A, b, reward):
    g = garnet(S, A, b, seed=3, reward=reward)
    P_ref, R_ref = _garnet_reference(S, A, b, 3, reward)
    assert g.is_sparse
    assert np.array_equal(g.dense_P(), P_ref)
    assert np.array_equal(g.R, R_ref)


def test_garnet_rows_sum_to_one_with_b_nonzeros():
    g = garnet(40, 5, 4, seed=1)
    indptr, indices, data = g.csr
    assert indptr.dtype == np.int64 and indices.dtype == np.int64 and data.dtype == np.float64
    assert np.all(np.diff(indptr) == 4)
    dense = g.dense_P()
    assert np.all(np.count_nonzero(dense, axis=2) == 4)
    np.testing.assert_allclose(dense.sum(axis=2), 1.0, rtol=0, atol=1e-12)


def test_garnet_bit_identical_per_seed_and_differs_across_seeds():
    a, b, c = garnet(25, 3, 3, seed=7), garnet(25, 3, 3, seed=7), garnet(25, 3, 3, seed=8)
    for x, y in zip(a.csr, b.csr):
        assert np.array_equal(x, y)
    assert np.array_equal(a.R, b.R)
    assert not np.array_equal(a.R, c.R)


def test_garnet_bad_arguments():
    with pytest.raises(ValueError, match="branching"):
        garnet(5, 2, 6)
    with pytest.raises(ValueError, match="branching"):
        garnet(5, 2, 0)
    with pytest.raises(ValueError, match="reward"):
        garnet(5, 2, 2, reward="x")
    with pytest.raises(ValueError, match="n_states"):
        garnet(0, 2, 1)


# ----------------------------------------------------------------------------- layouts
def test_dense_and_sparse_layouts_agree(rng):
    g = garnet(20, 3, 4, seed=2)
    d = g.to_dense()
    assert not d.is_sparse and d.to_sparse().is_sparse
    assert d == g and d.to_sparse() == g
    v = rng.standard_normal(20)
    manual = np.einsum("sat,t->sa", d.P, v)
    np.testing.assert_allclose(g.expected_next(v), manual, rtol=0, atol=1e-13)
    np.testing.assert_allclose(d.expected_next(v), manual, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(d.transition_matrix(), g.transition_matrix().toarray())
    with pytest.raises(ValueError, match="csr"):
        _ = d.csr


def test_sparse_duplicates_are_summed():
    rows = np.array([0, 0, 1, 2, 3])
    cols = np.array([1, 1, 0, 1, 0])
    vals = np.array([0.25, 0.75, 1.0, 1.0, 1.0])
    P = sp.coo_array((vals, (rows, cols)), shape=(4, 2)).tocsr()
    mdp = TabularMDP(P, np.zeros((2, 2)), 0.5)
    np.testing.assert_array_equal(mdp.dense_P()[0, 0], [0.0, 1.0])


def test_classic_constructors():
    m = puterman_two_state()
    assert (m.n_states, m.n_actions, m.gamma) == (2, 2, 0.95)
    c = chain(6)
    np.testing.assert_allclose(c.dense_P().sum(axis=2), 1.0, atol=1e-12)
    assert c.initial[0] == 1.0
    g = gridworld()
    assert g.n_states == 12 and g.n_actions == 4  # 16 cells minus 4 walls
    np.testing.assert_allclose(g.dense_P().sum(axis=2), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="layout"):
        gridworld(("SO", "O"))
