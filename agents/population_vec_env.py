"""The population of :mod:`arbiter_env.vector.population` as a stable-baselines3 ``VecEnv``.

N inner networks of one task (or of one task family's instances) trained in lockstep, seen by
SB3 as N environments::

    from stable_baselines3 import PPO
    from arbiter_env.agents.population_vec_env import make_population_env

    PPO("MlpPolicy", make_population_env("digits-mlp", n_envs=16)).learn(10_000)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.vector.population import Population


class PopulationEnv(VecEnv):
    """SB3 ``VecEnv`` of a :class:`Population` (see the module docstring).

    Resets a member automatically when its episode ends, putting the last observation in
    ``info["terminal_observation"]``, as SB3's ``DummyVecEnv`` does; ``seed(s)`` seeds member
    ``i`` with ``s + i`` at the next reset.
    """

    def __init__(self, task: Any = "digits-mlp", n_envs: int = 16, **kwargs: Any):
        self.population = Population(task, n_envs, **kwargs)
        first = self.population.envs[0]
        super().__init__(self.population.n_envs, first.observation_space, first.action_space)
        self._actions: np.ndarray | None = None

    @property
    def envs(self) -> list[BatchSizeEnv]:
        """The members' ``BatchSizeEnv``."""
        return self.population.envs

    def reset(self) -> VecEnvObs:
        """Resets every member with the seeds and options set since the last reset."""
        observations = []
        for index in range(self.num_envs):
            options = self._options[index] or None
            observation, self.reset_infos[index] = self.population.reset_member(
                index, self._seeds[index], options
            )
            observations.append(observation)
        self._reset_seeds()
        self._reset_options()
        return np.stack(observations)

    def step_async(self, actions: np.ndarray) -> None:
        """Stores the actions of the next :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Trains every member's interval in one batched step; resets the members that ended."""
        outcomes = self.population.step(self._actions)
        observations, rewards, dones, infos = [], [], [], []
        for index, (observation, reward, terminated, truncated, info) in enumerate(outcomes):
            done = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if done:
                info["terminal_observation"] = observation
                observation, self.reset_infos[index] = self.population.reset_member(index, None)
            observations.append(observation)
            rewards.append(reward)
            dones.append(done)
            infos.append(info)
        return np.stack(observations), np.array(rewards, dtype=np.float32), np.array(dones), infos

    def close(self) -> None:
        """Closes every member."""
        for env in self.envs:
            env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """``attr_name`` of the members at ``indices``."""
        return [getattr(self.envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Sets ``attr_name`` of the members at ``indices``."""
        for i in self._get_indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        """Calls ``method_name`` of the members at ``indices``."""
        return [
            getattr(self.envs[i], method_name)(*method_args, **method_kwargs)
            for i in self._get_indices(indices)
        ]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """``False``: members are not wrapped (the population steps them itself)."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """No images: the members are not rendered through the population."""
        return [None for _ in range(self.num_envs)]


def make_population_env(
    task: Any = "digits-mlp", n_envs: int = 16, *, seed: int | None = None, **kwargs: Any
) -> PopulationEnv:
    """A :class:`PopulationEnv` of ``n_envs`` members of a task or task family.

    With ``seed``, member i is seeded with ``seed + i`` at the first reset (as SB3's
    ``make_vec_env`` seeds its envs).

    Raises:
        ValueError: ``n_envs`` is not a positive integer (``True`` is not 1).
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, int | np.integer) or n_envs < 1:
        raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}.")
    env = PopulationEnv(task, int(n_envs), **kwargs)
    if seed is not None:
        env.seed(seed)
    return env


__all__ = ["PopulationEnv", "make_population_env"]
