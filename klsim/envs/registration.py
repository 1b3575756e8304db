"""Register klsim MDPs with Gymnasium so that ``gymnasium.make("klsim/<Name>-v0")`` reaches them.

:func:`register_mdp` is the one way to register: it wraps an MDP factory in :class:`TabularEnv` and
records ``max_episode_steps`` (spec §8).  Registration is idempotent, so re-importing a module that
registers its environments is harmless.  Other families register their environments here too, e.g.
``klsim/envs/tomato.py`` (occupancy family) registers ``klsim/TomatoWatering-v0``.

References: spec ``kl-regularized-dp.md`` §8; Gymnasium's ``gymnasium.register`` / ``gymnasium.make``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, parse_env_id

from klsim._validation import check_int
from klsim.envs.tabular_env import TabularEnv
from klsim.mdp import TabularMDP, chain, garnet, gridworld, puterman_two_state

__all__ = ["register_mdp", "register_builtin_envs", "klsim_env_ids", "BUILTIN_ENV_IDS"]

_ENV_KWARGS = ("render_mode", "max_steps")  # keyword arguments of TabularEnv; all others go to the factory


class MDPEnvCreator:
    """Gymnasium entry point: ``creator(**kwargs) -> TabularEnv(mdp_factory(**factory_kwargs), ...)``.

    ``render_mode`` and ``max_steps`` go to :class:`TabularEnv`, every other keyword to the factory.  A
    module-level class (not a lambda) so that the entry point pickles (vector environments) and
    ``gymnasium.make`` can read ``metadata`` to check the render mode.
    """

    metadata = TabularEnv.metadata

    def __init__(self, mdp_factory: Callable[..., TabularMDP]) -> None:
        self.mdp_factory = mdp_factory

    def __call__(self, **kwargs: Any) -> TabularEnv:
        env_kwargs = {k: kwargs.pop(k) for k in _ENV_KWARGS if k in kwargs}
        mdp = self.mdp_factory(**kwargs)
        if not isinstance(mdp, TabularMDP):
            raise ValueError(
                f"mdp_factory: {_qualname(self.mdp_factory)} returned {type(mdp).__name__}, not a TabularMDP"
            )
        return TabularEnv(mdp, **env_kwargs)

    def __repr__(self) -> str:
        return f"MDPEnvCreator({_qualname(self.mdp_factory)})"


def _qualname(f: Callable[..., Any]) -> str:
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


def register_mdp(
    env_id: str,
    mdp_factory: Callable[..., TabularMDP],
    max_episode_steps: int = 200,
    *,
    kwargs: Mapping[str, Any] | None = None,
) -> EnvSpec:
    """Register ``env_id`` so that ``gymnasium.make(env_id, **kw)`` builds ``TabularEnv(mdp_factory(**kw))``.

    Parameters
    ----------
    env_id : str
        A Gymnasium id with a version, ``"klsim/<Name>-v<k>"`` for klsim's own environments.
    mdp_factory : callable
        ``mdp_factory(**kwargs) -> TabularMDP``; a module-level function (so the spec pickles).
    max_episode_steps : int
        Episode length limit applied by ``gymnasium.make`` (``TimeLimit``); at least 1.
    kwargs : mapping, optional
        Default keyword arguments of ``mdp_factory``, recorded in the spec; ``gymnasium.make`` overrides
        them.  ``render_mode`` and ``max_steps`` are passed to :class:`TabularEnv` instead.

    Returns
    -------
    gymnasium.envs.registration.EnvSpec
        The registered spec.

    Raises
    ------
    ValueError
        If ``env_id`` is malformed or has no version, ``mdp_factory`` is not callable,
        ``max_episode_steps < 1``, or ``env_id`` is already registered with another factory, step limit
        or kwargs.  Registering the same thing twice is a no-op.

    Examples
    --------
    >>> import gymnasium as gym
    >>> from klsim.mdp import chain
    >>> spec = register_mdp("mypkg/ShortChain-v0", chain, max_episode_steps=50, kwargs={"n_states": 5})
    >>> gym.make("mypkg/ShortChain-v0").unwrapped.mdp.n_states
    5
    """
    if not isinstance(env_id, str):
        raise ValueError(f"env_id: expected a string, got {env_id!r}")
    try:
        _, _, version = parse_env_id(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"env_id: malformed Gymnasium id {env_id!r} ({exc})") from None
    if version is None:
        raise ValueError(f"env_id: {env_id!r} needs a version suffix such as '-v0'")
    if not callable(mdp_factory):
        raise ValueError(f"mdp_factory: expected a callable returning a TabularMDP, got {mdp_factory!r}")
    steps = check_int("max_episode_steps", max_episode_steps, 1)
    defaults = dict(kwargs or {})
    existing = gym.registry.get(env_id)
    if existing is not None:
        old_factory = getattr(existing.entry_point, "mdp_factory", None)
        same = (
            old_factory is not None
            and _qualname(old_factory) == _qualname(mdp_factory)
            and existing.max_episode_steps == steps
            and existing.kwargs == defaults
        )
        if same:
            return existing
        raise ValueError(
            f"env_id: {env_id!r} is already registered ({existing.entry_point!r}); choose a new version"
        )
    gym.register(id=env_id, entry_point=MDPEnvCreator(mdp_factory), max_episode_steps=steps, kwargs=defaults)
    return gym.registry[env_id]


BUILTIN_ENV_IDS = (
    "klsim/Garnet-v0",
    "klsim/Chain-v0",
    "klsim/Gridworld-v0",
    "klsim/PutermanTwoState-v0",
)
"""Ids registered by :func:`register_builtin_envs` (on ``import klsim``)."""


def register_builtin_envs() -> None:
    """Register klsim's constructors (idempotent; called on ``import klsim.envs``).

    * ``klsim/Garnet-v0``: :func:`~klsim.mdp.garnet` with kwargs ``n_states=30, n_actions=4,
      branching=3, seed=0, gamma=0.9`` (the canonical instance of spec §8), 200 steps;
    * ``klsim/Chain-v0``: :func:`~klsim.mdp.chain` (``n_states=10, slip=0.1``), 100 steps;
    * ``klsim/Gridworld-v0``: :func:`~klsim.mdp.gridworld` ([LtA]'s 4×4 maze), 100 steps;
    * ``klsim/PutermanTwoState-v0``: :func:`~klsim.mdp.puterman_two_state`, 100 steps.
    """
    register_mdp(
        "klsim/Garnet-v0",
        garnet,
        max_episode_steps=200,
        kwargs={"n_states": 30, "n_actions": 4, "branching": 3, "seed": 0, "gamma": 0.9},
    )
    register_mdp("klsim/Chain-v0", chain, max_episode_steps=100, kwargs={"n_states": 10, "slip": 0.1})
    register_mdp("klsim/Gridworld-v0", gridworld, max_episode_steps=100)
    register_mdp("klsim/PutermanTwoState-v0", puterman_two_state, max_episode_steps=100)


def klsim_env_ids() -> list[str]:
    """Every id in the Gymnasium registry under the ``klsim/`` namespace, sorted."""
    return sorted(i for i in gym.registry if i.startswith("klsim/"))
