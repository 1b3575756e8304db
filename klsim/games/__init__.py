"""Regularized preference games: exact Nash equilibria, Nash mirror prox and its baselines.

Spec ``nash-preference-games.md``; see ``docs/games.md``.  Layout:

* :mod:`klsim.games.game`: :class:`PreferenceGame` (single or contextual batch) and generators;
* :mod:`klsim.games.metrics`: exploitability, duality gap, span, win probability;
* :mod:`klsim.games.solver`: :func:`regularized_nash` (damped Newton with β-continuation);
* :mod:`klsim.games.steps`: plain per-step targets on raw arrays (the forms ``klsim_llm`` mirrors);
* :mod:`klsim.games.algorithms`: Nash-MP, mirror descent (MMD/INPO/online IPO), Nash-MD, EGPO, SPPO,
  extragradient, OMWU;
* :mod:`klsim.games.rlhf`: Bradley-Terry fit and the reward-based RLHF policy (for the cycle example).
"""

from klsim.games.algorithms import (
    egpo,
    extragradient,
    mirror_descent,
    nash_md,
    nash_mirror_prox,
    nash_mirror_prox_pg,
    omwu,
    sppo,
)
from klsim.games.game import (
    PreferenceGame,
    bradley_terry_game,
    cyclic_game,
    random_game,
    rps3,
    stack_games,
    tournament,
)
from klsim.games.metrics import (
    best_response_logits,
    duality_gap,
    exploitability,
    kl_stable,
    phi,
    preference_against,
    regularized_value,
    span,
    unregularized_exploitability,
    win_probability,
)
from klsim.games.rlhf import bradley_terry_fit, rlhf_policy
from klsim.games.solver import (
    NashNotCertifiedError,
    continuation_levels,
    regularized_nash,
    residual_tolerance,
)
from klsim.games.steps import (
    egpo_grad,
    egpo_loss,
    egpo_sgd_step,
    geometric_mixture,
    mirror_descent_step,
    mwu_step,
    nash_md_step,
    nash_mp_step,
    prox_objective_grad,
    prox_step,
    query,
)

__all__ = [
    "PreferenceGame",
    "random_game",
    "tournament",
    "cyclic_game",
    "rps3",
    "bradley_terry_game",
    "stack_games",
    "regularized_nash",
    "residual_tolerance",
    "continuation_levels",
    "NashNotCertifiedError",
    "exploitability",
    "duality_gap",
    "unregularized_exploitability",
    "span",
    "kl_stable",
    "phi",
    "best_response_logits",
    "preference_against",
    "win_probability",
    "regularized_value",
    "nash_mirror_prox",
    "mirror_descent",
    "nash_md",
    "egpo",
    "sppo",
    "extragradient",
    "omwu",
    "nash_mirror_prox_pg",
    "bradley_terry_fit",
    "rlhf_policy",
    "query",
    "prox_step",
    "mirror_descent_step",
    "nash_mp_step",
    "nash_md_step",
    "geometric_mixture",
    "mwu_step",
    "egpo_loss",
    "egpo_grad",
    "egpo_sgd_step",
    "prox_objective_grad",
]
