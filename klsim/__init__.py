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
# --- dp (klsim.dp) ----------------------------------------------------------------------------------
# --- munchausen (klsim.munchausen) ----------------------------------------------------------------
# --- games (klsim.games) -----------------------------------------------------------------------------
# --- best_of_n (klsim.best_of_n) -------------------------------------------------------------------
# --- occupancy (klsim.occupancy) ------------------------------------------------------------------
# --- envs (klsim.envs) -------------------------------------------------------------------------------
from klsim.envs import (
    TabularEnv,
    from_gymnasium,
    register_mdp,
)

__all__ += ["TabularEnv", "from_gymnasium", "register_mdp"]

__version__ = "0.1.0"
