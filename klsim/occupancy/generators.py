"""Random MDPs with proxies, and the paper's two-state counterexample (spec §6.2–§6.3).

Reference: Laidlaw, Singhal, Dragan, ICLR 2025, arXiv:2403.03185, Proposition 3.1 (two-state MDP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from klsim._validation import check_gamma, check_in_closed_interval, check_int, check_positive
from klsim.mdp import TabularMDP
from klsim.occupancy.measures import _occupancy
from klsim.occupancy.proxies import make_correlated_proxy, r_correlation

__all__ = [
    "random_mdp",
    "random_base",
    "random_policy_family",
    "RandomCase",
    "random_case",
    "two_state_mdp",
    "two_state_policy",
    "two_state_closed_forms",
]


def random_mdp(
    n_states: int,
    n_actions: int,
    gamma: float = 0.9,
    alpha: float = 0.3,
    seed: int | None = 0,
    *,
    initial: str = "dirichlet",
) -> TabularMDP:
    """Dense random MDP: each P(·|s, a) ∼ Dir(α), R ∼ N(0, 1), ρ ∼ Dir(1) or a point mass (spec §6.3).

    ``initial`` is ``"dirichlet"`` or ``"single"`` (state 0).
    """
    S = check_int("n_states", n_states, 1)
    A = check_int("n_actions", n_actions, 1)
    gamma = check_gamma(gamma)
    alpha = check_positive("alpha", alpha)
    if initial not in ("dirichlet", "single"):
        raise ValueError(f"initial: unknown value {initial!r}; valid: 'dirichlet', 'single'")
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(S, alpha), size=(S, A))
    P = np.maximum(P, 0.0)
    P /= P.sum(axis=2, keepdims=True)
    R = rng.standard_normal((S, A))
    if initial == "dirichlet":
        rho = rng.dirichlet(np.ones(S))
    else:
        rho = np.zeros(S)
        rho[0] = 1.0
    return TabularMDP(P, R, gamma, rho)


def random_base(
    n_states: int, n_actions: int, seed: int | None = 0, concentration: float = 1.0
) -> np.ndarray:
    """Full-support base policy: ½ Dirichlet(concentration) + ½ uniform (spec §6.3), shape (S, A)."""
    rng = np.random.default_rng(seed)
    D = rng.dirichlet(np.full(n_actions, concentration), size=n_states)
    return 0.5 * D + 0.5 / n_actions


def random_policy_family(mdp: TabularMDP, n: int = 8, seed: int | None = 0) -> list[np.ndarray]:
    """Dirichlet policies (concentrations 0.1 / 1 / 10), deterministic policies and mixtures (spec §6.3).

    (Regularized optima at random coefficients are added by the caller, who holds the proxy.)
    """
    rng = np.random.default_rng(seed)
    S, A = mdp.n_states, mdp.n_actions
    out = []
    for i in range(n):
        kind = i % 4
        if kind < 3:
            out.append(rng.dirichlet(np.full(A, (0.1, 1.0, 10.0)[kind]), size=S))
        else:
            pi = np.zeros((S, A))
            pi[np.arange(S), rng.integers(A, size=S)] = 1.0
            out.append(pi)
    t = rng.uniform()
    out.append(t * out[0] + (1 - t) * out[-1])
    return out


@dataclass(frozen=True)
class RandomCase:
    """A random bound-test case (spec §6.3): MDP (true reward in ``mdp.R``), base, proxy, measured r."""

    mdp: TabularMDP
    base_policy: np.ndarray
    proxy_reward: np.ndarray
    r: float
    seed: int


def random_case(seed: int, *, max_states: int = 12, max_actions: int = 5) -> RandomCase:
    """Draw one case: S ∈ [3, max_states), A ∈ [2, max_actions), γ ∈ {0.5, 0.9, 0.99}; R ∼ N(0,1) or U[0,1];
    R̃ with prescribed r ∼ U(0.05, 0.99) (two thirds of draws) or R̃ = R + N(0, 1) noise (spec §6.3)."""
    rng = np.random.default_rng(seed)
    S = int(rng.integers(3, max(max_states, 4)))
    A = int(rng.integers(2, max(max_actions, 3)))
    gamma = float(rng.choice([0.5, 0.9, 0.99]))
    mdp = random_mdp(
        S,
        A,
        gamma,
        alpha=float(rng.choice([0.3, 1.0])),
        seed=int(rng.integers(2**31)),
        initial=str(rng.choice(["dirichlet", "single"])),
    )
    R = rng.standard_normal((S, A)) if rng.uniform() < 0.5 else rng.uniform(size=(S, A))
    mdp = mdp.with_reward(R)
    pb = random_base(S, A, seed=int(rng.integers(2**31)))
    mu_b = _occupancy(mdp, pb)
    if rng.uniform() < 2 / 3:
        r = float(rng.uniform(0.05, 0.99))
        Rp = make_correlated_proxy(
            mu_b,
            R,
            r,
            mean=float(rng.normal()),
            std=float(rng.uniform(0.5, 2.0)),
            seed=int(rng.integers(2**31)),
        )
    else:
        Rp = R + rng.standard_normal((S, A))
    return RandomCase(mdp, pb, Rp, r_correlation(mu_b, R, Rp), seed)


# ------------------------------------------------------------------------------ two-state counterexample
def two_state_mdp(gamma: float = 0.99) -> TabularMDP:
    """Paper Prop. 3.1's MDP: in s1, a1 stays and a2 moves to the absorbing s2; R(s1,·) = 1, R(s2,·) = 0;
    ρ = δ_{s1} (spec §6.2)."""
    gamma = check_gamma(gamma)
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = 1.0
    P[0, 1, 1] = 1.0
    P[1, :, 1] = 1.0
    R = np.array([[1.0, 1.0], [0.0, 0.0]])
    return TabularMDP(P, R, gamma, np.array([1.0, 0.0]))


def two_state_policy(p: float) -> np.ndarray:
    """π(a2|s1) = p, π(·|s2) uniform."""
    p = check_in_closed_interval("p", p, 0.0, 1.0)
    return np.array([[1.0 - p, p], [0.5, 0.5]])


def two_state_closed_forms(p: float, p_b: float, gamma: float) -> dict[str, float]:
    """Closed forms of spec §6.2 (independent of the linear solves).

    J(p) = (1−γ)/(1−γ(1−p)); μ = (J(1−p), Jp, (1−J)/2, (1−J)/2); KL_AD = J · kl_Bern(p‖p_b);
    L1, KL_OM and χ² follow from μ and μ_b.
    """

    def J(q):
        return (1 - gamma) / (1 - gamma * (1 - q))

    def mu(q):
        j = J(q)
        return np.array([j * (1 - q), j * q, (1 - j) / 2, (1 - j) / 2])

    m, mb = mu(p), mu(p_b)

    def xlogy(a, b):
        return 0.0 if a == 0 else a * np.log(a / b)

    kl_bern = xlogy(p, p_b) + xlogy(1 - p, 1 - p_b)
    return {
        "J": float(J(p)),
        "J_b": float(J(p_b)),
        "kl_ad": float(J(p) * kl_bern),
        "l1": float(np.abs(m - mb).sum()),
        "kl_om": float(sum(xlogy(a, b) for a, b in zip(m, mb))),
        "chi2": float(np.sum((m - mb) ** 2 / mb)),
        "mu": m,
    }
