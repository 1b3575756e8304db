"""Exact tabular KL-regularized dynamic programming (spec ``kl-regularized-dp.md`` §1-4, §7, §9).

* :mod:`klsim.dp.evaluation`: the regularized greedy step G^{λ,τ}_μ and exact policy evaluation;
* :mod:`klsim.dp.solvers`: value / policy / modified policy iteration (QuantEcon stopping rules), soft VI
  (entropy, or KL toward a fixed reference);
* :mod:`klsim.dp.mirror_descent`: MD-VI / MD-MPI and DA-VI / DA-MPI with injected errors ([LtA]);
* :mod:`klsim.dp.bounds`: Theorems 1-2 of [LtA] and the entropy-bias bounds of [GSP];
* :mod:`klsim.dp.reference`: KL toward a fixed reference, finite horizon, behavior cloning ([DRRL]).

Every kernel exists for the dense ``(S, A, S)`` and the CSR ``(S*A, S)`` layouts (``klsim._kernels.dp``).
"""

from klsim.dp.bounds import (
    entropy_bias_bounds,
    kl_vmax,
    resolvent_apply,
    theorem1_bound,
    theorem1_componentwise_bound,
    theorem2_bound,
)
from klsim.dp.evaluation import policy_evaluation, regularized_greedy
from klsim.dp.mirror_descent import GaussianErrors, da_vi, error_source, md_vi
from klsim.dp.reference import behavior_cloning, kl_ref_backward_induction, kl_ref_tradeoff
from klsim.dp.solvers import (
    hard_log_policy,
    modified_policy_iteration,
    optimal_q,
    policy_iteration,
    soft_value_iteration,
    value_iteration,
)

__all__ = [
    "regularized_greedy",
    "policy_evaluation",
    "value_iteration",
    "policy_iteration",
    "modified_policy_iteration",
    "optimal_q",
    "soft_value_iteration",
    "hard_log_policy",
    "md_vi",
    "da_vi",
    "error_source",
    "GaussianErrors",
    "kl_vmax",
    "theorem1_bound",
    "theorem1_componentwise_bound",
    "theorem2_bound",
    "entropy_bias_bounds",
    "resolvent_apply",
    "kl_ref_backward_induction",
    "behavior_cloning",
    "kl_ref_tradeoff",
]
