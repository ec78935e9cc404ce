"""The training environments: picklable env factories, vectorised envs and ``VecNormalize``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import torch
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecMonitor,
    VecNormalize,
)

from arbiter_env.agents.population_vec_env import PopulationEnv  # loaded only when used
from arbiter_env.agents.sb3.config import AgentConfig, EnvConfig
from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.tasks.families import is_family
from arbiter_env.user_code import import_from_environment


@dataclass
class EnvFactory:
    """Picklable ``() -> env`` for SB3's vectorised envs (``SubprocVecEnv`` pickles it).

    The env is wrapped in SB3's ``Monitor`` so that episode returns reach SB3's logger. In a
    ``SubprocVecEnv`` worker it first imports the user modules that ``arbiter --import`` shared
    (:func:`~arbiter_env.user_code.import_from_environment`), so their tasks exist there.
    """

    env: EnvConfig
    family_split: Literal["train", "test"] = "train"
    torch_threads: int | None = None

    def __call__(self) -> gym.Env:
        """A new environment of ``env``, in ``Monitor``."""
        if self.torch_threads is not None:
            # Only reached in a SubprocVecEnv worker, a process of its own.
            torch.set_num_threads(self.torch_threads)
        import_from_environment()
        return Monitor(BatchSizeEnv.from_config(self.env, self.family_split))


def make_vec_env(
    config: AgentConfig,
    *,
    family_split: Literal["train", "test"] = "train",
    n_envs: int | None = None,
    seed: int | None = None,
) -> VecEnv:
    """``n_envs`` (default ``config.n_envs``) environments as ``config.vec_env`` asks.

    The first reset of env ``rank`` uses seed ``seed + rank`` (default ``config.seed``). No
    ``VecNormalize`` is added here (see :func:`train_rl_agent`).
    """
    n_envs = n_envs or config.n_envs
    venv: VecEnv
    if config.vec_env == "subproc":
        factories: list[Callable[[], gym.Env]] = [
            EnvFactory(config.env, family_split, config.torch_threads)
        ] * n_envs
        try:
            venv = SubprocVecEnv(factories, start_method=config.start_method)
        except (EOFError, ConnectionError) as error:
            # A worker died building its env; SB3 shows only the broken pipe. Its own traceback
            # went to stderr above; say here what usually causes it and how to fix it.
            raise RuntimeError(
                f"A SubprocVecEnv worker failed to build the environment for task "
                f"{config.env.task!r} (its traceback is printed above). Workers are fresh "
                "processes: a task registered at run time in this process (in a notebook, or "
                "under `if __name__ == '__main__':`) does not exist there. Register it at the top "
                "level of an importable module and name it 'your_module:task-name', or set "
                "vec_env: dummy."
            ) from error
    elif config.vec_env == "population":
        venv = _population_vec_env(config, n_envs, family_split)
    else:
        venv = DummyVecEnv([EnvFactory(config.env, family_split)] * n_envs)
    venv.seed(config.seed if seed is None else seed)
    return venv


def _population_vec_env(
    config: AgentConfig, n_envs: int, family_split: Literal["train", "test"]
) -> VecEnv:

    # Every member is built from this config; a family's members draw from `family_split`.
    kwargs = config.env.as_kwargs()
    if is_family(kwargs["task"]):
        kwargs["family_split"] = family_split
    population = PopulationEnv(kwargs.pop("task"), n_envs, **kwargs)
    # Episode returns reach SB3's logger, as Monitor does.
    return VecMonitor(population)


def wrap_vec_normalize(venv: VecEnv, config: AgentConfig) -> VecNormalize | None:
    """``venv`` in ``VecNormalize`` as ``config.vec_normalize`` asks; ``None`` when disabled."""
    settings = config.vec_normalize
    if not settings.enabled:
        return None
    return VecNormalize(
        venv,
        norm_obs=settings.norm_obs,
        norm_reward=settings.norm_reward,
        clip_obs=settings.clip_obs,
        clip_reward=settings.clip_reward,
        gamma=getattr(config.hyperparams, "gamma", 0.99),
    )
