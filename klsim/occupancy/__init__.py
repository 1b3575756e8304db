"""Occupancy-measure regularization against reward hacking (spec ``occupancy-regularization.md``).

Submodules: :mod:`~klsim.occupancy.measures` (occupancies, flow, recovery, divergences),
:mod:`~klsim.occupancy.problem` (precomputed regularized problems), :mod:`~klsim.occupancy.regularized`
(exact χ², √χ², occupancy-KL, action-KL and unregularized optima), :mod:`~klsim.occupancy.proxies`
(correlated and trap proxies, hacking), :mod:`~klsim.occupancy.bounds` (Theorem 5.1 and the tight bound),
:mod:`~klsim.occupancy.ensembles` (WCO / UWO), :mod:`~klsim.occupancy.generators` (random cases, the
two-state counterexample), :mod:`~klsim.occupancy.orpo` (Frank–Wolfe, exact-penalty and sample-based ORPO).

Reference: Laidlaw, Singhal, Dragan, "Correlated Proxies: A New Definition and Improved Mitigation for
Reward Hacking", ICLR 2025, arXiv:2403.03185.
"""

from klsim.occupancy.bounds import (
    bound_chain,
    lambda_star,
    lower_bound_a,
    lower_bound_thm51,
    lower_bound_tight,
)
from klsim.occupancy.ensembles import ensemble_maxmin, uwo_coef_convert, uwo_reward, wco_reward
from klsim.occupancy.generators import (
    RandomCase,
    random_base,
    random_case,
    random_mdp,
    random_policy_family,
    two_state_closed_forms,
    two_state_mdp,
    two_state_policy,
)
from klsim.occupancy.measures import (
    SolverError,
    action_kl,
    advantage,
    chi2_occupancy,
    flow_matrix,
    flow_residual,
    kl_occupancy,
    l1_occupancy,
    occupancy,
    occupancy_return,
    occupancy_support,
    performance_difference,
    policy_from_occupancy,
    policy_values,
    state_occupancy,
)
from klsim.occupancy.orpo import (
    collect_rollouts,
    discriminator_logits,
    divergence_gradient,
    exact_penalty_orpo,
    frank_wolfe,
    orpo_penalty,
    sample_orpo,
)
from klsim.occupancy.problem import OccupancyProblem, occupancy_problem, saturation_threshold
from klsim.occupancy.proxies import (
    HackingRange,
    hacking_range,
    is_reward_hacking,
    make_correlated_proxy,
    make_hacking_proxy,
    mu_mean_std,
    r_correlation,
)
from klsim.occupancy.regularized import (
    chi2_path_map,
    chi2_sweep,
    greedy_policy,
    solve_action_kl,
    solve_chi2,
    solve_occupancy_kl,
    solve_sqrt_chi2,
    solve_unregularized,
)

__all__ = [
    "chi2_sweep",
    "sample_orpo",
    "orpo_penalty",
    "frank_wolfe",
    "exact_penalty_orpo",
    "divergence_gradient",
    "discriminator_logits",
    "collect_rollouts",
    "HackingRange",
    "OccupancyProblem",
    "RandomCase",
    "SolverError",
    "action_kl",
    "advantage",
    "bound_chain",
    "chi2_occupancy",
    "chi2_path_map",
    "ensemble_maxmin",
    "flow_matrix",
    "flow_residual",
    "greedy_policy",
    "hacking_range",
    "is_reward_hacking",
    "kl_occupancy",
    "l1_occupancy",
    "lambda_star",
    "lower_bound_a",
    "lower_bound_thm51",
    "lower_bound_tight",
    "make_correlated_proxy",
    "make_hacking_proxy",
    "mu_mean_std",
    "occupancy",
    "occupancy_problem",
    "occupancy_return",
    "occupancy_support",
    "performance_difference",
    "policy_from_occupancy",
    "policy_values",
    "r_correlation",
    "random_base",
    "random_case",
    "random_mdp",
    "random_policy_family",
    "saturation_threshold",
    "solve_action_kl",
    "solve_chi2",
    "solve_occupancy_kl",
    "solve_sqrt_chi2",
    "solve_unregularized",
    "state_occupancy",
    "two_state_closed_forms",
    "two_state_mdp",
    "two_state_policy",
    "uwo_coef_convert",
    "uwo_reward",
    "wco_reward",
]
