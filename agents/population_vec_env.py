"""The population of :mod:`arbiter_env.vector.population` as a stable-baselines3 ``VecEnv``.

N inner networks of one task (or of one task family's instances) trained in lockstep, seen by
SB3 as N environments::

    from stable_baselines3 import PPO
    from arbiter_env.agents.population_vec_env import make_population_env

    PPO("MlpPolicy", make_population_env("digits-mlp", n_envs=16)).learn(10_000)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from arbiter_env.vector.population import Population


class PopulationEnv(DummyVecEnv):
    """SB3 ``VecEnv`` of a :class:`Population` (see the module docstring).

    SB3's ``DummyVecEnv`` over the members gives the attribute, method and wrapper queries;
    resets and steps go through the population, which trains every member's interval in one
    batched step. A member is reset automatically when its episode ends, the last observation
    in ``info["terminal_observation"]``; ``seed(s)`` seeds member ``i`` with ``s + i`` at the
    next reset.
    """

    def __init__(self, task: Any = "digits-mlp", n_envs: int = 16, **kwargs: Any):
        self.population = Population(task, n_envs, **kwargs)
        super().__init__([_returning(env) for env in self.population.envs])

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

    def step_wait(self) -> VecEnvStepReturn:
        """Trains every member's interval in one batched step; resets the members that ended."""
        outcomes = self.population.step(self.actions)
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


def _returning(env: gym.Env) -> Callable[[], gym.Env]:
    """A factory of ``env`` itself: DummyVecEnv takes factories, and the members exist already."""
    return lambda: env


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
