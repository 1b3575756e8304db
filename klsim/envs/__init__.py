"""Gymnasium bridge: import toy-text environments as MDPs, export MDPs as environments (spec §8).

* :func:`from_gymnasium` reads ``env.unwrapped.P`` into a :class:`~klsim.mdp.TabularMDP`
  (duplicates accumulated, terminated outcomes sent to one added absorbing state);
* :class:`TabularEnv` exports any ``TabularMDP`` as a ``gymnasium.Env``;
* :func:`register_mdp` registers an MDP factory as ``klsim/<Name>-v0`` for ``gymnasium.make``.

Importing this package (which ``import klsim`` does) registers the built-in ids
(:data:`~klsim.envs.registration.BUILTIN_ENV_IDS`), idempotently.
"""

from klsim.envs.gym_bridge import from_gymnasium
from klsim.envs.registration import BUILTIN_ENV_IDS, klsim_env_ids, register_builtin_envs, register_mdp
from klsim.envs.tabular_env import TabularEnv, absorbing_states

__all__ = [
    "from_gymnasium",
    "TabularEnv",
    "absorbing_states",
    "register_mdp",
    "register_builtin_envs",
    "klsim_env_ids",
    "BUILTIN_ENV_IDS",
]

register_builtin_envs()

# Environments of other families register themselves through ``register_mdp`` when their module is
# imported.  ``klsim/envs/tomato.py`` (occupancy family, ``klsim/TomatoWatering-v0``) is picked up here
# once it exists; only its absence is ignored, an error inside it is raised.
try:
    import klsim.envs.tomato  # noqa: F401
except ModuleNotFoundError as exc:
    if exc.name != "klsim.envs.tomato":
        raise
