"""klsim: exact, executable KL-regularized reinforcement learning (numpy + numba, float64).

Each family lives in one public module of plain functions ``f(data, *, params) -> Result``; this file
re-exports them explicitly, one name per line, grouped by family.  Each block below is owned by its
family; edit only your own block.
"""

# ruff: noqa: I001
from klsim.results import BoNResult, GameResult, OccupancyResult, SolveResult
from klsim.mdp import TabularMDP, chain, garnet, gridworld, puterman_two_state

__all__ = [
    "BoNResult",
    "GameResult",
    "OccupancyResult",
    "SolveResult",
    "TabularMDP",
    "chain",
    "garnet",
    "gridworld",
    "puterman_two_state",
]

# --- divergences (klsim.divergences) ---------------------------------------------------------------
from klsim.divergences import (
    alpha_divergence,
    chi2_divergence,
    entropy,
    exp_q,
    exp_q_lee,
    f_divergence,
    js_divergence,
    kl_divergence,
    log_q,
    log_q_lee,
    log_softmax,
    logsumexp,
    softmax,
    tsallis_entropy,
    tsallis_greedy,
    tsallis_kl,
    tsallis_normalizer,
    tsallis_policy,
)

__all__ = [
    *__all__,
    "alpha_divergence",
    "chi2_divergence",
    "entropy",
    "exp_q",
    "exp_q_lee",
    "f_divergence",
    "js_divergence",
    "kl_divergence",
    "log_q",
    "log_q_lee",
    "log_softmax",
    "logsumexp",
    "softmax",
    "tsallis_entropy",
    "tsallis_greedy",
    "tsallis_kl",
    "tsallis_normalizer",
    "tsallis_policy",
]
# --- dp (klsim.dp) ----------------------------------------------------------------------------------
from klsim.dp import (
    behavior_cloning,
    da_vi,
    entropy_bias_bounds,
    kl_ref_backward_induction,
    kl_ref_tradeoff,
    md_vi,
    modified_policy_iteration,
    optimal_q,
    policy_evaluation,
    policy_iteration,
    regularized_greedy,
    soft_value_iteration,
    theorem1_bound,
    theorem1_componentwise_bound,
    theorem2_bound,
    value_iteration,
)

__all__ += [
    "behavior_cloning",
    "da_vi",
    "entropy_bias_bounds",
    "kl_ref_backward_induction",
    "kl_ref_tradeoff",
    "md_vi",
    "modified_policy_iteration",
    "optimal_q",
    "policy_evaluation",
    "policy_iteration",
    "regularized_greedy",
    "soft_value_iteration",
    "theorem1_bound",
    "theorem1_componentwise_bound",
    "theorem2_bound",
    "value_iteration",
]
# --- munchausen (klsim.munchausen) ----------------------------------------------------------------
from klsim.munchausen import (  # noqa: E402
    action_gap_ratio,
    advantage_learning,
    munchausen_limit,
    munchausen_vi,
    mvi_q,
    tsallis_kl_vi,
)

__all__ += [
    "action_gap_ratio",
    "advantage_learning",
    "munchausen_limit",
    "munchausen_vi",
    "mvi_q",
    "tsallis_kl_vi",
]
# --- games (klsim.games) -----------------------------------------------------------------------------
from klsim.games import (  # noqa: E402
    PreferenceGame,
    bradley_terry_fit,
    bradley_terry_game,
    cyclic_game,
    duality_gap,
    egpo,
    exploitability,
    extragradient,
    mirror_descent,
    nash_md,
    nash_mirror_prox,
    nash_mirror_prox_pg,
    omwu,
    random_game,
    regularized_nash,
    rps3,
    sppo,
    stack_games,
    tournament,
    unregularized_exploitability,
    win_probability,
)

__all__ += [
    "PreferenceGame",
    "bradley_terry_fit",
    "bradley_terry_game",
    "cyclic_game",
    "duality_gap",
    "egpo",
    "exploitability",
    "extragradient",
    "mirror_descent",
    "nash_md",
    "nash_mirror_prox",
    "nash_mirror_prox_pg",
    "omwu",
    "random_game",
    "regularized_nash",
    "rps3",
    "sppo",
    "stack_games",
    "tournament",
    "unregularized_exploitability",
    "win_probability",
]
# --- best_of_n (klsim.best_of_n) -------------------------------------------------------------------
# --- occupancy (klsim.occupancy) ------------------------------------------------------------------
from klsim.occupancy import occupancy as occupancy_measure  # noqa: E402  (klsim.occupancy stays the subpackage)
from klsim.occupancy import (  # noqa: E402
    OccupancyProblem,
    action_kl,
    chi2_occupancy,
    exact_penalty_orpo,
    flow_matrix,
    flow_residual,
    frank_wolfe,
    hacking_range,
    is_reward_hacking,
    kl_occupancy,
    l1_occupancy,
    lower_bound_a,
    lower_bound_thm51,
    lower_bound_tight,
    make_correlated_proxy,
    make_hacking_proxy,
    occupancy_problem,
    occupancy_return,
    occupancy_support,
    performance_difference,
    policy_from_occupancy,
    r_correlation,
    random_case,
    sample_orpo,
    solve_action_kl,
    solve_chi2,
    solve_occupancy_kl,
    solve_sqrt_chi2,
    solve_unregularized,
    state_occupancy,
    two_state_mdp,
    uwo_reward,
    wco_reward,
)
from klsim.envs.tomato import TomatoWateringEnv, tomato_base_policy, tomato_tabular  # noqa: E402

__all__ += [
    "occupancy_measure",
    "OccupancyProblem",
    "action_kl",
    "chi2_occupancy",
    "exact_penalty_orpo",
    "flow_matrix",
    "flow_residual",
    "frank_wolfe",
    "hacking_range",
    "is_reward_hacking",
    "kl_occupancy",
    "l1_occupancy",
    "lower_bound_a",
    "lower_bound_thm51",
    "lower_bound_tight",
    "make_correlated_proxy",
    "make_hacking_proxy",
    "occupancy_problem",
    "occupancy_return",
    "occupancy_support",
    "performance_difference",
    "policy_from_occupancy",
    "r_correlation",
    "random_case",
    "sample_orpo",
    "solve_action_kl",
    "solve_chi2",
    "solve_occupancy_kl",
    "solve_sqrt_chi2",
    "solve_unregularized",
    "state_occupancy",
    "two_state_mdp",
    "uwo_reward",
    "wco_reward",
    "TomatoWateringEnv",
    "tomato_base_policy",
    "tomato_tabular",
]
# --- envs (klsim.envs) -------------------------------------------------------------------------------
from klsim.envs import (  # noqa: E402
    TabularEnv,
    from_gymnasium,
    register_mdp,
)

__all__ += ["TabularEnv", "from_gymnasium", "register_mdp"]

__version__ = "0.1.0"
