"""What every baseline shares: typed configs, reading the observation, acting through the env.

A baseline is a :class:`~arbiter_env.controllers.BatchSizeController`: it decides a batch size from
the observation alone (read with :func:`~arbiter_env.envs.observation.observation_value`) and the base class
turns that size into an action of the environment's encoding with ``env.encode``. Baselines that
change the learning rate do it with the documented ``BatchSizeEnv.set_learning_rate`` before the
interval they decide for, and compute the rate from the size the environment will really use
(:meth:`Baseline.reachable`), which differs from the wished-for size on a coarse ladder or under
the ``relative`` encoding.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from arbiter_env.checks import require
from arbiter_env.config import from_dict
from arbiter_env.controllers import BatchSizeController
from arbiter_env.envs.observation import observation_value

PROGRESS_TOLERANCE = 1e-6
"""Slack for comparing the float32 progress of the observation with a milestone."""


class Baseline(BatchSizeController):
    """A batch-size controller with a typed config dataclass ``Config``.

    Args:
        env: The environment (wrappers allowed).
        config: An instance of the class's ``Config``; ``None`` takes the defaults.
        **overrides: Config fields to change (checked like a YAML file: unknown keys and wrong
            types raise a ``ValueError`` naming the key).
    """

    Config: ClassVar[type]
    kind: ClassVar[str] = "other"
    """The baseline's family in reports and plots: fixed, schedule, adaptive, hpo or other."""
    # Any here; each subclass narrows it to its own ``Config`` (``config: FixedConfig``), so mypy
    # checks the fields it reads.
    config: Any

    def __init__(self, env: gym.Env, config: Any = None, **overrides: Any):
        super().__init__(env)
        if config is None:
            config = from_dict(self.Config, overrides)
        elif overrides:
            raise ValueError(
                f"{type(self).__name__}: pass either a config or keyword overrides, not both."
            )
        if not isinstance(config, self.Config):
            raise ValueError(
                f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}."
            )
        self.config = config

    @classmethod
    def factory(cls, env: gym.Env, **config_kwargs: Any) -> Baseline:
        """Registry factory: ``(env, **config_kwargs) -> controller``."""
        return cls(env, from_dict(cls.Config, config_kwargs))

    # --- reading the observation ----------------------------------------------------------------

    @staticmethod
    def observed_batch_size(observation: np.ndarray) -> int:
        """Batch size of the last interval (the start size in the first observation)."""
        return round(observation_value(observation, "log2_batch_size"))

    @staticmethod
    def observed_progress(observation: np.ndarray) -> float:
        """Fraction of the sample budget consumed before the interval being decided."""
        return observation_value(observation, "progress")

    # --- acting ---------------------------------------------------------------------------------

    @property
    def batch_min(self) -> int:
        """The task's smallest batch size (the bottom of the ladder)."""
        return self.batch_env.task.batch_min

    @property
    def batch_max(self) -> int:
        """The task's largest batch size (the top of the ladder)."""
        return self.batch_env.task.batch_max

    @property
    def task_lr(self) -> float:
        """The task's learning rate, where every episode starts."""
        return self.batch_env.task.optimizer.lr

    def clip(self, batch_size: float) -> int:
        """Rounds and clips a wished-for size to ``[batch_min, batch_max]``."""
        if not math.isfinite(batch_size):
            return self.batch_max if batch_size > 0 else self.batch_min
        return int(min(max(round(batch_size), self.batch_min), self.batch_max))

    def reachable(self, batch_size: int) -> int:
        """The size the environment will really use when this controller asks for ``batch_size``."""
        return self.batch_env.decode(self.batch_env.encode(self.clip(batch_size)))

    def set_learning_rate(self, lr: float) -> None:
        """Sets the base learning rate of the next interval (``BatchSizeEnv.set_learning_rate``)."""
        self.batch_env.set_learning_rate(lr)


def check_batch_size(name: str, value: int | None) -> None:
    """Rejects a configured size below 1; ``None`` (the task's own size) passes."""
    require(
        value is None or value >= 1, f"{name} must be >= 1 (or null for the task's), got {value}."
    )


class NoiseAverages:
    """Moving averages of tr(Σ) and |G|² from the observation, kept apart.

    A noise scale is then a ratio of averages (McCandlish et al. 2018), not an average of noisy
    ratios.

    Args:
        decay: Weight of the old average at each update (one update per interval).
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.trace: float | None = None
        self.grad_sq: float | None = None

    def update(self, observation: np.ndarray) -> tuple[float, float]:
        """Folds in the observation's tr(Σ) and |G|²; returns the averages."""
        trace = observation_value(observation, "log10_trace_cov")
        grad_sq = observation_value(observation, "log10_grad_sq_norm")
        if self.trace is None or self.grad_sq is None:
            self.trace, self.grad_sq = trace, grad_sq
        else:
            self.trace = self.decay * self.trace + (1 - self.decay) * trace
            self.grad_sq = self.decay * self.grad_sq + (1 - self.decay) * grad_sq
        return self.trace, self.grad_sq
