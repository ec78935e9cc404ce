"""Hyperparameter dataclasses: the ``hyperparams:`` section of an agent config, per algorithm.

Every field is an argument of the stable-baselines3 algorithm, except those named in
``_not_arguments``; :meth:`_AlgorithmHyperparams.to_kwargs` turns one into those arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from stable_baselines3.common.noise import NormalActionNoise

from arbiter_env.config import ConfigError


@dataclass
class _LinearSchedule:
    """Learning rate decaying linearly to 0 (SB3 passes the remaining progress, 1 → 0)."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining


class _AlgorithmHyperparams:
    """Base of the hyperparameter dataclasses.

    Every field is an argument of the SB3 algorithm, except those in ``_not_arguments``;
    ``lr_schedule`` turns ``learning_rate`` into a schedule.
    """

    learning_rate: float
    lr_schedule: Literal["constant", "linear"]
    _not_arguments: ClassVar[tuple[str, ...]] = ("lr_schedule",)

    # field -> (lowest, highest, lowest allowed, highest allowed); SB3 checks some of these with
    # bare asserts deep inside training and others (gamma > 1) not at all.
    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "learning_rate": (0.0, math.inf, False, False),
        "n_steps": (1, math.inf, True, False),
        "batch_size": (2, math.inf, True, False),
        "n_epochs": (1, math.inf, True, False),
        "gamma": (0.0, 1.0, True, True),
        "gae_lambda": (0.0, 1.0, True, True),
        "clip_range": (0.0, math.inf, False, False),
        "vf_coef": (0.0, math.inf, True, False),
        "max_grad_norm": (0.0, math.inf, False, False),
        "target_kl": (0.0, math.inf, False, False),
        "buffer_size": (1, math.inf, True, False),
        "learning_starts": (0, math.inf, True, False),
        "tau": (0.0, 1.0, False, True),
        "train_freq": (1, math.inf, True, False),
        "target_update_interval": (1, math.inf, True, False),
        "exploration_fraction": (0.0, 1.0, True, True),
        "exploration_initial_eps": (0.0, 1.0, True, True),
        "exploration_final_eps": (0.0, 1.0, True, True),
        "policy_delay": (1, math.inf, True, False),
        "target_policy_noise": (0.0, math.inf, True, False),
        "target_noise_clip": (0.0, math.inf, True, False),
        "action_noise_std": (0.0, math.inf, True, False),
    }

    def __post_init__(self) -> None:
        for name, (low, high, low_ok, high_ok) in self._RANGES.items():
            value = getattr(self, name, None)
            if value is None or isinstance(value, bool) or not isinstance(value, int | float):
                continue  # absent here, optional, or a type error that from_dict reports
            above = value >= low if low_ok else value > low
            below = value <= high if high_ok else value < high
            if not (above and below and math.isfinite(value)):
                interval = (
                    ("[" if low_ok else "(")
                    + f"{low:g}, "
                    + (f"{high:g}" if math.isfinite(high) else "inf")
                    + ("]" if high_ok else ")")
                )
                raise ConfigError(f"hyperparams.{name} must lie in {interval}, got {value!r}.")
        ent_coef = getattr(self, "ent_coef", 0.0)
        if isinstance(ent_coef, int | float) and not ent_coef >= 0:
            raise ConfigError(f"hyperparams.ent_coef must be >= 0, got {ent_coef!r}.")
        steps = getattr(self, "gradient_steps", 1)
        if isinstance(steps, int) and steps != -1 and steps < 1:
            raise ConfigError(
                f"hyperparams.gradient_steps must be >= 1 (or -1: one per environment step), "
                f"got {steps}."
            )

    def to_kwargs(self) -> dict[str, Any]:
        kwargs = {key: value for key, value in vars(self).items() if key not in self._not_arguments}
        if self.lr_schedule == "linear":
            kwargs["learning_rate"] = _LinearSchedule(self.learning_rate)
        return kwargs


@dataclass
class PPOHyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.PPO`` (see its documentation for their meaning).

    ``lr_schedule``: ``"constant"`` or ``"linear"`` (decay to 0 over ``total_timesteps``).
    """

    learning_rate: float = 3e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    n_steps: int = 256
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantage: bool = True
    target_kl: float | None = None


@dataclass
class A2CHyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.A2C``."""

    learning_rate: float = 7e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    n_steps: int = 20
    gamma: float = 0.99
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    use_rms_prop: bool = True
    normalize_advantage: bool = False


@dataclass
class DQNHyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.DQN``."""

    learning_rate: float = 5e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    buffer_size: int = 50_000
    learning_starts: int = 500
    batch_size: int = 64
    tau: float = 1.0
    gamma: float = 0.99
    train_freq: int = 4
    gradient_steps: int = 1
    target_update_interval: int = 500
    exploration_fraction: float = 0.3
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    max_grad_norm: float = 10.0


@dataclass
class SACHyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.SAC``; ``ent_coef`` is a number or ``"auto"`` (learned)."""

    learning_rate: float = 3e-4
    lr_schedule: Literal["constant", "linear"] = "constant"
    buffer_size: int = 50_000
    learning_starts: int = 200
    batch_size: int = 128
    tau: float = 0.005
    gamma: float = 0.99
    train_freq: int = 1
    gradient_steps: int = 1
    ent_coef: float | Literal["auto"] = "auto"


@dataclass
class TD3Hyperparams(_AlgorithmHyperparams):
    """Arguments of ``stable_baselines3.TD3``; ``action_noise_std`` > 0 adds Gaussian exploration."""

    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "linear"] = "constant"
    buffer_size: int = 50_000
    learning_starts: int = 200
    batch_size: int = 128
    tau: float = 0.005
    gamma: float = 0.99
    train_freq: int = 1
    gradient_steps: int = 1
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    action_noise_std: float = 0.1

    _not_arguments = ("lr_schedule", "action_noise_std")

    def to_kwargs(self) -> dict[str, Any]:
        """The base class's arguments plus TD3's Gaussian ``action_noise`` (when std > 0)."""
        kwargs = super().to_kwargs()
        if self.action_noise_std > 0:
            # The continuous encoding is one-dimensional: Box(-1, 1, (1,)).
            kwargs["action_noise"] = NormalActionNoise(
                mean=np.zeros(1), sigma=np.full(1, self.action_noise_std)
            )
        return kwargs
